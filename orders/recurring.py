"""The work of the orders' recurring and delayed jobs: cleanup (what expired), the sales report,
reconciliation with the warehouse, review requests, abandoned-cart reminders; and the emails they
hand over. (Retention, the daily pruning of what grows, is ``orders/retention.py``.)

Each job is a service a beat task calls (through ``scheduling.services.job_run``). A job only selects what
is due and writes follow-up rows for it (``follow_ups.services.follow_ups_create_for_due``), in
chunks, marking each item in the same transaction; the emails are the rows' effects, declared in
``orders/follow_ups.py``, run one row at a time by the engine. So one refused address never holds
up the next, every email has its retries, dead letter and replay, and a job run twice creates
nothing twice (the follow-up keys are unique).
"""

import csv
import hashlib
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Count, F, Max, Sum
from django.utils import timezone

from follow_ups.models import FollowUp
from follow_ups.services import NewFollowUp, follow_ups_create, follow_ups_create_for_due
from notifications.models import Unsubscribe
from notifications.services import (
    email_send,
    email_unsubscribe_headers,
    email_unsubscribe_url,
    email_unsubscribed,
    staff_recipients,
)
from orders import warehouse
from orders.models import (
    AbandonedCart,
    CheckoutFailures,
    Order,
    OrderLine,
    OrderShipment,
    SalesReport,
    WarehouseCursor,
)
from orders.services import order_subject
from shop.models import Product

REPORT_CHUNK_SIZE = 500
# The follow-up kinds of the jobs' emails (declared in orders/follow_ups.py). Not checkout kinds:
# an order is "ready" on its checkout follow-ups alone (orders.selectors.order_state).
CART_REMINDER_EMAIL = "cart_reminder_email"
SHIPPED_EMAIL = "shipped_email"
REVIEW_REQUEST_EMAIL = "review_request_email"
SALES_REPORT_EMAIL = "sales_report_email"
SHIPPED_FEED = "shipped"


def order_mail(order: Order, kind: str) -> NewFollowUp:
    """An email about an order: keyed ``order:<id>:<kind>``, shown with the order in the admin."""
    subject = order_subject(order.pk)
    return NewFollowUp(key=f"{subject}:{kind}", kind=kind, subject=subject, label=order.number)


def _order_of(follow_up: FollowUp) -> Order:
    return Order.objects.get(pk=follow_up.subject.removeprefix("order:"))


def _sent(sent) -> dict:
    return {"message_id": sent.message_id, "already_sent": sent.already_sent}


# --- Cleanup --------------------------------------------------------------------------------------


def cleanup_run() -> dict:
    """Delete what has expired. What is kept for a retention period (follow-ups, delivery logs,
    job runs, task results, carts...) is the daily ``retention`` job's (``orders.retention``).
    No stock is held by unfinished checkouts (stock is taken in the order's own transaction), so
    there is none to release."""
    now = timezone.now()
    return {
        "sessions": Session.objects.filter(expire_date__lt=now).delete()[0],
        # A window's count matters only while the window lasts.
        "checkout_failures": CheckoutFailures.objects.filter(
            window_start__lt=now - timedelta(days=1)
        ).delete()[0],
    }


# --- Nightly sales report -------------------------------------------------------------------------

REPORT_HEADER = ["sku", "name", "orders", "units", "revenue"]


def sales_report_create(*, day: date) -> SalesReport:
    """The CSV of ``day``'s (UTC) sales per product, stored once, and handed to one
    ``sales_report_email`` follow-up per staff recipient in the same transaction.

    Rows are aggregated by the database and streamed in chunks, so memory holds one chunk of
    products, never the day's order lines. A second run stores and hands over nothing new.
    """
    report = SalesReport.objects.filter(day=day).first()
    fields = None if report is not None else _sales_report_build(day)
    with transaction.atomic():
        if report is None:
            # A concurrent run may have stored it first: then its row stands.
            report, _ = SalesReport.objects.get_or_create(day=day, defaults=fields)
        follow_ups_create(
            follow_ups=[
                NewFollowUp(
                    key=f"sales_report:{day.isoformat()}:to:{recipient}",
                    kind=SALES_REPORT_EMAIL,
                    subject=f"sales_report:{day.isoformat()}",
                    label=f"Sales report {day.isoformat()}",
                    payload={"day": day.isoformat(), "recipient": recipient},
                )
                for recipient in staff_recipients()
            ]
        )
    return report


def sales_report_email_send(follow_up: FollowUp) -> dict:
    day, recipient = follow_up.payload["day"], follow_up.payload["recipient"]
    report = SalesReport.objects.get(day=day)
    return _sent(
        email_send(
            purpose_key=f"sales-report-{day}-to-{recipient}",
            recipient=recipient,
            subject=f"Sales report {day}: {report.orders} orders, {report.revenue}",
            body=f"Sales on {day} (UTC): {report.orders} orders, revenue {report.revenue}.\n"
            f"Also stored in the admin under Sales reports.\n\n{report.csv}",
        )
    )


def _sales_report_build(day: date) -> dict:
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    lines = OrderLine.objects.filter(
        order__created_at__gte=start, order__created_at__lt=start + timedelta(days=1)
    )
    rows = (
        lines.values("sku")
        .annotate(
            product_name=Max("name"),
            orders=Count("order", distinct=True),
            units=Sum("quantity"),
            revenue=Sum(F("unit_price") * F("quantity")),
        )
        .order_by("sku")
        .iterator(chunk_size=REPORT_CHUNK_SIZE)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_HEADER)
    units = 0
    revenue = Decimal("0.00")
    for row in rows:
        writer.writerow(
            [row["sku"], row["product_name"], row["orders"], row["units"], f"{row['revenue']:.2f}"]
        )
        units += row["units"]
        revenue += row["revenue"]
    orders = lines.values("order").distinct().count()
    writer.writerow(["TOTAL", "", orders, units, f"{revenue:.2f}"])
    return {"csv": buffer.getvalue(), "orders": orders, "revenue": revenue}


def sales_report_day(*, period: str | None) -> date:
    """The day a nightly run reports on: the day before the run's period (or today, by hand)."""
    if period and not period.startswith("manual:"):
        return datetime.fromisoformat(period).date() - timedelta(days=1)
    return timezone.now().date() - timedelta(days=1)


# --- Warehouse reconciliation ---------------------------------------------------------------------


def warehouse_reconcile() -> dict:
    """Read what the warehouse shipped since the stored cursor, a chunk at a time, at most
    ``WAREHOUSE_RECONCILE_MAX_CHUNKS`` chunks per run (the next run carries on from the cursor).

    Per chunk, one transaction marks the orders shipped (``OrderShipment``, with the review
    request's due time), writes each one's ``shipped_email`` follow-up, and advances the cursor
    past the chunk: an entry is recorded once, never skipped, whatever dies when.
    """
    chunk_size = settings.WAREHOUSE_RECONCILE_CHUNK_SIZE
    chunks = shipped = emails = 0
    while chunks < settings.WAREHOUSE_RECONCILE_MAX_CHUNKS:
        cursor, _ = WarehouseCursor.objects.get_or_create(feed=SHIPPED_FEED)
        page = warehouse.shipments_shipped(after=cursor.position, limit=chunk_size)
        if not page.shipments:
            break
        chunks += 1
        with transaction.atomic():
            locked = WarehouseCursor.objects.select_for_update().get(pk=cursor.pk)
            if locked.position != cursor.position:
                continue  # a concurrent run recorded this chunk; read on from where it left off
            marked, created = _shipments_record(page.shipments)
            locked.position = page.next_after
            locked.save(update_fields=["position", "updated_at"])
        shipped += marked
        emails += created
        if len(page.shipments) < chunk_size:
            break
    # Shipments marked before their email was a follow-up, if any, get theirs now.
    earlier = follow_ups_create_for_due(
        due=OrderShipment.objects.filter(shipped_email_sent_at__isnull=True).select_related(
            "order"
        ),
        follow_ups_for=lambda shipment: [order_mail(shipment.order, SHIPPED_EMAIL)],
        mark={"shipped_email_sent_at": timezone.now()},
    )
    return {"chunks": chunks, "shipped": shipped, "emails": emails + earlier.follow_ups}


def _shipments_record(entries: list[dict]) -> tuple[int, int]:
    """Mark the orders of these feed entries shipped and hand each its "shipped" email. Entries
    for orders we do not know (another system's, or long deleted) are passed over."""
    by_number = {entry["order_number"]: entry for entry in entries}
    review_after = timedelta(days=settings.REVIEW_REQUEST_AFTER_DAYS)
    now = timezone.now()
    orders = list(Order.objects.filter(number__in=by_number, shipment__isnull=True))
    shipments = []
    for order in orders:
        entry = by_number[order.number]
        shipped_at = datetime.fromtimestamp(entry["shipped_at"], tz=UTC)
        shipments.append(
            OrderShipment(
                order=order,
                shipped_at=shipped_at,
                review_due_at=shipped_at + review_after,
                shipped_email_sent_at=now,
            )
        )
        if not order.shipment_reference:
            # The warehouse call succeeded but its answer was never recorded (a worker died).
            Order.objects.filter(pk=order.pk, shipment_reference="").update(
                shipment_reference=entry["reference"]
            )
    OrderShipment.objects.bulk_create(shipments)
    created = follow_ups_create(follow_ups=[order_mail(order, SHIPPED_EMAIL) for order in orders])
    return len(shipments), len(created)


def shipped_email_send(follow_up: FollowUp) -> dict:
    order = _order_of(follow_up)
    return _sent(
        email_send(
            purpose_key=f"order-{order.pk}-shipped",
            recipient=order.email,
            subject=f"Order {order.number} has shipped",
            body=f"Hello {order.name},\n\nyour order {order.number} is on its way "
            f"(shipment {order.shipment_reference}).\n\n{settings.SITE_URL}/orders/{order.pk}/\n",
        )
    )


# --- Delayed: review requests ---------------------------------------------------------------------


def review_requests_create() -> dict:
    """Hand every shipment whose review is due, and not yet asked for, to its review request."""
    handed_over = follow_ups_create_for_due(
        due=OrderShipment.objects.filter(
            review_sent_at__isnull=True, review_due_at__lte=timezone.now()
        ).select_related("order"),
        follow_ups_for=lambda shipment: [order_mail(shipment.order, REVIEW_REQUEST_EMAIL)],
        mark={"review_sent_at": timezone.now()},
    )
    return {"due": handed_over.items, "follow_ups": handed_over.follow_ups}


def review_request_email_send(follow_up: FollowUp) -> dict:
    order = _order_of(follow_up)
    return _sent(
        email_send(
            purpose_key=f"order-{order.pk}-review-request",
            recipient=order.email,
            subject=f"How was order {order.number}?",
            body=f"Hello {order.name},\n\nwe hope you enjoy your order {order.number}. "
            f"Tell us how it went: {settings.SITE_URL}/orders/{order.pk}/\n",
        )
    )


# --- Delayed: abandoned-cart reminders ------------------------------------------------------------


def abandoned_cart_record(*, session_key: str, email: str, items: dict[str, int]) -> None:
    """Remember the cart of a shopper whose email checkout has learnt; an empty cart is forgotten."""
    if not items:
        AbandonedCart.objects.filter(session_key=session_key).delete()
        return
    with transaction.atomic():
        AbandonedCart.objects.update_or_create(
            session_key=session_key,
            defaults={"email": email.lower(), "items": items, "touched_at": timezone.now()},
        )


def abandoned_cart_forget(*, session_key: str) -> None:
    """The cart became an order: there is nothing to remind about."""
    AbandonedCart.objects.filter(session_key=session_key).delete()


def cart_reminders_create() -> dict:
    """Hand every cart untouched for ``CART_REMINDER_AFTER_HOURS`` to its one reminder.

    Only carts whose shopper ticked the reminder box are kept at all (``orders.views``). At most
    one reminder per address per ``CART_REMINDER_PERIOD_DAYS``: an address reminded in the period
    is skipped, and the follow-up's key names the address and the period, so two carts of one
    address due together make one reminder. An unsubscribed address gets none.
    """
    now = timezone.now()
    due_before = now - timedelta(hours=settings.CART_REMINDER_AFTER_HOURS)
    period = timedelta(days=settings.CART_REMINDER_PERIOD_DAYS)
    period_index = int(now.timestamp() // period.total_seconds())
    reminded_lately = AbandonedCart.objects.filter(reminded_at__gte=now - period).values("email")
    due = AbandonedCart.objects.filter(reminded_at__isnull=True, touched_at__lte=due_before)
    # A cart's mark goes with the cart (it became an order, the box was unticked in its session),
    # so the ledger's reminders of the period count too: their keys name the address's digest.
    digests_reminded = {
        key.split(":")[1]
        for key in FollowUp.objects.filter(
            kind=CART_REMINDER_EMAIL, created_at__gte=now - period
        ).values_list("key", flat=True)
    }
    reminded_in_ledger = [
        email
        for email in due.values_list("email", flat=True).distinct()
        if _address_digest(email) in digests_reminded
    ]
    handed_over = follow_ups_create_for_due(
        due=due.exclude(email__in=reminded_lately)
        .exclude(email__in=reminded_in_ledger)
        .exclude(email__in=Unsubscribe.objects.values("email")),
        follow_ups_for=lambda cart: [
            NewFollowUp(
                key=f"cart-reminder:{_address_digest(cart.email)}:{period_index}",
                kind=CART_REMINDER_EMAIL,
                subject=f"cart:{cart.pk}",
                label=f"Cart {cart.pk}",
                payload={"cart_id": cart.pk},
            )
        ],
        mark={"reminded_at": now},
    )
    return {"due": handed_over.items, "follow_ups": handed_over.follow_ups}


def _address_digest(email: str) -> str:
    """An address of any length, in a key of fixed length (and out of the key's plain text)."""
    return hashlib.sha256(email.lower().encode()).hexdigest()[:32]


def cart_reminder_email_send(follow_up: FollowUp) -> dict:
    """The reminder, with the cart as it is when sent: a cart gone since (it became an order, or
    passed its retention) gets none."""
    cart = AbandonedCart.objects.filter(pk=follow_up.payload["cart_id"]).first()
    if cart is None:
        return {"skipped": "cart gone"}
    if email_unsubscribed(email=cart.email):  # unsubscribed after the reminder was written
        return {"skipped": "unsubscribed"}
    products = dict(Product.objects.filter(sku__in=cart.items).values_list("sku", "name"))
    lines = [f"- {quantity} × {products.get(sku, sku)}" for sku, quantity in cart.items.items()]
    return _sent(
        email_send(
            purpose_key=f"cart-{cart.pk}-reminder",
            recipient=cart.email,
            subject="You left something in your cart",
            body="Your cart is waiting for you:\n\n"
            + "\n".join(lines)
            + f"\n\nFinish your order: {settings.SITE_URL}/cart/\n"
            + "\nYou get this because you asked for a reminder at checkout. No more reminders:\n"
            + email_unsubscribe_url(email=cart.email)
            + "\n",
            headers=email_unsubscribe_headers(email=cart.email),
        )
    )
