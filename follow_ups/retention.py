"""The ledger's retention: succeeded follow-ups go after ``FOLLOW_UP_RETENTION_DAYS``, dead letters
after ``FOLLOW_UP_DEAD_RETENTION_DAYS``; nothing pending, running or retrying ever goes.

A succeeded row cannot be replayed (replay takes dead rows only), so once it is past its retention
it is only history. A dead letter is what an operator must see and may replay: it is kept far
longer, and its delivery proof with it (``follow_ups_oldest_created_at``).
"""

from datetime import datetime

from django.conf import settings

from follow_ups.models import FollowUp
from scheduling.retention import retention_cutoff, rows_delete_in_chunks


def follow_ups_prune(*, now: datetime, deadline: float | None = None) -> dict:
    """Delete succeeded rows finished before their retention, then dead rows untouched (not
    replayed) for theirs, a chunk per transaction; their digest notices go with them."""
    counts = {}
    # A replay sets updated_at, so a dead letter replayed lately is not "old"; created_at comes
    # first so the (status, created_at) index finds the candidates.
    for name, status, days in (
        ("follow_ups_succeeded", FollowUp.Status.SUCCEEDED, settings.FOLLOW_UP_RETENTION_DAYS),
        ("follow_ups_dead", FollowUp.Status.DEAD, settings.FOLLOW_UP_DEAD_RETENTION_DAYS),
    ):
        before = retention_cutoff(now=now, days=days)
        counts[name] = (
            0
            if before is None
            else rows_delete_in_chunks(
                rows=FollowUp.objects.filter(
                    status=status, created_at__lt=before, updated_at__lt=before
                ),
                deadline=deadline,
            )
        )
    return counts


def follow_ups_oldest_created_at() -> datetime | None:
    """When the oldest follow-up still in the ledger was created (``None``: the ledger is empty).

    Every record an effect leaves under its own key (an email's delivery log) is written after its
    follow-up was created, so a record older than this belongs to no follow-up that could still
    run or be replayed. Read by id, which rises with creation time (the primary key's index).
    """
    return FollowUp.objects.order_by("pk").values_list("created_at", flat=True).first()
