"""The catalog's effects, declared to the follow-up engine: the low-stock alert email."""

from django.conf import settings

from follow_ups.models import FollowUp
from follow_ups.registry import Kind, register
from notifications.services import EMAIL_DELIVERY_TRAITS, email_send
from shop.models import LowStockAlert
from shop.services import LOW_STOCK_ALERT_EMAIL


def low_stock_alert_email_send(follow_up: FollowUp) -> dict:
    """Email one staff recipient about one alert (the stock it was opened at)."""
    payload = follow_up.payload
    alert = LowStockAlert.objects.select_related("product").filter(pk=payload["alert_id"]).first()
    if alert is None:  # its product was deleted: nothing left to restock
        return {"skipped": "alert gone"}
    product = alert.product
    sent = email_send(
        purpose_key=f"low-stock-{alert.pk}-to-{payload['recipient']}",
        recipient=payload["recipient"],
        subject=f"Low stock: {product.name} ({product.sku})",
        body=f"{product.name} ({product.sku}) is down to {alert.stock} "
        f"(threshold {settings.LOW_STOCK_THRESHOLD}). Restock it in the admin.",
    )
    return {"message_id": sent.message_id, "already_sent": sent.already_sent}


def register_kinds() -> None:
    register(
        Kind(
            name=LOW_STOCK_ALERT_EMAIL,
            label="Low-stock alert email",
            queue="default",
            perform=low_stock_alert_email_send,
            **EMAIL_DELIVERY_TRAITS,
        )
    )
