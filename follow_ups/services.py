"""The engine's writes: create follow-ups, publish them after commit, run them under a lease,
retry what is transient, bury what is not, replay dead letters.

Ownership of running work is a lease held by a live execution, not an assumption about when a broker
re-delivers (brokers re-deliver on a dropped connection too, while the first execution still runs):

- ``follow_up_claim`` is a compare-and-set on the row: it succeeds for a pending row, a retry that
  is due, or a running row whose lease has lapsed, and hands out a fresh fencing token;
- while the effect runs, ``LeaseKeeper`` renews the lease every third of its length;
- only the holder of the current token may record an outcome, so an execution that lost its lease
  (partitioned, frozen, presumed dead) can never overwrite a newer one's.

Transient failures are retried until the kind's deadline in time; a start that never records an
outcome is a crash, and the start after the kind's crash limit buries the row as poison. A kind's
provider sits behind a circuit breaker shared by every worker (``follow_ups.breakers``).
"""

import json
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Model, Q, QuerySet
from django.db.models.functions import Coalesce
from kombu.exceptions import KombuError

from follow_ups import breakers, registry
from follow_ups.models import FollowUp
from follow_ups.signals import follow_up_claim_decided
from scheduling import clock

logger = logging.getLogger(__name__)

RUN_TASK_NAME = "follow_ups.run"
# NOTIFY channel the relay listens on (PostgreSQL): ids the web could not hand to the broker.
RELAY_CHANNEL = "follow_up_relay"
# What a publish raises when the broker cannot take the message (kombu wraps connection errors).
PUBLISH_ERRORS = (KombuError, OSError)
# Transient for every kind: the time limit, and the database going away under the effect.
ALWAYS_TRANSIENT = (SoftTimeLimitExceeded, DatabaseError)
CLOCK_TOLERANCE_SECONDS = 2


@dataclass(frozen=True)
class NewFollowUp:
    key: str
    kind: str
    subject: str = ""
    label: str = ""
    payload: dict | None = None
    # A follow-up that may not start before this time (a charge to void unless its order commits):
    # it waits in the database, unpublished, and the relay hands it over once it is due.
    not_before: datetime | None = None


# --- Creating and publishing: the outbox side -----------------------------------------------------


def follow_ups_create(*, follow_ups: Iterable[NewFollowUp]) -> list[FollowUp]:
    """Write the rows (inside the caller's transaction) and publish each after commit.

    A key that exists already is skipped, so a job that selects the same due items twice creates
    each effect once. Returns the rows this call created.
    """
    wanted = list(follow_ups)
    for new in wanted:
        registry.kind_get(new.kind)  # an undeclared kind is a programming error: fail loudly
    existing = set(
        FollowUp.objects.filter(key__in=[new.key for new in wanted]).values_list("key", flat=True)
    )
    rows = [
        FollowUp(
            key=new.key,
            kind=new.kind,
            subject=new.subject,
            label=new.label,
            payload=new.payload or {},
            next_attempt_at=new.not_before,
        )
        for new in wanted
        if new.key not in existing
    ]
    created = FollowUp.objects.bulk_create(rows, ignore_conflicts=True)
    if not (connection.features.can_return_rows_from_bulk_insert and all(r.pk for r in created)):
        # SQLite with ignore_conflicts returns no ids: read back what this transaction wrote.
        created = list(
            FollowUp.objects.filter(key__in=[row.key for row in rows], published_at=None)
        )
    follow_ups_publish_after_commit([row for row in created if row.next_attempt_at is None])
    return created


def follow_ups_set_aside(*, keys: list[str], reason: str) -> int:
    """Settle follow-ups that are no longer needed before they started (a charge's void once its
    order committed): pending rows become succeeded with ``{"not_needed": reason}``, in the
    caller's transaction. A row that started already is left to finish; returns how many were set
    aside."""
    now = clock.now()
    return FollowUp.objects.filter(
        key__in=keys, status=FollowUp.Status.PENDING, started_at__isnull=True
    ).update(
        status=FollowUp.Status.SUCCEEDED,
        result={"not_needed": reason},
        next_attempt_at=None,
        finished_at=now,
        updated_at=now,
    )


def follow_ups_bring_forward(*, keys: list[str]) -> int:
    """Make waiting follow-ups due now and publish them after commit (a charge whose order just
    failed is voided at once, not when its safety delay ends). Returns how many."""
    now = clock.now()
    rows = list(
        FollowUp.objects.filter(
            key__in=keys, status=FollowUp.Status.PENDING, published_at__isnull=True
        )
    )
    FollowUp.objects.filter(pk__in=[row.pk for row in rows]).update(
        next_attempt_at=None, updated_at=now
    )
    follow_ups_publish_after_commit(rows)
    return len(rows)


@dataclass(frozen=True)
class DueReport:
    items: int  # due items this run took over (marked)
    follow_ups: int  # rows it created (fewer when a key existed already)
    chunks: int


def follow_ups_create_for_due(
    *,
    due: QuerySet,
    follow_ups_for: Callable[[Model], list[NewFollowUp]],
    mark: dict,
    chunk_size: int | None = None,
) -> DueReport:
    """Hand every due item of a scheduled job to the engine: its follow-ups are written, and the
    item marked, in one transaction per chunk of ``chunk_size`` items (``JOB_CHUNK_SIZE``).

    ``due`` selects the items not yet marked; ``mark`` (field values) must take an item out of it.
    A marked item is owned by its follow-ups: retries, dead letters and replay are theirs, so one
    bad item never holds up the next. A run that dies keeps the chunks it committed; the keys make
    a second run create nothing for an item already handed over.
    """
    chunk_size = chunk_size or settings.JOB_CHUNK_SIZE
    items = created = chunks = 0
    while True:
        with transaction.atomic():
            # Concurrent runs (a run by hand beside beat's) take different items, never wait.
            rows = list(
                due.select_for_update(skip_locked=True, of=("self",)).order_by("pk")[:chunk_size]
            )
            if not rows:
                break
            new = [follow_up for row in rows for follow_up in follow_ups_for(row)]
            created += len(follow_ups_create(follow_ups=new))
            marked = due.filter(pk__in=[row.pk for row in rows]).update(**mark)
        items += marked
        chunks += 1
        if len(rows) < chunk_size or not marked:
            break
    return DueReport(items=items, follow_ups=created, chunks=chunks)


# One immediate second try on a fresh connection: a pooled connection the broker closed (a restart,
# a network blip) fails once with "connection reset" while the broker is fine. A broker that is
# really away fails both at once (connection refused) and the relay repairs it later.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0}


def follow_up_send(follow_up: FollowUp, *, producer=None) -> None:
    """Publish the follow-up's message, without waiting for the broker: a failure is the relay's to
    repair.

    Flower shows the row id, kind and label of each task (``argsrepr``), not a bare number.
    """
    kind = registry.kind_get(follow_up.kind)
    current_app.send_task(
        RUN_TASK_NAME,
        args=[follow_up.pk],
        queue=kind.queue,
        retry=True,
        retry_policy=PUBLISH_RETRY_POLICY,
        producer=producer,
        argsrepr=f"[{follow_up.pk}] {follow_up.kind} {follow_up.label}".rstrip(),
    )


def follow_ups_mark_published(published: list[FollowUp]) -> None:
    """Mark the rows handed over, each only if no worker has claimed it since (its ``attempts``
    are still those it was published with): a worker that already failed it and scheduled a retry
    keeps that outcome, and the retry stays due for the relay. One UPDATE per distinct attempt
    count (usually one)."""
    by_attempts: dict[int, list[int]] = {}
    for row in published:
        by_attempts.setdefault(row.attempts, []).append(row.pk)
    if not by_attempts:
        return
    untouched = Q()
    for attempts, ids in by_attempts.items():
        untouched |= Q(attempts=attempts, pk__in=ids)
    now = clock.now()
    FollowUp.objects.filter(
        untouched,
        status__in=[FollowUp.Status.PENDING, FollowUp.Status.RETRYING],
        published_at__isnull=True,
    ).update(published_at=now, updated_at=now)


class PublishBreaker:
    """After a failed publish, this process stops trying for a few seconds.

    A commit whose publish fails still holds its rows (the relay publishes them), but each failed
    attempt can cost a connect timeout. With the breaker open, requests skip the attempt and stay
    as fast as with a healthy broker until the broker is back.
    """

    def __init__(self):
        self.closed_again_at = 0.0

    def is_open(self) -> bool:
        return time.monotonic() < self.closed_again_at

    def trip(self) -> None:
        self.closed_again_at = time.monotonic() + settings.FOLLOW_UP_PUBLISH_PAUSE_SECONDS


publish_breaker = PublishBreaker()


def follow_ups_publish_after_commit(follow_ups: Iterable[FollowUp]) -> None:
    """Publish each follow-up once the transaction commits, or leave it to the relay.

    One callback per follow-up, so one failed publish cannot stop the others, then one callback
    that marks those handed over in a single UPDATE and tells the relay about the rest.
    """
    follow_ups = list(follow_ups)
    if not follow_ups:
        return
    if settings.FOLLOW_UP_PUBLISH == "relay":
        # The web publishes nothing itself: the commit wakes the relay, which publishes them.
        ids = [follow_up.pk for follow_up in follow_ups]
        transaction.on_commit(lambda: relay_wake(follow_up_ids=ids), robust=True)
        return
    handed_over: list[FollowUp] = []
    left_over: list[int] = []
    for follow_up in follow_ups:
        transaction.on_commit(_publish_after_commit(follow_up, handed_over, left_over), robust=True)
    transaction.on_commit(lambda: _publish_settle(handed_over, left_over), robust=True)


def _publish_after_commit(follow_up: FollowUp, handed_over: list[FollowUp], left_over: list[int]):
    def publish_follow_up() -> None:
        if publish_breaker.is_open():
            left_over.append(follow_up.pk)
            return
        try:
            follow_up_send(follow_up)
        except PUBLISH_ERRORS as exc:
            publish_breaker.trip()
            left_over.append(follow_up.pk)
            logger.warning(
                "could not publish follow-up %s, left to the relay: %s", follow_up.pk, exc
            )
        else:
            handed_over.append(follow_up)

    return publish_follow_up


def _publish_settle(handed_over: list[FollowUp], left_over: list[int]) -> None:
    follow_ups_mark_published(handed_over)
    if left_over:
        relay_wake(follow_up_ids=left_over)


def relay_wake(*, follow_up_ids: list[int]) -> None:
    """Tell the relay (PostgreSQL LISTEN/NOTIFY) to publish these now instead of after its grace.

    On other databases the relay polls; this is a no-op there.
    """
    if connection.vendor != "postgresql":
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [RELAY_CHANNEL, json.dumps(follow_up_ids)])
    except DatabaseError:  # the relay's grace period covers them anyway
        logger.warning("could not wake the relay", exc_info=True)


# --- Running a follow-up: the worker side ---------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    follow_up: FollowUp  # as claimed: attempts, started_at and lease_token are the new ones
    kind: registry.Kind


def follow_up_claim(*, follow_up_id: int) -> Claim | None:
    """Take the follow-up for one execution, or ``None`` if it is not ours to run now.

    Claimable: pending or retrying, and due (``next_attempt_at`` unset, or at most
    ``CLOCK_TOLERANCE_SECONDS`` ahead); running with a lapsed lease (its execution is gone). A row
    held under a live lease is not: a re-delivered copy of a message whose execution is alive does
    nothing. Of two racing claims one wins.

    Taking over a lapsed lease counts a crash; the start after the kind's crash limit buries the
    row instead. The usual case, a claimable row of a declared kind under its crash limit, is one
    ``UPDATE … RETURNING`` that decides and takes it at once. Everything else (a copy of a
    message whose row is taken, a crash limit spent, an undeclared kind, a database without
    RETURNING) reads the row and decides with a compare-and-set on what was read.
    """
    now = clock.now()
    token = secrets.token_hex(16)
    claim, follow_up = None, None
    if connection.features.can_return_columns_from_insert:  # PostgreSQL, SQLite >= 3.35
        follow_up = _follow_up_take(follow_up_id=follow_up_id, now=now, token=token)
        if follow_up is not None:
            claim = Claim(follow_up=follow_up, kind=registry.kind_get(follow_up.kind))
    if claim is None:
        claim, follow_up = _follow_up_claim_as_read(follow_up_id=follow_up_id, now=now, token=token)
    # The job log names the follow-up from this row, so it never reads the row itself.
    follow_up_claim_decided.send(
        sender=FollowUp, follow_up_id=follow_up_id, follow_up=follow_up, claimed=claim is not None
    )
    return claim


def _claim_fields(now, token: str, *, crashed: bool) -> dict:
    return {
        "status": FollowUp.Status.RUNNING,
        "attempts": F("attempts") + 1,
        "crashes": F("crashes") + int(crashed),
        "started_at": now,
        "finished_at": None,
        "next_attempt_at": None,
        "lease_token": token,
        "lease_expires_at": now + timedelta(seconds=settings.FOLLOW_UP_LEASE_SECONDS),
        "updated_at": now,
    }


def _follow_up_take(*, follow_up_id: int, now, token: str) -> FollowUp | None:
    """The claim as one statement: ``UPDATE … WHERE <claimable, declared, under its limit>
    RETURNING *``. ``None`` when the row is not claimable that way; the caller then reads it.

    Django has no queryset API for RETURNING on an UPDATE, and building the condition with the
    ORM for every claim cost more CPU than the query it saved (bench.micro claim): the statement
    is written here, with the same conditions as ``_claimable`` and the crash limit per kind.
    """
    kinds = registry.kinds()
    if not kinds:
        return None
    ops, quote = connection.ops, connection.ops.quote_name
    fields = FollowUp._meta.concrete_fields
    column = {field.name: quote(field.column) for field in fields}
    moment = ops.adapt_datetimefield_value
    limits = " ".join("WHEN %s THEN %s" for _ in kinds)
    # Taking over a running row (its lease lapsed) counts the crash of its last execution.
    crashed = f"(CASE WHEN {column['status']} = %s THEN 1 ELSE 0 END)"
    # Identifiers come from the model and are quoted; every value is a parameter.
    statement = (
        f"UPDATE {quote(FollowUp._meta.db_table)} SET {column['status']} = %s, "  # noqa: S608
        f"{column['attempts']} = {column['attempts']} + 1, "
        f"{column['crashes']} = {column['crashes']} + {crashed}, {column['started_at']} = %s, "
        f"{column['finished_at']} = NULL, {column['next_attempt_at']} = NULL, "
        f"{column['lease_token']} = %s, {column['lease_expires_at']} = %s, "
        f"{column['updated_at']} = %s "
        f"WHERE {column['id']} = %s AND ("
        f"({column['status']} IN (%s, %s) AND ({column['next_attempt_at']} IS NULL "
        f"OR {column['next_attempt_at']} <= %s)) OR ({column['status']} = %s AND "
        f"({column['lease_expires_at']} IS NULL OR {column['lease_expires_at']} < %s))) "
        f"AND {column['crashes']} + {crashed} < CASE {column['kind']} {limits} ELSE 0 END "
        f"RETURNING {', '.join(column[field.name] for field in fields)}"
    )
    params = [
        FollowUp.Status.RUNNING.value,
        FollowUp.Status.RUNNING.value,
        moment(now),
        token,
        moment(now + timedelta(seconds=settings.FOLLOW_UP_LEASE_SECONDS)),
        moment(now),
        follow_up_id,
        FollowUp.Status.PENDING.value,
        FollowUp.Status.RETRYING.value,
        moment(now + timedelta(seconds=CLOCK_TOLERANCE_SECONDS)),
        FollowUp.Status.RUNNING.value,
        moment(now),
        FollowUp.Status.RUNNING.value,
    ]
    for kind in kinds:
        params += [kind.name, kind.crash_limit]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = [
        _from_db(field, value) if value is not None else None
        for field, value in zip(fields, row, strict=True)
    ]
    return FollowUp.from_db(connection.alias, [field.attname for field in fields], values)


def _from_db(field, value):
    """A column's value as the ORM would load it (SQLite's datetimes, JSON)."""
    expression = field.get_col(FollowUp._meta.db_table)
    for convert in connection.ops.get_db_converters(expression) + field.get_db_converters(
        connection
    ):
        value = convert(value, expression, connection)
    return value


def _follow_up_claim_as_read(
    *, follow_up_id: int, now, token: str
) -> tuple[Claim | None, FollowUp | None]:
    """The claim as a read, then a compare-and-set on what was read; returns it and the row read."""
    follow_up = FollowUp.objects.filter(pk=follow_up_id).first()
    if follow_up is None or not _claimable(follow_up, now):
        return None, follow_up
    try:
        kind = registry.kind_get(follow_up.kind)
    except registry.UnknownKind as exc:  # written by a newer release, or a kind since removed
        follow_up_bury_unrunnable(follow_up_ids=[follow_up.pk], error=str(exc))
        return None, follow_up
    same_as_read = FollowUp.objects.filter(
        pk=follow_up.pk,
        status=follow_up.status,
        attempts=follow_up.attempts,
        lease_token=follow_up.lease_token,
    )
    crashed = follow_up.status == FollowUp.Status.RUNNING  # its last execution never finished
    crashes = follow_up.crashes + int(crashed)
    if crashes >= kind.crash_limit:
        # A poison follow-up: its executions keep dying (out of memory, a hard time limit, a
        # worker killed every time). Bury it rather than kill the next worker.
        buried = same_as_read.update(
            status=FollowUp.Status.DEAD,
            crashes=crashes,
            finished_at=now,
            updated_at=now,
            lease_token="",
            lease_expires_at=None,
            last_error=f"gave up after {crashes} attempts that did not finish"
            + (f" ({follow_up.last_error[:500]})" if follow_up.last_error else ""),
        )
        if buried:
            logger.error("follow-up %s (%s) is dead: crash limit spent", follow_up.pk, kind.name)
        return None, follow_up
    fields = _claim_fields(now, token, crashed=crashed)
    if not same_as_read.update(**fields):
        return None, follow_up
    for name, value in fields.items():
        setattr(follow_up, name, value)
    follow_up.attempts += 1
    follow_up.crashes = crashes
    return Claim(follow_up=follow_up, kind=kind), follow_up


def _claimable(follow_up: FollowUp, now) -> bool:
    if follow_up.status in (FollowUp.Status.PENDING, FollowUp.Status.RETRYING):
        # A little early is fine: the database's clock, sampled by two processes, may differ by
        # the samples' round trips.
        due = follow_up.next_attempt_at
        return due is None or due <= now + timedelta(seconds=CLOCK_TOLERANCE_SECONDS)
    if follow_up.status == FollowUp.Status.RUNNING:
        return follow_up.lease_expires_at is None or follow_up.lease_expires_at < now
    return False


class LeaseKeeper:
    """Renews an execution's lease in a thread while the effect runs; stops when it is done.

    The thread opens its own database connection on its first renewal (every third of the lease,
    so a short effect never opens one) and closes it at the end. A renewal that finds the token
    gone means the row was taken over: ``lost`` is set and renewing stops.
    """

    def __init__(self, follow_up: FollowUp):
        self.follow_up_id = follow_up.pk
        self.token = follow_up.lease_token
        self.lost = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="lease-keeper", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()

    def _renew(self) -> None:
        lease = settings.FOLLOW_UP_LEASE_SECONDS
        try:
            while not self._done.wait(lease / 3):
                try:
                    renewed = FollowUp.objects.filter(
                        pk=self.follow_up_id, status=FollowUp.Status.RUNNING, lease_token=self.token
                    ).update(lease_expires_at=clock.now() + timedelta(seconds=lease))
                except DatabaseError:  # try again next time; the lease is three renewals long
                    logger.warning("could not renew the lease of follow-up %s", self.follow_up_id)
                    connection.close()
                    continue
                if not renewed:
                    self.lost = True
                    logger.warning("follow-up %s was taken over; lease lost", self.follow_up_id)
                    return
        finally:
            connection.close()


class AttemptFailed(Exception):
    """An attempt failed: the row is a dead letter (``dead``), or will run again, after
    ``retry_in`` seconds or when its provider's breaker closes (``retry_in`` is ``None``). The
    task turns it into Celery's FAILURE or RETRY state for Flower."""

    def __init__(self, message: str, *, dead: bool = False, retry_in: float | None = None):
        super().__init__(message)
        self.dead = dead
        self.retry_in = retry_in


class LeaseLost(Exception):
    """The effect ran, but another execution took the row over meanwhile: this run's outcome was
    not recorded (the row's is the other execution's), so Celery must not call it a success."""


def follow_up_run(*, follow_up_id: int) -> dict:
    """Claim the follow-up, run its effect under a lease, record the outcome on the row.

    Retries live in the database (``next_attempt_at``) and the relay publishes each once it is due,
    never as a broker countdown. Returns the result; ``{"skipped": True}`` when the row was not
    ours to run (done, dead, or held by a live execution). Raises ``AttemptFailed`` when the attempt
    failed, or when its provider's breaker is open and it waits, spending no attempt.
    """
    claim = follow_up_claim(follow_up_id=follow_up_id)
    if claim is None:
        return {"skipped": True}
    follow_up, kind = claim.follow_up, claim.kind
    admission = breakers.Admission.RUN
    if kind.provider:
        admission = breakers.breaker_admit(provider=kind.provider, follow_up_id=follow_up.pk)
        if admission is breakers.Admission.WAIT and follow_up_wait(
            follow_up=follow_up, provider=kind.provider, attempt_spent=False
        ):
            raise AttemptFailed(f"waiting for {kind.provider}: its breaker is open")
    try:
        with LeaseKeeper(follow_up):
            result = kind.perform(follow_up)
    except kind.transient + ALWAYS_TRANSIENT as exc:
        _follow_up_failed_transiently(follow_up, kind, admission, exc)
    except Exception as exc:
        if kind.provider:  # the provider answered, with a refusal: it is up
            breakers.breaker_record_success(provider=kind.provider, admission=admission)
        error = f"{type(exc).__name__}: {exc}"
        follow_up_bury(follow_up=follow_up, error=error)
        raise AttemptFailed(f"dead: {error}", dead=True) from exc
    if kind.provider:
        breakers.breaker_record_success(provider=kind.provider, admission=admission)
    if not follow_up_succeed(follow_up=follow_up, result=result):
        raise LeaseLost(
            f"follow-up {follow_up.pk} was taken over while this run held it; "
            "its outcome is the other execution's"
        )
    return result


def _follow_up_failed_transiently(follow_up, kind, admission, exc) -> None:
    """Bury it past its deadline, park it while its provider's breaker is open, else schedule
    the retry; always raises ``AttemptFailed``."""
    error = f"{type(exc).__name__}: {exc}"
    now = clock.now()
    crashed = isinstance(exc, SoftTimeLimitExceeded)
    since = follow_up.retrying_since or now
    if now - since >= kind.deadline:
        follow_up_bury(
            follow_up=follow_up, error=f"gave up after {_hours(kind.deadline)} of failures: {error}"
        )
        raise AttemptFailed(f"dead, its deadline passed: {error}", dead=True) from exc
    if crashed and follow_up.crashes + 1 >= kind.crash_limit:
        follow_up_bury(
            follow_up=follow_up, error=f"gave up after {kind.crash_limit} crashes: {error}"
        )
        raise AttemptFailed(f"dead after {kind.crash_limit} crashes: {error}", dead=True) from exc
    about_provider = (
        kind.provider
        and isinstance(exc, kind.transient)
        and not isinstance(exc, kind.breaker_ignores)
    )
    breaker_open = about_provider and breakers.breaker_record_failure(
        provider=kind.provider, admission=admission, error=error
    )
    if breaker_open and follow_up_wait(
        follow_up=follow_up, provider=kind.provider, attempt_spent=True, error=error
    ):
        raise AttemptFailed(f"waiting for {kind.provider}: {error}") from exc
    delay = retry_delay_seconds(
        attempt=follow_up.attempts, retry_after=getattr(exc, "retry_after", None)
    )
    follow_up_retry_later(follow_up=follow_up, error=error, delay_seconds=delay, crashed=crashed)
    raise AttemptFailed(f"retrying in {delay:.1f} s: {error}", retry_in=delay) from exc


def _hours(duration: timedelta) -> str:
    return f"{duration.total_seconds() / 3600:g} h"


def follow_up_succeed(*, follow_up: FollowUp, result: dict) -> bool:
    return _follow_up_finish(
        follow_up,
        status=FollowUp.Status.SUCCEEDED,
        result=result,
        last_error="",
        retrying_since=None,
        finished_at=clock.now(),
    )


def follow_up_retry_later(
    *, follow_up: FollowUp, error: str, delay_seconds: float, crashed: bool = False
) -> bool:
    now = clock.now()
    return _follow_up_finish(
        follow_up,
        status=FollowUp.Status.RETRYING,
        last_error=error[:2000],
        crashes=F("crashes") + int(crashed),
        retrying_since=Coalesce(F("retrying_since"), now),
        next_attempt_at=now + timedelta(seconds=delay_seconds),
        published_at=None,  # the relay publishes it once, when it is due
    )


def follow_up_wait(
    *, follow_up: FollowUp, provider: str, attempt_spent: bool, error: str = ""
) -> bool:
    """Park the follow-up until its provider's breaker closes: no message, no attempt spent
    (a start that did not call the provider is not counted). Only while the breaker is still not
    closed at that moment; ``False`` otherwise (the caller runs or retries it instead)."""
    fields = {"last_error": error[:2000]} if error else {}
    if not attempt_spent:
        fields["attempts"] = F("attempts") - 1
    now = clock.now()
    return bool(
        FollowUp.objects.filter(
            breakers.breaker_not_closed(provider),
            pk=follow_up.pk,
            status=FollowUp.Status.RUNNING,
            lease_token=follow_up.lease_token,
        ).update(
            status=FollowUp.Status.WAITING,
            lease_token="",
            lease_expires_at=None,
            next_attempt_at=None,
            published_at=None,
            retrying_since=Coalesce(F("retrying_since"), now),
            updated_at=now,
            **fields,
        )
    )


def follow_up_bury(*, follow_up: FollowUp, error: str) -> bool:
    """Park the follow-up as a dead letter: visible in the admin, on /ops/ and replayable."""
    finished = _follow_up_finish(
        follow_up, status=FollowUp.Status.DEAD, last_error=error[:2000], finished_at=clock.now()
    )
    if finished:
        logger.error("follow-up %s (%s) is dead: %s", follow_up.pk, follow_up.kind, error)
    return finished


def follow_up_bury_unrunnable(*, follow_up_ids: list[int], error: str) -> int:
    """Rows no code here can run (their kind is not declared): dead letters, replayable once a
    release that declares the kind is running."""
    now = clock.now()
    buried = FollowUp.objects.filter(
        pk__in=follow_up_ids,
        status__in=[FollowUp.Status.PENDING, FollowUp.Status.RETRYING, FollowUp.Status.WAITING],
    ).update(status=FollowUp.Status.DEAD, finished_at=now, updated_at=now, last_error=error[:2000])
    if buried:
        logger.error("%s follow-up(s) are dead: %s", buried, error)
    return buried


def _follow_up_finish(follow_up: FollowUp, **fields) -> bool:
    """Record the outcome, only while this execution's token is the current one (fencing)."""
    finished = FollowUp.objects.filter(
        pk=follow_up.pk, status=FollowUp.Status.RUNNING, lease_token=follow_up.lease_token
    ).update(lease_token="", lease_expires_at=None, updated_at=clock.now(), **fields)
    if not finished:
        logger.warning(
            "follow-up %s: outcome %s dropped, this execution no longer holds it",
            follow_up.pk,
            fields.get("status"),
        )
    return bool(finished)


def retry_delay_seconds(*, attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, capped; never sooner than the provider asked."""
    ceiling = min(
        settings.FOLLOW_UP_RETRY_CAP_SECONDS,
        settings.FOLLOW_UP_RETRY_BASE_SECONDS * 2 ** min(attempt, 32),
    )
    delay = random.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.FOLLOW_UP_RETRY_AFTER_MAX_SECONDS))
    return delay


def follow_up_replay(*, follow_up_ids: list[int]) -> int:
    """Give dead letters another run: reset them to pending (a fresh deadline and crash count)
    and publish each once, after commit.

    Only dead rows are reset, so replaying the same selection twice, or racing another operator,
    publishes each follow-up once.
    """
    with transaction.atomic():
        dead = list(
            FollowUp.objects.select_for_update().filter(
                pk__in=follow_up_ids, status=FollowUp.Status.DEAD
            )
        )
        FollowUp.objects.filter(pk__in=[row.pk for row in dead]).update(
            status=FollowUp.Status.PENDING,
            attempts=0,
            crashes=0,
            retrying_since=None,
            published_at=None,
            next_attempt_at=None,
            finished_at=None,
            lease_token="",
            lease_expires_at=None,
            updated_at=clock.now(),
        )
        follow_ups_publish_after_commit(dead)
    return len(dead)
