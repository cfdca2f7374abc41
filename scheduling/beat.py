"""The beat scheduler: django-celery-beat's ``DatabaseScheduler`` that ticks only while it holds
the lease, and stamps each job it sends with the period it fired for.

Two beats started by mistake: one holds the lease (a ``scheduling.Lease`` row, renewed every tick)
and sends; the other waits and takes over when the lease expires. If both ever sent the same job (a
takeover right at a due time), the period stamp lets ``scheduling.services.job_run`` run it once.
The schedules come from ``settings.SCHEDULES`` (declared in ``config/schedules.py``).
"""

import logging
import os
import socket
import uuid
from datetime import UTC, datetime

from celery import schedules
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

from scheduling import services

logger = logging.getLogger(__name__)

LEASE_NAME = "celery-beat"


def run_key_tasks() -> set[str]:
    return {schedule.task for schedule in settings.SCHEDULES if schedule.run_key}


def period_for(entry_schedule, now: datetime) -> str:
    """The slot a due entry belongs to: its interval's window, or the crontab's minute."""
    if isinstance(entry_schedule, schedules.schedule):
        every = max(1, int(entry_schedule.run_every.total_seconds()))
        start = int(now.timestamp()) // every * every
        return datetime.fromtimestamp(start, tz=UTC).isoformat()
    return now.astimezone(UTC).replace(second=0, microsecond=0).isoformat()


class LeasedDatabaseScheduler(DatabaseScheduler):
    def __init__(self, *args, **kwargs):
        self.lease_holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_held = False
        super().__init__(*args, **kwargs)

    def install_default_entries(self, data):
        # No "celery.backend_cleanup": the cleanup job deletes old results on its own schedule.
        pass

    def tick(self, *args, **kwargs):
        try:
            held = services.lease_acquire(
                name=LEASE_NAME, holder=self.lease_holder, ttl_seconds=settings.BEAT_LEASE_SECONDS
            )
        except Exception:  # the database is away: tick nothing, try again soon
            logger.warning("beat could not reach the lease", exc_info=True)
            held = False
        if not held:
            if self.lease_held:
                logger.warning("beat lost the lease; standing by")
            self.lease_held = False
            return min(settings.BEAT_LEASE_SECONDS / 3, self.max_interval)
        if not self.lease_held:
            logger.info("beat holds the lease as %s", self.lease_holder)
            # The schedules in code exist in the tables whoever set up this database (admin
            # edits are kept: the sync only rewrites rows it wrote itself).
            report = services.schedules_sync(schedules=settings.SCHEDULES)
            if report.kept_admin_edits:
                logger.info("beat kept schedules edited in the admin: %s", report.kept_admin_edits)
            # Read the schedule afresh: the previous holder has moved last_run_at on since.
            self._initial_read = True
            self._heap = None
            self.lease_held = True
        return super().tick(*args, **kwargs)

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        if entry.task in run_key_tasks():
            entry.kwargs = {
                **(entry.kwargs or {}),
                "period": period_for(entry.schedule, datetime.now(UTC)),
            }
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def close(self):
        if self.lease_held:
            try:
                services.lease_release(name=LEASE_NAME, holder=self.lease_holder)
            except Exception:
                logger.warning("beat could not release the lease", exc_info=True)
        super().close()
