"""Reads of email delivery state for pages."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Min

from notifications.models import EmailDelivery


@dataclass(frozen=True)
class UnknownDeliveries:
    """Emails whose DATA got no recorded reply: the server may have them; each is held, then resent."""

    count: int
    first_hold_ends_at: datetime | None
    last_hold_ends_at: datetime | None


def deliveries_unknown() -> UnknownDeliveries:
    held = EmailDelivery.objects.filter(status=EmailDelivery.Status.UNKNOWN).aggregate(
        count=Count("id"), first=Min("hold_until"), last=Max("hold_until")
    )
    return UnknownDeliveries(
        count=held["count"], first_hold_ends_at=held["first"], last_hold_ends_at=held["last"]
    )


def deliveries_unknown_count() -> int:
    return EmailDelivery.objects.filter(status=EmailDelivery.Status.UNKNOWN).count()
