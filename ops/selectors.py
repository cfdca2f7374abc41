"""Reads for the ops page, ``/metrics`` and the probes: the six job metrics, workers and beat.

The follow-up ledger (``follow_ups.FollowUp``) answers most questions; the broker answers queue
depth; Celery's remote control answers which workers are online; the relay's own state row tells
when it last ticked and what it has published, recovered and re-published. Every read that leaves the database has a short timeout: a broker or worker that
is away makes the page say "unknown", never hang.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from follow_ups import registry
from follow_ups.broker import BROKER_TIMEOUT_SECONDS, queue_depths
from follow_ups.models import FollowUp, RelayState
from follow_ups.selectors import breakers_overview, relay_state_get
from notifications.selectors import UnknownDeliveries, deliveries_unknown
from ops.models import QueueSample
from scheduling.beat import LEASE_NAME as BEAT_LEASE_NAME
from scheduling.models import Lease

logger = logging.getLogger(__name__)

RATE_WINDOW = timedelta(minutes=5)
THROUGHPUT_WINDOW = timedelta(minutes=1)
HISTORY_MINUTES = 60
PING_TIMEOUT_SECONDS = 0.5
RECENT_FAILURES = 10


@dataclass
class JobMetrics:
    """The six metrics for one follow-up kind, or for one queue (the sum of its kinds)."""

    name: str
    queue: str
    depth: int | None = None  # messages waiting in the broker; None when the broker did not say
    waiting: int = 0  # follow-ups not done yet and not running: pending, or retrying
    oldest_wait_seconds: float = 0.0  # since the oldest waiting one was created
    throughput_per_minute: float = 0.0
    retry_rate: float = 0.0
    failure_rate: float = 0.0
    dead_letters: int = 0
    retrying_now: int = 0
    # Per minute, oldest first, for the sparklines: finished, retried and dead-lettered follow-ups.
    throughput_history: list[int] = field(default_factory=list)
    retry_history: list[int] = field(default_factory=list)
    failure_history: list[int] = field(default_factory=list)
    # Per queue only, from the samples beat takes: the peak depth and oldest wait of each minute.
    depth_history: list[int] = field(default_factory=list)
    oldest_wait_history: list[int] = field(default_factory=list)


@dataclass
class OpsSnapshot:
    taken_at: datetime
    by_kind: list[JobMetrics]
    by_queue: list[JobMetrics]
    workers: list[str] | None  # None: the broker could not be asked
    relay: RelayState | None
    # Emails the server may have (no reply to DATA), each held before a resend.
    email_unknown: UnknownDeliveries | None = None
    beat_until: datetime | None = None  # until when the active beat holds its lease
    # Each provider's circuit breaker: state, since when, how many follow-ups wait for it.
    breakers: list[dict] = field(default_factory=list)
    # Per queue, the workers consuming it (None: the broker could not be asked).
    queue_workers: dict[str, list[str]] | None = None

    @property
    def last_relay_tick(self) -> datetime | None:
        return self.relay.ticked_at if self.relay else None

    @property
    def beat_running(self) -> bool:
        return self.beat_until is not None and self.beat_until > self.taken_at

    @property
    def dead_letters(self) -> int:
        return sum(metric.dead_letters for metric in self.by_kind)


def queue_for_kind(kind: str) -> str:
    return registry.kind_get(kind).queue


def queue_names() -> list[str]:
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


def workers_online() -> list[str] | None:
    """Hostnames of the workers that answered a ping within half a second; None if none could be asked."""
    try:
        replies = current_app.control.ping(timeout=PING_TIMEOUT_SECONDS)
    except Exception:
        logger.warning("could not ping workers", exc_info=True)
        return None
    return sorted(name for reply in replies for name in reply)


def workers_by_queue() -> dict[str, list[str]] | None:
    """The workers that answered within half a second, with the queues each consumes; None if
    none could be asked. One broadcast, as a ping: it answers which workers are online too."""
    try:
        replies = current_app.control.inspect(timeout=PING_TIMEOUT_SECONDS).active_queues()
    except Exception:
        logger.warning("could not ask the workers for their queues", exc_info=True)
        return None
    return {
        worker: sorted(queue["name"] for queue in queues or [])
        for worker, queues in (replies or {}).items()
    }


def beat_lease_expires_at() -> datetime | None:
    """Until when the active beat holds its lease (it renews it while it runs)."""
    return Lease.objects.filter(name=BEAT_LEASE_NAME).values_list("expires_at", flat=True).first()


def last_relay_tick() -> datetime | None:
    """When the active relay last ticked."""
    state = relay_state_get()
    return state.ticked_at if state else None


def database_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.warning("database unreachable", exc_info=True)
        return False


def broker_reachable() -> bool:
    try:
        with current_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        return True
    except Exception:
        logger.warning("broker unreachable", exc_info=True)
        return False


def job_metrics(*, now: datetime | None = None) -> list[JobMetrics]:
    """The ledger's metrics per follow-up kind.

    Rates look at the follow-ups whose latest attempt started in the last five minutes: the retry
    rate is the share that needed a retry (and may since have succeeded), the failure rate the
    share that ended dead.
    Throughput is follow-ups that ran and succeeded in the last minute.
    """
    now = now or timezone.now()
    since_hour = now - timedelta(minutes=HISTORY_MINUTES)
    since_window = now - RATE_WINDOW
    since_throughput = now - THROUGHPUT_WINDOW
    rows = FollowUp.objects.filter(
        Q(started_at__gte=since_hour)
        | Q(finished_at__gte=since_hour)
        | Q(
            status__in=[
                FollowUp.Status.PENDING,
                FollowUp.Status.RETRYING,
                FollowUp.Status.WAITING,
            ]
        )
    ).values_list("kind", "status", "attempts", "created_at", "started_at", "finished_at")
    dead_by_kind = defaultdict(int)
    for kind, count in _count_by_kind(FollowUp.objects.filter(status=FollowUp.Status.DEAD)):
        dead_by_kind[kind] = count

    metrics = {
        kind: JobMetrics(
            name=kind,
            queue=queue_for_kind(kind),
            dead_letters=dead_by_kind[kind],
            throughput_history=[0] * HISTORY_MINUTES,
            retry_history=[0] * HISTORY_MINUTES,
            failure_history=[0] * HISTORY_MINUTES,
        )
        for kind in sorted(k.name for k in registry.kinds())
    }
    started_in_window: dict[str, int] = defaultdict(int)
    retried_in_window: dict[str, int] = defaultdict(int)
    dead_in_window: dict[str, int] = defaultdict(int)
    succeeded_last_minute: dict[str, int] = defaultdict(int)
    oldest: dict[str, datetime] = {}

    for kind, status, attempts, created_at, started_at, finished_at in rows:
        m = metrics[kind]
        if status in (FollowUp.Status.RETRYING, FollowUp.Status.WAITING):
            m.retrying_now += 1
        if status in (FollowUp.Status.PENDING, FollowUp.Status.RETRYING, FollowUp.Status.WAITING):
            # Waiting since the effect was decided, whether for a worker or for its next retry:
            # during an outage every row is retrying, and the oldest wait is what grows.
            m.waiting += 1
            if kind not in oldest or created_at < oldest[kind]:
                oldest[kind] = created_at

        if started_at is not None and started_at >= since_window:
            started_in_window[kind] += 1
            # Retried: failed at least once, whether it then succeeded, died or waits to retry.
            if status in (FollowUp.Status.RETRYING, FollowUp.Status.WAITING) or attempts > 1:
                retried_in_window[kind] += 1
            if status == FollowUp.Status.DEAD:
                dead_in_window[kind] += 1
        # Work done: a row set aside before it ever started (a charge's void once its order
        # committed) is settled, not throughput.
        ran = started_at is not None
        if (
            status == FollowUp.Status.SUCCEEDED
            and ran
            and finished_at is not None
            and finished_at >= since_throughput
        ):
            succeeded_last_minute[kind] += 1

        if (
            status == FollowUp.Status.SUCCEEDED
            and ran
            and finished_at
            and finished_at >= since_hour
        ):
            m.throughput_history[_minute_index(finished_at, now)] += 1
        elif status == FollowUp.Status.DEAD and finished_at and finished_at >= since_hour:
            m.failure_history[_minute_index(finished_at, now)] += 1
        elif status == FollowUp.Status.RETRYING and started_at and started_at >= since_hour:
            m.retry_history[_minute_index(started_at, now)] += 1

    throughput_minutes = THROUGHPUT_WINDOW.total_seconds() / 60
    for kind, m in metrics.items():
        if kind in oldest:
            m.oldest_wait_seconds = max(0.0, (now - oldest[kind]).total_seconds())
        m.throughput_per_minute = succeeded_last_minute[kind] / throughput_minutes
        if started_in_window[kind]:
            m.retry_rate = retried_in_window[kind] / started_in_window[kind]
            m.failure_rate = dead_in_window[kind] / started_in_window[kind]
    return list(metrics.values())


def queue_totals(by_kind: list[JobMetrics], depths: dict[str, int | None]) -> list[JobMetrics]:
    """The per-kind metrics summed (counts) or maximised (ages, rates) per queue."""
    by_queue = []
    for queue in queue_names():
        kinds = [m for m in by_kind if m.queue == queue]
        total = JobMetrics(name=queue, queue=queue, depth=depths.get(queue))
        total.waiting = sum(m.waiting for m in kinds)
        total.oldest_wait_seconds = max((m.oldest_wait_seconds for m in kinds), default=0.0)
        total.throughput_per_minute = sum(m.throughput_per_minute for m in kinds)
        total.retry_rate = max((m.retry_rate for m in kinds), default=0.0)
        total.failure_rate = max((m.failure_rate for m in kinds), default=0.0)
        total.dead_letters = sum(m.dead_letters for m in kinds)
        total.retrying_now = sum(m.retrying_now for m in kinds)
        for series in ("throughput_history", "retry_history", "failure_history"):
            columns = [getattr(m, series) for m in kinds] or [[0] * HISTORY_MINUTES]
            setattr(total, series, [sum(values) for values in zip(*columns, strict=True)])
        by_queue.append(total)
    return by_queue


def queue_history(*, now: datetime) -> dict[str, tuple[list[int], list[int]]]:
    """Per queue, the last hour of sampled depth and oldest wait (seconds), the peak of each minute."""
    history = {queue: ([0] * HISTORY_MINUTES, [0] * HISTORY_MINUTES) for queue in queue_names()}
    samples = QueueSample.objects.filter(
        taken_at__gte=now - timedelta(minutes=HISTORY_MINUTES), taken_at__lte=now
    ).values_list("queue", "taken_at", "depth", "oldest_wait_seconds")
    for queue, taken_at, depth, oldest in samples:
        if queue not in history:
            continue
        index = _minute_index(taken_at, now)
        depths, ages = history[queue]
        depths[index] = max(depths[index], depth or 0)
        ages[index] = max(ages[index], round(oldest))
    return history


def ops_snapshot(*, now: datetime | None = None) -> OpsSnapshot:
    """Everything the ops page and ``/metrics`` show, per kind and per queue."""
    now = now or timezone.now()
    by_kind = job_metrics(now=now)
    depths = queue_depths(queue_names())
    by_queue = queue_totals(by_kind, depths)
    history = queue_history(now=now)
    for total in by_queue:
        total.depth_history, total.oldest_wait_history = history[total.name]
    for m in by_kind:
        m.depth = depths.get(m.queue)
    consumers = workers_by_queue()
    return OpsSnapshot(
        taken_at=now,
        by_kind=by_kind,
        by_queue=by_queue,
        workers=None if consumers is None else sorted(consumers),
        relay=relay_state_get(),
        email_unknown=deliveries_unknown(),
        beat_until=beat_lease_expires_at(),
        breakers=breakers_overview(),
        queue_workers=None
        if consumers is None
        else {
            queue: sorted(worker for worker, queues in consumers.items() if queue in queues)
            for queue in queue_names()
        },
    )


def recent_failures(*, limit: int = RECENT_FAILURES) -> list[FollowUp]:
    """The follow-ups whose latest attempt failed (retrying, or dead), the latest change first,
    with the error behind it: for staff. The customer's page says what it means, never this."""
    return list(
        FollowUp.objects.filter(
            status__in=[FollowUp.Status.RETRYING, FollowUp.Status.WAITING, FollowUp.Status.DEAD]
        )
        .exclude(last_error="")
        .order_by("-updated_at", "-id")[:limit]
    )


def _count_by_kind(queryset):
    return queryset.values_list("kind").annotate(count=Count("id")).order_by()


def _minute_index(moment: datetime, now: datetime) -> int:
    """Which of the last sixty one-minute buckets (0 = oldest) a moment falls in."""
    minutes_ago = int((now - moment).total_seconds() // 60)
    return max(0, min(HISTORY_MINUTES - 1, HISTORY_MINUTES - 1 - minutes_ago))
