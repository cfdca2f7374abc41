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
    counts = {"follow_ups_succeeded": 0, "follow_ups_dead": 0}
    succeeded_before = retention_cutoff(now=now, days=settings.FOLLOW_UP_RETENTION_DAYS)
    if succeeded_before is not None:
        # created_at first: the (status, created_at) index finds the candidates.
        counts["follow_ups_succeeded"] = rows_delete_in_chunks(
            rows=FollowUp.objects.filter(
                status=FollowUp.Status.SUCCEEDED,
                created_at__lt=succeeded_before,
                updated_at__lt=succeeded_before,
            ),
            deadline=deadline,
        )
    dead_before = retention_cutoff(now=now, days=settings.FOLLOW_UP_DEAD_RETENTION_DAYS)
    if dead_before is not None:
        # A replay sets updated_at, so a dead letter replayed lately is not "old".
        counts["follow_ups_dead"] = rows_delete_in_chunks(
            rows=FollowUp.objects.filter(
                status=FollowUp.Status.DEAD,
                created_at__lt=dead_before,
                updated_at__lt=dead_before,
            ),
            deadline=deadline,
        )
    return counts


def follow_ups_oldest_created_at() -> datetime | None:
    """When the oldest follow-up still in the ledger was created (``None``: the ledger is empty).

    Every record an effect leaves under its own key (an email's delivery log) is written after its
    follow-up was created, so a record older than this belongs to no follow-up that could still
    run or be replayed. Read by id, which rises with creation time (the primary key's index).
    """
    return FollowUp.objects.order_by("pk").values_list("created_at", flat=True).first()
