"""Reads of orders for pages and the API."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from follow_ups.models import FollowUp
from follow_ups.registry import kind_get
from follow_ups.selectors import follow_ups_of
from orders.invoices import invoice_pdf
from orders.models import CheckoutFailures, Invoice, Order
from orders.services import (
    CHECKOUT_KINDS,
    CONFIRMATION_EMAIL,
    INVOICE,
    WAREHOUSE_SYNC,
    checkout_failure_window,
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


def invoice_pdf_get(*, order: Order) -> bytes | None:
    """The stored invoice PDF; drawn again from the order if retention dropped the stored one
    (``INVOICE_PDF_RETENTION_DAYS``); ``None`` while the invoice is not rendered yet."""
    invoice = Invoice.objects.filter(order=order).first()
    if invoice is None:
        return None
    return bytes(invoice.pdf) or invoice_pdf(
        order, number=invoice.number, issued=invoice.created_at
    )


@dataclass(frozen=True)
class CheckoutLimit:
    """The failed-checkout limit as the checkout page tells it (``CHECKOUT_FAILURES_PER_CLIENT``
    per ``CHECKOUT_FAILURE_WINDOW_SECONDS``), and how many failures this client has left."""

    failures: int  # allowed per window
    window_minutes: int
    left: int


def checkout_limit_get(*, client: str) -> CheckoutLimit | None:
    """``None`` when the limit is off."""
    limit = settings.CHECKOUT_FAILURES_PER_CLIENT
    if not limit:
        return None
    window_start, _ = checkout_failure_window(timezone.now())
    used = (
        CheckoutFailures.objects.filter(client=client, window_start=window_start)
        .values_list("failures", flat=True)
        .first()
    ) or 0
    return CheckoutLimit(
        failures=limit,
        window_minutes=max(1, settings.CHECKOUT_FAILURE_WINDOW_SECONDS // 60),
        left=max(0, limit - used),
    )


def order_for_checkout_key(*, key: str) -> Order | None:
    return Order.objects.filter(checkout_request__key=key).first()


def order_exists(*, number: str) -> bool:
    return Order.objects.filter(number=number).exists()


# What each follow-up is, in the words a customer reads on the order page: never the engine's
# names, states or attempt counts (those are for staff: the admin, /ops/).
CUSTOMER_STEP = {
    CONFIRMATION_EMAIL: "Confirmation email",
    WAREHOUSE_SYNC: "Shipping",
    INVOICE: "Invoice",
}
# Each engine status as the customer reads it: (badge words, badge class). The classes are the
# order states' own, so a step and the order share one palette.
CUSTOMER_STATUS = {
    FollowUp.Status.PENDING: ("In progress", "placed"),
    FollowUp.Status.RUNNING: ("In progress", "placed"),
    FollowUp.Status.RETRYING: ("Delayed", "delayed"),
    FollowUp.Status.WAITING: ("Delayed", "delayed"),
    FollowUp.Status.DEAD: ("Needs our attention", "needs_attention"),
    FollowUp.Status.SUCCEEDED: ("Done", "ready"),
}
IN_PROGRESS = "in_progress"


def _customer_status(status: str) -> tuple[str, str]:
    return CUSTOMER_STATUS.get(status, CUSTOMER_STATUS[FollowUp.Status.PENDING])


# One sentence per step and situation. "waiting": the provider is down and the shop waits the
# outage out (its breaker is open), which the customer reads as a delay, never an alarm.
CUSTOMER_SENTENCE = {
    CONFIRMATION_EMAIL: {
        IN_PROGRESS: "We are sending it to {email}",
        FollowUp.Status.RETRYING: "Taking longer than usual; we keep trying",
        FollowUp.Status.WAITING: "Our email service is briefly unavailable; it goes out as soon "
        "as the service is back",
        FollowUp.Status.DEAD: "We could not deliver it; our team is on it",
        FollowUp.Status.SUCCEEDED: "Sent to {email}",
    },
    WAREHOUSE_SYNC: {
        IN_PROGRESS: "We are passing your order to our warehouse",
        FollowUp.Status.RETRYING: "Our warehouse is slow to answer; we keep trying",
        FollowUp.Status.WAITING: "Our warehouse is briefly unavailable; your order goes to it as "
        "soon as it is back",
        FollowUp.Status.DEAD: "Your order has not reached our warehouse yet; our team is on it",
        FollowUp.Status.SUCCEEDED: "Our warehouse has your order",
    },
    INVOICE: {
        IN_PROGRESS: "We are preparing it",
        FollowUp.Status.RETRYING: "Taking longer than usual; it will appear here once it is ready",
        FollowUp.Status.WAITING: "Taking longer than usual; it will appear here once it is ready",
        FollowUp.Status.DEAD: "Not ready yet; our team is on it",
        FollowUp.Status.SUCCEEDED: "Ready to download",
    },
}
# What a dead follow-up means for the customer. Never the error itself: that is for staff (the
# admin, /ops/), and may carry a provider's reply or an internal address.
FOLLOW_UP_DEAD_MEANING = {
    CONFIRMATION_EMAIL: "We could not email your confirmation to {email}. Your order is placed "
    "and paid; this page is your confirmation.",
    WAREHOUSE_SYNC: "Your order has not reached our warehouse yet, so it may ship a little later "
    "than usual.",
    INVOICE: "Your invoice is not ready yet; it will appear on this page once it is.",
}


# An order whose follow-ups have not all finished this long after checkout is "delayed", even if
# none failed: a worker or the broker may be away. They normally finish within seconds; the
# failure lab's latency reaches past it, so its "slow" shows customers "Delayed" too.
def order_delayed_after() -> timedelta:
    return timedelta(seconds=settings.ORDER_DELAYED_AFTER_SECONDS)


IN_FLIGHT = (
    FollowUp.Status.PENDING,
    FollowUp.Status.RUNNING,
    FollowUp.Status.RETRYING,
    FollowUp.Status.WAITING,
)


@dataclass(frozen=True)
class FollowUpProgress:
    """One step of the order as its customer reads it: no engine state, no attempt count."""

    follow_up: FollowUp
    step: str  # "Confirmation email"
    status: str  # "Delayed"
    status_class: str  # the badge's class: an order state's ("delayed")
    sentence: str  # "Taking longer than usual; we keep trying"
    meaning: str  # for a dead one: what it means for the customer; else ""


@dataclass(frozen=True)
class OrderProgress:
    """Where an order stands, for the order page, the API and the confirmation email."""

    state: str  # an ``Order.Status`` value
    in_flight: bool  # something is still pending, running or retrying: the page keeps polling
    follow_ups: list[FollowUpProgress]
    # (kind, label) of checkout follow-ups no longer in the ledger: retention pruned them long
    # after they succeeded (FOLLOW_UP_RETENTION_DAYS). Shown as done, the invoice downloadable.
    pruned_steps: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return Order.Status(self.state).label


def order_state(follow_ups: list[FollowUp], *, now: datetime | None = None) -> str:
    """The one place an order's state is decided, from its follow-ups.

    Needs our attention once any is dead (even while others still run: someone has to act);
    ready once all succeeded; delayed while one is retrying or waiting for its provider (an outage
    the shop is waiting out) or any has been unfinished longer than ``order_delayed_after()``;
    placed otherwise.
    """
    now = now or timezone.now()
    delayed_after = order_delayed_after()
    if not follow_ups:
        # Written with the order, in its transaction: none left means they succeeded long ago
        # and retention pruned them (FOLLOW_UP_RETENTION_DAYS).
        return Order.Status.READY
    if any(f.status == FollowUp.Status.DEAD for f in follow_ups):
        return Order.Status.NEEDS_ATTENTION
    if follow_ups and all(f.status == FollowUp.Status.SUCCEEDED for f in follow_ups):
        return Order.Status.READY
    if any(
        f.status in (FollowUp.Status.RETRYING, FollowUp.Status.WAITING)
        or (f.status in IN_FLIGHT and now - f.created_at > delayed_after)
        for f in follow_ups
    ):
        return Order.Status.DELAYED
    return Order.Status.PLACED


def order_progress(order: Order, follow_ups: list[FollowUp] | None = None) -> OrderProgress:
    from_ledger = follow_ups is None
    follow_ups = order_follow_ups(order) if from_ledger else list(follow_ups)
    present = {f.kind for f in follow_ups}
    return OrderProgress(
        state=order_state(follow_ups),
        in_flight=any(f.status in IN_FLIGHT for f in follow_ups),
        pruned_steps=tuple(
            (kind, CUSTOMER_STEP.get(kind, kind_get(kind).label))
            for kind in CHECKOUT_KINDS
            if from_ledger and kind not in present
        ),
        follow_ups=[
            FollowUpProgress(
                follow_up=f,
                step=CUSTOMER_STEP.get(f.kind, f.kind_label),
                status=_customer_status(f.status)[0],
                status_class=_customer_status(f.status)[1],
                sentence=follow_up_progress(f, email=order.email),
                meaning=(
                    FOLLOW_UP_DEAD_MEANING.get(f.kind, "").format(email=order.email)
                    if f.status == FollowUp.Status.DEAD
                    else ""
                ),
            )
            for f in follow_ups
        ],
    )


def order_confirmation_notice(order: Order) -> str:
    """What the confirmation email says about the rest of the order, when there is something
    to say: another follow-up is delayed or needs our attention. Empty otherwise."""
    others = [f for f in order_follow_ups(order) if f.kind != CONFIRMATION_EMAIL]
    progress = order_progress(order, others)
    if progress.state == Order.Status.NEEDS_ATTENTION:
        meanings = " ".join(f.meaning for f in progress.follow_ups if f.meaning)
        return f"{meanings} Our team has been told and is on it; there is nothing you need to do."
    if progress.state == Order.Status.DELAYED:
        return (
            "Part of your order is taking longer than usual. We will keep trying; there is "
            "nothing you need to do."
        )
    return ""


def follow_up_progress(follow_up: FollowUp, *, email: str = "") -> str:
    """One sentence for the order page, in the customer's words: "Taking longer than usual; we
    keep trying". Attempts and engine states are for staff pages."""
    sentences = CUSTOMER_SENTENCE.get(follow_up.kind, {})
    situation = (
        IN_PROGRESS
        if follow_up.status in (FollowUp.Status.PENDING, FollowUp.Status.RUNNING)
        else follow_up.status
    )
    label, _ = _customer_status(follow_up.status)
    return sentences.get(situation, label).format(email=email or "your email address")
