"""Writes of the catalog that are not checkout's: stock adjustments, the low-stock alerts."""

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from follow_ups.services import NewFollowUp, follow_ups_create_for_due
from notifications.services import staff_recipients
from shop.models import LowStockAlert, Product

LOW_STOCK_ALERT_EMAIL = "low_stock_alert_email"


class StockWouldGoNegative(Exception):
    def __init__(self, product: Product, change: int):
        super().__init__(
            f"{product.name} has {product.stock} in stock; taking {-change} away would go below zero."
        )


def product_stock_adjust(*, product_id: int, change: int) -> int:
    """Add ``change`` (negative to take away) to the stock as one ``UPDATE … SET stock = stock + n``,
    so sales made meanwhile are kept: a count never overwrites what checkout sold. Returns the new
    stock; raises ``StockWouldGoNegative`` rather than go below zero."""
    with transaction.atomic():
        updated = Product.objects.filter(pk=product_id, stock__gte=-change).update(
            stock=F("stock") + change
        )
        product = Product.objects.get(pk=product_id)
    if not updated:
        raise StockWouldGoNegative(product, change)
    return product.stock


def low_stock_alerts_check() -> dict:
    """Open one alert per product that crossed under the threshold and hand it to its staff emails
    (one follow-up per recipient); close alerts whose product is back at or above the threshold,
    so the next crossing alerts again. The emails are follow-ups: this sends nothing itself.
    """
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
    recipients = staff_recipients()
    if not recipients:  # nobody to tell yet: the alerts wait, unmarked, for the first recipient
        return {"opened": opened, "notified": 0, "emails": 0, "resolved": resolved}
    handed_over = follow_ups_create_for_due(
        due=LowStockAlert.objects.filter(
            resolved_at__isnull=True, notified_at__isnull=True
        ).select_related("product"),
        follow_ups_for=lambda alert: low_stock_alert_follow_ups(alert, recipients),
        mark={"notified_at": now},
    )
    return {
        "opened": opened,
        "notified": handed_over.items,
        "emails": handed_over.follow_ups,
        "resolved": resolved,
    }


def low_stock_alert_follow_ups(alert: LowStockAlert, recipients: list[str]) -> list[NewFollowUp]:
    subject = f"low_stock_alert:{alert.pk}"
    return [
        NewFollowUp(
            key=f"{subject}:to:{recipient}",
            kind=LOW_STOCK_ALERT_EMAIL,
            subject=subject,
            label=f"Low stock {alert.product.sku}",
            payload={"alert_id": alert.pk, "recipient": recipient},
        )
        for recipient in recipients
    ]
