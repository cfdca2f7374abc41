"""The delivery log's retention: a delivery record, the proof that an email went out under its
purpose key, is deleted only once nothing that could send under that key again is left.

The log is what makes a second send for a purpose key a no-op (``services.email_send``); without
it, a replayed dead letter would send its email again. So the prune takes, besides
``EMAIL_DELIVERY_RETENTION_DAYS``, the moment the oldest sender still on record was created
(the caller reads it from the follow-up ledger; this app knows no follow-ups): a delivery is kept
while it is not older than that.
"""

from datetime import datetime

from django.conf import settings

from notifications.models import EmailDelivery, OutboxMessage
from scheduling.retention import retention_cutoff, rows_delete_in_chunks


def email_deliveries_prune(
    *, now: datetime, senders_since: datetime | None, deadline: float | None = None
) -> int:
    """Delete delivery records older than ``EMAIL_DELIVERY_RETENTION_DAYS`` *and* older than
    ``senders_since`` (less a day's margin): the creation time of the oldest record that may still
    send under a purpose key (``None``: there is none). A sender always exists before its
    delivery, so no delivery of a sender still on record is deleted, whatever the settings say.
    """
    cutoff = retention_cutoff(
        now=now, days=settings.EMAIL_DELIVERY_RETENTION_DAYS, owners_since=senders_since
    )
    if cutoff is None:
        return 0
    return rows_delete_in_chunks(
        rows=EmailDelivery.objects.filter(created_at__lt=cutoff), deadline=deadline
    )


def outbox_messages_prune(*, now: datetime, deadline: float | None = None) -> int:
    """The development outbox's messages older than ``RETENTION_DAYS`` (mail kept locally when no
    ``EMAIL_HOST`` is set; what was sent is recorded by the delivery log, not here)."""
    cutoff = retention_cutoff(now=now, days=settings.RETENTION_DAYS)
    if cutoff is None:
        return 0
    return rows_delete_in_chunks(
        rows=OutboxMessage.objects.filter(created_at__lt=cutoff), deadline=deadline
    )
