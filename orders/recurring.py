"""The work of the recurring and delayed jobs: cleanup, reports, alerts, reconciliation, reminders.

Each function is a service a beat task calls (through ``orders.jobs.job_run``); each is safe to run
again: it works from what the database says is due and marks what it did, and every email goes
through ``email_send`` with a purpose key, so a repeat sends nothing twice.
"""

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Sum
from django.utils import timezone
from django_celery_results.models import TaskResult

from follow_ups.models import DeadLetterNotice, FollowUp
from notifications.models import EmailDelivery
from notifications.services import email_send
from orders import warehouse
from orders.models import (
    AbandonedCart,
    JobRun,
    LowStockAlert,
    Order,
    OrderLine,
    OrderShipment,
    SalesReport,
)
from shop.models import Product

REPORT_CHUNK_SIZE = 500


def staff_recipients() -> list[str]:
    """Who gets staff mail: active staff users with an email, plus ``STAFF_EMAILS``."""
    users = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)) | set(settings.STAFF_EMAILS))


def _email_staff(*, purpose_key: str, subject: str, body: str) -> int:
    sent = 0
    for recipient in staff_recipients():
        result = email_send(
            purpose_key=f"{purpose_key}-to-{recipient}",
            recipient=recipient,
            subject=subject,
            body=body,
        )
        sent += not result.already_sent
    return sent


# --- Cleanup --------------------------------------------------------------------------------------


def cleanup_run() -> dict:
    """Delete what has outlived its use. No stock is held by unfinished checkouts (stock is taken
    in the order's own transaction), so there is none to release."""
    now = timezone.now()
    keep = now - timedelta(days=settings.RETENTION_DAYS)
    return {
        "sessions": Session.objects.filter(expire_date__lt=now).delete()[0],
        "task_results": TaskResult.objects.filter(date_done__lt=keep).delete()[0],
        # Only sent mail: a failed delivery is still someone's unfinished business.
        "email_deliveries": EmailDelivery.objects.filter(
            status=EmailDelivery.Status.SENT, created_at__lt=keep
        ).delete()[0],
        "job_runs": JobRun.objects.filter(started_at__lt=keep)
        .exclude(outcome=JobRun.Outcome.RUNNING)
        .delete()[0],
        "abandoned_carts": AbandonedCart.objects.filter(touched_at__lt=keep).delete()[0],
    }


# --- Nightly sales report -------------------------------------------------------------------------

REPORT_HEADER = ["sku", "name", "orders", "units", "revenue"]


def sales_report_create(*, day: date) -> SalesReport:
    """The CSV of ``day``'s (UTC) sales per product, stored once and emailed to staff once.

    Rows are aggregated by the database and streamed in chunks, so memory holds one chunk of
    products, never the day's order lines.
    """
    report = SalesReport.objects.filter(day=day).first()
    if report is None:
        report = _sales_report_build(day)
    _email_staff(
        purpose_key=f"sales-report-{day.isoformat()}",
        subject=f"Sales report {day.isoformat()}: {report.orders} orders, {report.revenue}",
        body=f"Sales on {day.isoformat()} (UTC): {report.orders} orders, revenue "
        f"{report.revenue}.\nAlso stored in the admin under Sales reports.\n\n{report.csv}",
    )
    return report


def _sales_report_build(day: date) -> SalesReport:
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
    try:
        with transaction.atomic():
            return SalesReport.objects.create(
                day=day, csv=buffer.getvalue(), orders=orders, revenue=revenue
            )
    except IntegrityError:  # a concurrent run stored it first
        return SalesReport.objects.get(day=day)


def sales_report_day(*, period: str | None) -> date:
    """The day a nightly run reports on: the day before the run's period (or today, by hand)."""
    if period and not period.startswith("manual:"):
        return datetime.fromisoformat(period).date() - timedelta(days=1)
    return timezone.now().date() - timedelta(days=1)


# --- Low-stock alert ------------------------------------------------------------------------------


def low_stock_alerts_send() -> dict:
    """Open one alert per product that crossed under the threshold and email staff about it once;
    close alerts whose product is back at or above the threshold, so the next crossing alerts again."""
    now = timezone.now()
    threshold = settings.LOW_STOCK_THRESHOLD
    resolved = LowStockAlert.objects.filter(
        resolved_at__isnull=True, product__stock__gte=threshold
    ).update(resolved_at=now)
    opened = 0
    already_open = LowStockAlert.objects.filter(resolved_at__isnull=True).values("product_id")
    for product in Product.objects.filter(stock__lt=threshold).exclude(pk__in=already_open):
        try:
            with transaction.atomic():
                LowStockAlert.objects.create(product=product, stock=product.stock, created_at=now)
            opened += 1
        except IntegrityError:  # a concurrent run opened it
            pass
    notified = 0
    for alert in LowStockAlert.objects.filter(
        resolved_at__isnull=True, notified_at__isnull=True
    ).select_related("product"):
        product = alert.product
        _email_staff(
            purpose_key=f"low-stock-{alert.pk}",
            subject=f"Low stock: {product.name} ({product.sku})",
            body=f"{product.name} ({product.sku}) is down to {alert.stock} "
            f"(threshold {threshold}). Restock it in the admin.",
        )
        LowStockAlert.objects.filter(pk=alert.pk).update(notified_at=timezone.now())
        notified += 1
    return {"opened": opened, "notified": notified, "resolved": resolved}


# --- Dead-letter digest ---------------------------------------------------------------------------


def dead_letter_digest_send(*, period: str) -> dict:
    """Email staff the dead letters no digest has listed yet. Each is listed in one digest."""
    listed = DeadLetterNotice.objects.values("follow_up_id")
    new = FollowUp.objects.filter(status=FollowUp.Status.DEAD).exclude(pk__in=listed)
    now = timezone.now()
    DeadLetterNotice.objects.bulk_create(
        [
            DeadLetterNotice(follow_up_id=pk, digest_period=period, created_at=now)
            for pk in new.values_list("pk", flat=True)
        ],
        ignore_conflicts=True,
    )
    in_digest = list(
        FollowUp.objects.filter(
            pk__in=DeadLetterNotice.objects.filter(digest_period=period).values("follow_up_id")
        ).order_by("pk")
    )
    if not in_digest:
        return {"dead_letters": 0, "emails": 0}
    lines = [
        f"- {f.label} {f.kind} after {f.attempts} attempt(s): {f.last_error[:200]}"
        for f in in_digest
    ]
    emails = _email_staff(
        purpose_key=f"dead-letter-digest-{period}",
        subject=f"{len(in_digest)} new dead letter(s)",
        body="Follow-ups that gave up since the last digest (replay them from the admin):\n\n"
        + "\n".join(lines),
    )
    return {"dead_letters": len(in_digest), "emails": emails}


# --- Warehouse reconciliation ---------------------------------------------------------------------


def warehouse_reconcile() -> dict:
    """Mark the orders the warehouse has shipped, due their review request, and tell each customer
    once. A "shipped" email that failed is tried again on the next run."""
    shipped = {s["reference"]: s["shipped_at"] for s in warehouse.shipments_shipped()}
    review_after = timedelta(days=settings.REVIEW_REQUEST_AFTER_DAYS)
    references = list(shipped)
    marked = 0
    for start in range(0, len(references), REPORT_CHUNK_SIZE):
        chunk = references[start : start + REPORT_CHUNK_SIZE]
        for order in Order.objects.filter(shipment_reference__in=chunk, shipment__isnull=True):
            shipped_at = datetime.fromtimestamp(shipped[order.shipment_reference], tz=UTC)
            _, created = OrderShipment.objects.get_or_create(
                order=order,
                defaults={"shipped_at": shipped_at, "review_due_at": shipped_at + review_after},
            )
            marked += created
    emailed = 0
    for shipment in OrderShipment.objects.filter(shipped_email_sent_at__isnull=True).select_related(
        "order"
    ):
        order = shipment.order
        email_send(
            purpose_key=f"order-{order.pk}-shipped",
            recipient=order.email,
            subject=f"Order {order.number} has shipped",
            body=f"Hello {order.name},\n\nyour order {order.number} is on its way "
            f"(shipment {order.shipment_reference}).\n\n{settings.SITE_URL}/orders/{order.pk}/\n",
        )
        OrderShipment.objects.filter(pk=shipment.pk).update(shipped_email_sent_at=timezone.now())
        emailed += 1
    return {"shipped": marked, "emailed": emailed}


# --- Delayed: review requests ---------------------------------------------------------------------


def review_requests_send() -> dict:
    """Ask for a review on every shipment whose review is due and not yet asked for."""
    sent = 0
    due = OrderShipment.objects.filter(
        review_sent_at__isnull=True, review_due_at__lte=timezone.now()
    ).select_related("order")
    for shipment in due:
        order = shipment.order
        email_send(
            purpose_key=f"order-{order.pk}-review-request",
            recipient=order.email,
            subject=f"How was order {order.number}?",
            body=f"Hello {order.name},\n\nwe hope you enjoy your order {order.number}. "
            f"Tell us how it went: {settings.SITE_URL}/orders/{order.pk}/\n",
        )
        OrderShipment.objects.filter(pk=shipment.pk).update(review_sent_at=timezone.now())
        sent += 1
    return {"sent": sent}


# --- Delayed: abandoned-cart reminders ------------------------------------------------------------


def abandoned_cart_record(*, session_key: str, email: str, items: dict[str, int]) -> None:
    """Remember the cart of a shopper whose email checkout has learnt; an empty cart is forgotten."""
    if not items:
        AbandonedCart.objects.filter(session_key=session_key).delete()
        return
    with transaction.atomic():
        AbandonedCart.objects.update_or_create(
            session_key=session_key,
            defaults={"email": email, "items": items, "touched_at": timezone.now()},
        )


def abandoned_cart_forget(*, session_key: str) -> None:
    """The cart became an order: there is nothing to remind about."""
    AbandonedCart.objects.filter(session_key=session_key).delete()


def cart_reminders_send() -> dict:
    """One reminder per cart untouched for ``CART_REMINDER_AFTER_HOURS``."""
    due_before = timezone.now() - timedelta(hours=settings.CART_REMINDER_AFTER_HOURS)
    sent = 0
    for cart in AbandonedCart.objects.filter(reminded_at__isnull=True, touched_at__lte=due_before):
        products = dict(Product.objects.filter(sku__in=cart.items).values_list("sku", "name"))
        lines = [f"- {quantity} × {products.get(sku, sku)}" for sku, quantity in cart.items.items()]
        email_send(
            purpose_key=f"cart-{cart.pk}-reminder",
            recipient=cart.email,
            subject="You left something in your cart",
            body="Your cart is waiting for you:\n\n"
            + "\n".join(lines)
            + f"\n\nFinish your order: {settings.SITE_URL}/cart/\n",
        )
        AbandonedCart.objects.filter(pk=cart.pk).update(reminded_at=timezone.now())
        sent += 1
    return {"sent": sent}
