"""The relay: the process that makes the ledger and the broker agree.

One relay is active at a time (a lease, like beat's); a second one waits and takes over within the
lease when the first dies. A full tick runs every ``FOLLOW_UP_RELAY_INTERVAL_SECONDS``; between
them, a wake-up from the web (PostgreSQL NOTIFY, naming the rows) publishes just those rows. Each
full tick, in bounded batches:

1. **recover** rows whose execution's lease lapsed (its worker died): back to pending;
2. **publish** what nothing handed to the broker: pending rows never published (the web crashed
   between commit and publish, or the broker was down; the web wakes the relay by NOTIFY on
   PostgreSQL so these go at once, else after ``FOLLOW_UP_RELAY_GRACE_SECONDS``), and retries that
   fell due, each retry once per due time;
3. **tend the breakers** (``follow_ups.breakers``): release what waited for a provider that
   answered again, at a bounded rate, and wake one waiting row as the probe of an open breaker;
4. **repair** what the broker lost: per queue, when fewer messages wait in the queue than rows the
   ledger says were handed over and not yet started (minus those workers say they hold), the
   difference was lost (a broker restarted empty). Those rows, if still unaccounted for at the next
   check, are published again. A long backlog is all in the queue, so it is never re-published.

The relay stores no task results and runs no Celery task: it is not stuck behind the queues it
repairs.
"""

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import F, Min, Q

from follow_ups import breakers, broker, registry, services
from follow_ups.models import FollowUp, RelayState
from scheduling import clock
from scheduling.services import lease_acquire, lease_release

logger = logging.getLogger(__name__)

LEASE_NAME = "follow-up-relay"
BATCH_SIZE = 500
# A tick publishes for at most this long, then yields (renews its lease, reads notifications).
TICK_BUDGET_SECONDS = 2.0


@dataclass
class RelayReport:
    published: int = 0
    recovered: int = 0
    republished: int = 0
    failed: int = 0
    lag_seconds: float | None = 0.0  # None: not measured (a wake-up between full ticks)
    released: int = 0  # waited for a provider that answered again


class Relay:
    def __init__(self):
        # Rows found unaccounted for at the previous check, per queue: re-published only when a
        # second check agrees, so a message in flight between the two counts is never duplicated.
        self.suspects: dict[str, set[int]] = {}
        self.last_lost_check = 0.0
        self.full_tick_due_at = 0.0  # time.monotonic(): the first step is a full tick
        self.last_tick_at = time.monotonic()

    def step(self, *, woken_ids: list[int]) -> RelayReport:
        """A full tick when one is due (every ``FOLLOW_UP_RELAY_INTERVAL_SECONDS``), else, when
        the web woke it, only the rows the wake-up named.

        Under ``FOLLOW_UP_PUBLISH=relay`` every commit wakes the relay: a full tick per wake-up
        would run the lapsed-lease check, the owed-rows scan and the lag query for each order.
        """
        if woken_ids and time.monotonic() < self.full_tick_due_at:
            return self.publish_woken(woken_ids)
        return self.tick(woken_ids=woken_ids)

    def seconds_to_full_tick(self) -> float:
        return max(0.0, self.full_tick_due_at - time.monotonic())

    def publish_woken(self, woken_ids: list[int]) -> RelayReport:
        """Publish the woken rows still owed, found by primary key; nothing else is scanned."""
        report = RelayReport(lag_seconds=None)
        owed = FollowUp.objects.filter(_owed(clock.now(), woken_ids), pk__in=woken_ids)
        report.published, report.failed = _publish(owed)
        return report

    def tick(self, *, woken_ids: list[int] | None = None) -> RelayReport:
        try:
            return self._tick(woken_ids or [])
        finally:  # the next full tick an interval after this one ended, as it failed or not
            self.full_tick_due_at = time.monotonic() + settings.FOLLOW_UP_RELAY_INTERVAL_SECONDS

    def _tick(self, woken_ids: list[int]) -> RelayReport:
        now = clock.now()
        report = RelayReport()
        report.recovered = _recover_lapsed(now)
        elapsed, self.last_tick_at = time.monotonic() - self.last_tick_at, time.monotonic()
        report.released = breakers.breakers_tend(now=now, elapsed_seconds=elapsed).released
        report.published, report.failed = _publish_owed(now, woken_ids)
        due = time.monotonic() - self.last_lost_check >= settings.FOLLOW_UP_LOST_CHECK_SECONDS
        if not report.failed and due:
            self.last_lost_check = time.monotonic()
            report.republished = self._republish_lost(now)
        report.lag_seconds = _lag_seconds(clock.now())
        return report

    def _republish_lost(self, now) -> int:
        kinds_by_queue: dict[str, list[str]] = defaultdict(list)
        for kind in registry.kinds():
            kinds_by_queue[kind.queue].append(kind.name)
        # The broker first, then the ledger: a message consumed between the two questions has
        # been claimed (no longer outstanding) or is held by a worker, never counted as lost.
        depths = broker.queue_depths(list(kinds_by_queue))
        held: set[int] | None = None
        republished = 0
        for queue, kinds in kinds_by_queue.items():
            outstanding = FollowUp.objects.filter(
                kind__in=kinds,
                status__in=[FollowUp.Status.PENDING, FollowUp.Status.RETRYING],
                published_at__lt=now - timedelta(seconds=settings.FOLLOW_UP_LOST_AFTER_SECONDS),
            )
            depth = depths.get(queue)
            count = outstanding.count() if depth is not None else 0
            if depth is None or count <= depth:
                self.suspects[queue] = set()
                continue
            if held is None:
                held = broker.follow_ups_held_by_workers(services.RUN_TASK_NAME) or set()
            missing = count - depth
            oldest = outstanding.order_by("published_at").values_list("pk", flat=True)
            candidates = [pk for pk in oldest[: missing + len(held)] if pk not in held][:missing]
            confirmed = [pk for pk in candidates if pk in self.suspects.get(queue, set())]
            self.suspects[queue] = set(candidates) - set(confirmed)
            if confirmed:
                logger.warning(
                    "queue %s holds %s message(s) for %s waiting follow-up(s): re-publishing %s",
                    queue,
                    depth,
                    count,
                    len(confirmed),
                )
                sent, failed = _publish(FollowUp.objects.filter(pk__in=confirmed))
                republished += sent
                if failed:
                    break
        return republished


def _recover_lapsed(now) -> int:
    """Rows whose execution stopped renewing its lease: the worker is gone. Back to pending, one
    crash counted; the next claim of a row whose crash limit is spent buries it."""
    return FollowUp.objects.filter(status=FollowUp.Status.RUNNING, lease_expires_at__lt=now).update(
        status=FollowUp.Status.PENDING,
        crashes=F("crashes") + 1,
        published_at=None,
        lease_token="",
        lease_expires_at=None,
        last_error="worker lost: its lease lapsed",
        updated_at=now,
    )


def _owed(now, woken_ids: list[int]) -> Q:
    grace = timedelta(seconds=settings.FOLLOW_UP_RELAY_GRACE_SECONDS)
    never_published = Q(
        status=FollowUp.Status.PENDING, published_at__isnull=True, next_attempt_at__isnull=True
    ) & (Q(created_at__lt=now - grace) | Q(pk__in=woken_ids) | Q(started_at__isnull=False))
    # A retry, or a follow-up created to wait (``not_before``), once it is due.
    due = Q(
        status__in=[FollowUp.Status.PENDING, FollowUp.Status.RETRYING],
        published_at__isnull=True,
        next_attempt_at__lte=now,
    )
    return never_published | due


def _publish_owed(now, woken_ids: list[int]) -> tuple[int, int]:
    published = 0
    deadline = time.monotonic() + TICK_BUDGET_SECONDS
    while time.monotonic() < deadline:
        batch = FollowUp.objects.filter(_owed(now, woken_ids)).order_by("created_at")[:BATCH_SIZE]
        sent, failed = _publish(batch)
        published += sent
        if failed or sent < BATCH_SIZE:
            return published, failed
    return published, 0


def _publish(rows) -> tuple[int, int]:
    """Publish the rows over one connection, mark the ones handed over in one UPDATE."""
    rows = list(rows.only("pk", "kind", "label", "attempts"))
    handed_over: list[FollowUp] = []
    failed = 0
    try:
        with current_app.producer_or_acquire() as producer:
            for row in rows:
                try:
                    services.follow_up_send(row, producer=producer)
                except registry.UnknownKind as exc:
                    services.follow_up_bury_unrunnable(follow_up_ids=[row.pk], error=str(exc))
                    continue
                handed_over.append(row)
    except services.PUBLISH_ERRORS as exc:  # the broker is away; the next tick tries again
        logger.warning("relay could not publish: %s", exc)
        failed = 1
    services.follow_ups_mark_published(handed_over)
    return len(handed_over), failed


def _lag_seconds(now) -> float:
    """Age of the oldest row owed to the broker: what the relay is behind by."""
    oldest = FollowUp.objects.filter(
        Q(status=FollowUp.Status.PENDING, published_at__isnull=True, next_attempt_at__isnull=True)
        | Q(
            status__in=[FollowUp.Status.PENDING, FollowUp.Status.RETRYING],
            published_at__isnull=True,
            next_attempt_at__lte=now,
        )
    ).aggregate(created=Min("created_at"))["created"]
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


def relay_state_record(*, holder: str, report: RelayReport) -> None:
    measured = {} if report.lag_seconds is None else {"lag_seconds": report.lag_seconds}
    updated = RelayState.objects.filter(pk=1).update(
        holder=holder,
        ticked_at=clock.now(),
        published=F("published") + report.published,
        recovered=F("recovered") + report.recovered,
        republished=F("republished") + report.republished,
        failed=F("failed") + report.failed,
        **measured,
    )
    if not updated:
        RelayState.objects.get_or_create(pk=1)
        relay_state_record(holder=holder, report=report)


# --- The process ----------------------------------------------------------------------------------


class _Wakeups:
    """Waits between ticks: on PostgreSQL for a NOTIFY from the web (ids it could not publish) or
    the interval, whichever comes first; elsewhere just the interval."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.listener = None

    def listen(self) -> None:
        """Start listening (before the first tick, so no notification falls between the two)."""
        if connection.vendor != "postgresql" or self.listener is not None:
            return
        try:
            self.listener = connection.get_new_connection(connection.get_connection_params())
            self.listener.autocommit = True
            self.listener.execute(f"LISTEN {services.RELAY_CHANNEL}")
        except Exception:
            logger.warning("relay could not LISTEN; polling", exc_info=True)
            self.close()

    def wait(self, seconds: float) -> list[int]:
        if connection.vendor != "postgresql":
            self.stop.wait(seconds)
            return []
        self.listen()
        if self.listener is None:
            self.stop.wait(seconds)
            return []
        try:
            ids: list[int] = []
            # The first notification (or the interval) ends the wait; any others already here
            # come along.
            for notify in self.listener.notifies(timeout=seconds, stop_after=1):
                ids.extend(json.loads(notify.payload))
            if ids:
                for notify in self.listener.notifies(timeout=0):
                    ids.extend(json.loads(notify.payload))
            return ids
        except Exception:
            logger.warning("relay lost its LISTEN connection; polling", exc_info=True)
            self.close()
            self.stop.wait(seconds)
            return []

    def close(self) -> None:
        if self.listener is not None:
            try:
                self.listener.close()
            except Exception:
                logger.debug("listener already closed")
            self.listener = None


def relay_run(*, stop: threading.Event, holder: str | None = None) -> None:
    """Tick while holding the lease, until ``stop`` is set; stand by while another relay holds it."""
    holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    ttl = settings.FOLLOW_UP_RELAY_LEASE_SECONDS
    relay = Relay()
    wakeups = _Wakeups(stop)
    woken: list[int] = []
    holding: bool | None = None  # not yet known: the first answer is always logged
    logger.info("relay %s starting", holder)
    wakeups.listen()
    try:
        while not stop.is_set():
            try:
                held = lease_acquire(name=LEASE_NAME, holder=holder, ttl_seconds=ttl)
            except DatabaseError:
                logger.warning("relay could not reach the lease", exc_info=True)
                connection.close()
                held = False
            if held != holding:
                logger.info("relay %s %s", holder, "holds the lease" if held else "stands by")
                holding = held
            if not held:
                stop.wait(ttl / 3)
                continue
            try:
                report = relay.step(woken_ids=woken)
                relay_state_record(holder=holder, report=report)
                if report.published or report.recovered or report.republished:
                    logger.info("relay tick: %s", report)
            except DatabaseError:
                logger.warning("relay tick failed; the database is away", exc_info=True)
                connection.close()
            except Exception:  # a bug must not stop the relay: log it, tick again
                logger.exception("relay tick failed")
            woken = wakeups.wait(relay.seconds_to_full_tick())
    finally:
        wakeups.close()
        if holding is True:
            try:
                lease_release(name=LEASE_NAME, holder=holder)
            except DatabaseError:
                logger.warning("relay could not release the lease", exc_info=True)
        logger.info("relay %s stopped", holder)
