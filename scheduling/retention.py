"""Deleting what a retention job found past its time, one chunk per transaction; and the retention
of beat's own records (job runs) and of Celery's task results.

Every app prunes its own tables with ``rows_delete_in_chunks``; the ``retention`` job
(``orders.retention``) calls them (docs/scheduling.md, "Retention").
"""

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django_celery_results.models import TaskResult

from scheduling.models import JobRun


def rows_delete_in_chunks(
    *, rows: QuerySet, chunk_size: int | None = None, deadline: float | None = None
) -> int:
    """Delete ``rows``, at most ``chunk_size`` (``RETENTION_CHUNK_SIZE``) per transaction, oldest
    id first; returns how many rows of ``rows``' model went (cascades not counted).

    Each chunk is locked before it is deleted (rows a concurrent writer holds are skipped, and left
    for the next run), so a row cannot change under the delete: ``rows`` is the whole condition.
    No chunk starts after ``deadline`` (``time.monotonic()``): a run that has a backlog to clear
    stops between chunks, keeps what it committed, and the next run carries on.
    """
    chunk_size = chunk_size or settings.RETENTION_CHUNK_SIZE
    model = rows.model
    deleted = 0
    while deadline is None or time.monotonic() < deadline:
        with transaction.atomic():
            ids = list(
                rows.select_for_update(skip_locked=True, of=("self",))
                .order_by("pk")
                .values_list("pk", flat=True)[:chunk_size]
            )
            if not ids:
                break
            _, per_model = model._base_manager.filter(pk__in=ids).delete()
        deleted += per_model.get(model._meta.label, 0)
        if len(ids) < chunk_size:
            break
    return deleted


# Processes' clocks differ (the web that wrote a follow-up, the worker that wrote its delivery),
# and ids rise with creation time only roughly: a day's margin covers both.
OWNERS_CLOCK_MARGIN = timedelta(days=1)


def retention_cutoff(
    *, now: datetime, days: float, owners_since: datetime | None = None
) -> datetime | None:
    """The moment before which rows kept ``days`` days are past it; ``None`` for 0: kept for ever.

    ``owners_since``: when the oldest record that may still need these rows was created (a
    follow-up, for the delivery log). Rows are always written after their owner, so rows from
    before it (less ``OWNERS_CLOCK_MARGIN``) belong to no owner still on record; nothing later goes,
    whatever ``days`` says.
    """
    if not days:
        return None
    cutoff = now - timedelta(days=days)
    if owners_since is not None:
        cutoff = min(cutoff, owners_since - OWNERS_CLOCK_MARGIN)
    return cutoff


def job_runs_prune(*, now: datetime, deadline: float | None = None) -> int:
    """Finished job runs older than ``RETENTION_DAYS``. Far longer than any job's ``expires``: a
    late delivery of a period whose record is gone cannot reach a worker any more."""
    cutoff = retention_cutoff(now=now, days=settings.RETENTION_DAYS)
    if cutoff is None:
        return 0
    return rows_delete_in_chunks(
        rows=JobRun.objects.filter(started_at__lt=cutoff).exclude(outcome=JobRun.Outcome.RUNNING),
        deadline=deadline,
    )


def task_results_prune(*, now: datetime, deadline: float | None = None) -> int:
    """Celery's stored results of the scheduled jobs (follow-ups store none), older than
    ``RETENTION_DAYS``: Celery's own ``backend_cleanup`` is not scheduled."""
    cutoff = retention_cutoff(now=now, days=settings.RETENTION_DAYS)
    if cutoff is None:
        return 0
    return rows_delete_in_chunks(
        rows=TaskResult.objects.filter(date_done__lt=cutoff), deadline=deadline
    )
