"""Bookkeeping for background work on a schedule: named leases, run-once-per-period records,
schedule sync.

It knows nothing of what a job does. ``scheduling.beat`` (the scheduler) takes the ``celery-beat``
lease, the relay (``follow_ups.relay``) the ``follow-up-relay`` one, and the recurring job tasks
run their work through ``job_run``.
"""

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from scheduling import clock
from scheduling.models import JobRun, Lease, ScheduleSync

logger = logging.getLogger(__name__)

# Longer than any job's hard time limit: a run still "running" after this is dead.
STALE_RUN = timedelta(minutes=15)


# --- Leases: one holder at a time ----------------------------------------------------------------


def lease_acquire(*, name: str, holder: str, ttl_seconds: float) -> bool:
    """Take or renew the lease ``name`` for ``holder``; ``False`` while another live holder has it.

    A holder that stops renewing (its process died) loses it ``ttl_seconds`` after its last renewal.

    The conditional UPDATE is the lock: a holder renews its own row, anyone may take an expired one,
    and of two beats racing for an expired row exactly one update matches.
    """
    now = clock.now()
    expires_at = now + timedelta(seconds=ttl_seconds)
    with transaction.atomic():
        taken = (
            Lease.objects.filter(name=name)
            .filter(Q(holder=holder) | Q(expires_at__lt=now))
            .update(
                acquired_at=Case(When(holder=holder, then=F("acquired_at")), default=Value(now)),
                holder=holder,
                expires_at=expires_at,
            )
        )
    if taken:
        return True
    try:
        with transaction.atomic():
            Lease.objects.create(name=name, holder=holder, expires_at=expires_at, acquired_at=now)
    except IntegrityError:  # the row exists and someone else holds it
        return False
    return True


def lease_release(*, name: str, holder: str) -> None:
    """Give the lease up at shutdown, so a standby takes over without waiting for it to lapse."""
    Lease.objects.filter(name=name, holder=holder).update(expires_at=clock.now())


# --- Run records: each period once ----------------------------------------------------------------


def manual_period() -> str:
    """The period of a run started by hand (no ``period`` from beat): unique, so it always runs."""
    return f"manual:{clock.now().isoformat()}"


def job_run(*, job: str, period: str | None, work: Callable[[], dict]) -> dict:
    """Run ``work`` once for (job, period) and record it; a second run for the period does nothing.

    A failed run may be tried again for the same period (its row is reclaimed), and so may a run
    whose worker died mid-way (still "running" after ``STALE_RUN``); a succeeded or live one may not.
    """
    period = period or manual_period()
    run = _job_run_claim(job=job, period=period)
    if run is None:
        return {"skipped": True, "job": job, "period": period}
    try:
        counts = work()
    except Exception as exc:
        JobRun.objects.filter(pk=run.pk).update(
            outcome=JobRun.Outcome.FAILED,
            finished_at=clock.now(),
            error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        raise
    JobRun.objects.filter(pk=run.pk).update(
        outcome=JobRun.Outcome.SUCCEEDED, finished_at=clock.now(), counts=counts, error=""
    )
    return {"job": job, "period": period, **counts}


def _job_run_claim(*, job: str, period: str) -> JobRun | None:
    now = clock.now()
    try:
        with transaction.atomic():
            return JobRun.objects.create(job=job, period=period, started_at=now)
    except IntegrityError:
        pass
    # A failed run may be tried again; so may one "running" past any job's time limit, whose
    # worker died without recording an outcome.
    retried = (
        JobRun.objects.filter(job=job, period=period)
        .filter(
            Q(outcome=JobRun.Outcome.FAILED)
            | Q(outcome=JobRun.Outcome.RUNNING, started_at__lt=now - STALE_RUN)
        )
        .update(
            outcome=JobRun.Outcome.RUNNING,
            started_at=now,
            finished_at=None,
            attempts=F("attempts") + 1,
        )
    )
    return JobRun.objects.get(job=job, period=period) if retried else None


# --- Schedules: code is the source, the admin may edit ---------------------------------------------


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_admin_edits: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def schedules_sync(*, schedules: Iterable, force: bool = False) -> SyncReport:
    """Write the code's schedules to django-celery-beat's tables; idempotent.

    A row is rewritten only if it still looks exactly as this function last left it; a row changed
    in the admin since is kept and reported (``force`` overwrites it). Rows this function created
    for schedules no longer in the code are deleted, unless edited in the admin.
    """
    report = SyncReport()
    names = set()
    with transaction.atomic():
        for schedule in schedules:
            names.add(schedule.name)
            _schedule_sync_one(schedule, force=force, report=report)
        for record in ScheduleSync.objects.exclude(name__in=names):
            task = PeriodicTask.objects.filter(name=record.name).first()
            if task is not None and _fingerprint(task) != record.fingerprint and not force:
                report.kept_admin_edits.append(record.name)
                continue
            if task is not None:
                task.delete()
            record.delete()
            report.removed.append(record.name)
    return report


def _schedule_sync_one(schedule, *, force: bool, report: SyncReport) -> None:
    task = PeriodicTask.objects.filter(name=schedule.name).first()
    record = ScheduleSync.objects.filter(name=schedule.name).first()
    edited = task is not None and record is not None and _fingerprint(task) != record.fingerprint
    if edited and not force:
        report.kept_admin_edits.append(schedule.name)
        return
    created = task is None
    task = task or PeriodicTask(name=schedule.name)
    before = None if created else _fingerprint(task)
    task.task = schedule.task
    task.queue = schedule.queue
    task.expire_seconds = int(schedule.expires)
    task.expires = None
    task.description = schedule.description
    task.enabled = True
    task.one_off = False
    task.args = "[]"
    task.kwargs = "{}"
    task.interval = task.crontab = task.solar = task.clocked = None
    if schedule.cron:
        task.crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=schedule.cron.get("minute", "*"),
            hour=schedule.cron.get("hour", "*"),
            day_of_week=schedule.cron.get("day_of_week", "*"),
            day_of_month=schedule.cron.get("day_of_month", "*"),
            month_of_year=schedule.cron.get("month_of_year", "*"),
            timezone="UTC",
        )
    else:
        task.interval, _ = IntervalSchedule.objects.get_or_create(
            every=int(schedule.every), period=IntervalSchedule.SECONDS
        )
    after = _fingerprint(task)
    if before == after and record is not None:
        report.unchanged.append(schedule.name)
        return
    if before != after:
        task.save()
    ScheduleSync.objects.update_or_create(name=schedule.name, defaults={"fingerprint": after})
    (report.created if created else report.updated if before != after else report.unchanged).append(
        schedule.name
    )


def _fingerprint(task: PeriodicTask) -> str:
    """What the scheduler acts on, so an edit to any of it in the admin is noticed."""
    if task.crontab_id:
        crontab = task.crontab
        when = [
            "crontab",
            crontab.minute,
            crontab.hour,
            crontab.day_of_week,
            crontab.day_of_month,
            crontab.month_of_year,
            str(crontab.timezone),
        ]
    elif task.interval_id:
        when = ["interval", task.interval.every, task.interval.period]
    else:
        when = ["other", task.solar_id, task.clocked_id]
    state = [
        task.task,
        task.queue,
        task.expire_seconds,
        str(task.expires),
        task.enabled,
        task.one_off,
        task.args,
        task.kwargs,
        when,
    ]
    return hashlib.sha256(json.dumps(state, default=str).encode()).hexdigest()
