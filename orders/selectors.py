"""Reads of orders for pages and the API."""

import uuid

from follow_ups.models import FollowUp
from follow_ups.selectors import follow_ups_of
from orders.models import Invoice, Order
from orders.services import (
    CHECKOUT_KINDS,
    CONFIRMATION_EMAIL,
    INVOICE,
    WAREHOUSE_SYNC,
    order_subject,
)


def order_get(*, order_id) -> Order | None:
    """The order with its lines, or ``None`` for an unknown or malformed id."""
    try:
        order_uuid = uuid.UUID(str(order_id))
    except ValueError:
        return None
    return Order.objects.prefetch_related("lines").filter(pk=order_uuid).first()


def order_follow_ups(order: Order) -> list[FollowUp]:
    """The follow-ups checkout wrote for the order, from the ledger."""
    return follow_ups_of(subject=order_subject(order.pk), kinds=CHECKOUT_KINDS)


def order_status(order: Order, follow_ups=None) -> str:
    """ "ready" once every follow-up succeeded; "placed" until then."""
    follow_ups = order_follow_ups(order) if follow_ups is None else follow_ups
    if follow_ups and all(f.status == FollowUp.Status.SUCCEEDED for f in follow_ups):
        return Order.Status.READY
    return Order.Status.PLACED


def invoice_pdf_get(*, order: Order) -> bytes | None:
    pdf = Invoice.objects.filter(order=order).values_list("pdf", flat=True).first()
    return bytes(pdf) if pdf is not None else None


def order_for_checkout_key(*, key: str) -> Order | None:
    return Order.objects.filter(checkout_request__key=key).first()


def order_exists(*, number: str) -> bool:
    return Order.objects.filter(number=number).exists()


# What each follow-up is, in the words a customer reads on the order page.
FOLLOW_UP_ACTIVITY = {
    CONFIRMATION_EMAIL: "Email delivery",
    WAREHOUSE_SYNC: "Warehouse sync",
    INVOICE: "Invoice rendering",
}


def follow_up_progress(follow_up: FollowUp) -> str:
    """One sentence for the order page: "Email delivery is retrying, attempt 2"."""
    activity = FOLLOW_UP_ACTIVITY.get(follow_up.kind, follow_up.kind_label)
    if follow_up.status == FollowUp.Status.PENDING:
        return f"{activity} is waiting to start"
    if follow_up.status == FollowUp.Status.RUNNING:
        return f"{activity} is running, attempt {follow_up.attempts}"
    if follow_up.status == FollowUp.Status.RETRYING:
        # ``attempts`` counts the attempts made; the retry is the next one.
        return f"{activity} is retrying, attempt {follow_up.attempts + 1}"
    if follow_up.status == FollowUp.Status.DEAD:
        return f"{activity} stopped after {follow_up.attempts} attempts"
    return f"{activity} is done"
