"""Circuit breakers in front of providers, shared by every worker and host through the database.

A provider that is down should cost one probe at a time, not every follow-up's attempts: after
``FOLLOW_UP_BREAKER_THRESHOLD`` consecutive transient failures the breaker opens, the provider's
follow-ups wait (``FollowUp.Status.WAITING``, no attempt spent), and every
``FOLLOW_UP_BREAKER_OPEN_SECONDS`` one of them is the probe. The probe's success closes it and the
relay releases the waiting ones at a bounded rate (``breakers_tend``). docs/reliability.md has the
states and the tests that attack them.
"""

import enum
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Case, Exists, F, Q, Value, When

from follow_ups import registry
from follow_ups.models import Breaker, FollowUp
from scheduling import clock

logger = logging.getLogger(__name__)

State = Breaker.State
# A probe that has not reported after this long is presumed lost; another may start.
PROBE_SECONDS = 60.0


class Admission(enum.Enum):
    RUN = "run"  # closed: run as usual
    PROBE = "probe"  # this execution tests the provider for everyone
    WAIT = "wait"  # open, or another probe is out: wait without calling the provider


@dataclass(frozen=True)
class BreakerView:
    state: str
    failures: int


_seen: dict[str, tuple[BreakerView, float]] = {}


def breaker_view(*, provider: str, fresh: bool = False) -> BreakerView:
    """What this process knows of the breaker, read again after ``FOLLOW_UP_BREAKER_CACHE_SECONDS``.

    A closed breaker is trusted for that long; anything else is read fresh by ``breaker_admit``.
    """
    seen = _seen.get(provider)
    if not fresh and seen and time.monotonic() - seen[1] < settings.FOLLOW_UP_BREAKER_CACHE_SECONDS:
        return seen[0]
    row = Breaker.objects.filter(provider=provider).values("state", "failures").first()
    if row is None:
        Breaker.objects.get_or_create(provider=provider)
        row = {"state": State.CLOSED, "failures": 0}
    view = BreakerView(state=row["state"], failures=row["failures"])
    _seen[provider] = (view, time.monotonic())
    return view


def breaker_admit(*, provider: str, follow_up_id: int) -> Admission:
    """May this follow-up call its provider now? Costs nothing while the breaker is closed."""
    if breaker_view(provider=provider).state == State.CLOSED:
        return Admission.RUN
    if breaker_view(provider=provider, fresh=True).state == State.CLOSED:
        return Admission.RUN
    taken = _probe_slot_take(provider=provider, follow_up_id=follow_up_id, now=clock.now())
    if taken:
        logger.info("breaker %s: follow-up %s probes the provider", provider, follow_up_id)
        return Admission.PROBE
    return Admission.WAIT


def _probe_slot_take(*, provider: str, follow_up_id: int, now) -> bool:
    """Name ``follow_up_id`` the probe of an open or half-open breaker whose probe is due, if the
    slot is free (none named, the named one lapsed, or it is this follow-up already)."""
    return bool(
        Breaker.objects.filter(provider=provider, probe_at__lte=now)
        .exclude(state=State.CLOSED)
        .filter(
            Q(probe_follow_up_id__isnull=True)
            | Q(probe_follow_up_id=follow_up_id)
            | Q(probe_expires_at__lt=now)
        )
        .update(
            state=State.HALF_OPEN,
            probe_follow_up_id=follow_up_id,
            probe_expires_at=now + timedelta(seconds=PROBE_SECONDS),
            changed_at=now,
        )
    )


def breaker_record_success(*, provider: str, admission: Admission) -> None:
    """The provider answered (a success, or a permanent refusal: it is up)."""
    if admission is Admission.PROBE:
        now = clock.now()
        closed = (
            Breaker.objects.filter(provider=provider)
            .exclude(state=State.CLOSED)
            .update(
                state=State.CLOSED,
                failures=0,
                opened_at=None,
                probe_at=None,
                probe_follow_up_id=None,
                probe_expires_at=None,
                changed_at=now,
            )
        )
        _seen.pop(provider, None)
        if closed:
            logger.info("breaker %s closed: the probe succeeded", provider)
    elif breaker_view(provider=provider).failures:
        Breaker.objects.filter(provider=provider, state=State.CLOSED, failures__gt=0).update(
            failures=0
        )
        _seen.pop(provider, None)


def breaker_record_failure(*, provider: str, admission: Admission, error: str) -> bool:
    """Count a transient failure of the provider; ``True`` when the breaker is (now) not closed."""
    now = clock.now()
    probe_at = now + timedelta(seconds=settings.FOLLOW_UP_BREAKER_OPEN_SECONDS)
    _seen.pop(provider, None)
    if admission is Admission.PROBE:
        Breaker.objects.filter(provider=provider).update(
            state=State.OPEN,
            probe_at=probe_at,
            probe_follow_up_id=None,
            probe_expires_at=None,
            last_error=error[:2000],
            changed_at=now,
        )
        logger.warning("breaker %s stays open: the probe failed (%s)", provider, error)
        return True
    opens = Q(failures__gte=settings.FOLLOW_UP_BREAKER_THRESHOLD - 1)
    Breaker.objects.filter(provider=provider, state=State.CLOSED).update(
        failures=F("failures") + 1,
        state=Case(When(opens, then=Value(State.OPEN)), default=F("state")),
        opened_at=Case(When(opens, then=Value(now)), default=F("opened_at")),
        probe_at=Case(When(opens, then=Value(probe_at)), default=F("probe_at")),
        changed_at=Case(When(opens, then=Value(now)), default=F("changed_at")),
        last_error=error[:2000],
    )
    view = breaker_view(provider=provider, fresh=True)
    if view.state != State.CLOSED and view.failures == settings.FOLLOW_UP_BREAKER_THRESHOLD:
        logger.warning("breaker %s opened after %s failures: %s", provider, view.failures, error)
    return view.state != State.CLOSED


def breaker_not_closed(provider: str) -> Exists:
    """A condition for an UPDATE: the provider's breaker is open or half-open at that moment."""
    return Exists(Breaker.objects.filter(provider=provider).exclude(state=State.CLOSED))


def provider_kinds(provider: str) -> list[str]:
    return [kind.name for kind in registry.kinds() if kind.provider == provider]


# --- The relay's part -----------------------------------------------------------------------------


@dataclass
class TendReport:
    released: int = 0  # waiting follow-ups handed back once their provider answered
    probes: int = 0  # waiting follow-ups woken to probe an open breaker
    buried: int = 0  # waiting follow-ups past their deadline


def breakers_tend(*, now, elapsed_seconds: float) -> TendReport:
    """One relay tick's care of the breakers: release the waiting follow-ups of closed breakers
    (at most ``FOLLOW_UP_BREAKER_RELEASE_PER_SECOND`` × the seconds since the last tick), wake one
    waiting follow-up as the probe of an open breaker whose probe is due, and bury those waiting
    past their kind's deadline."""
    report = TendReport()
    if not FollowUp.objects.filter(status=FollowUp.Status.WAITING).exists():
        return report
    states = dict(Breaker.objects.values_list("provider", "state"))
    providers = {kind.provider for kind in registry.kinds() if kind.provider}
    kinds_by_deadline: dict[timedelta, list[str]] = {}
    for kind in registry.kinds():
        kinds_by_deadline.setdefault(kind.deadline, []).append(kind.name)
    for deadline, kinds in kinds_by_deadline.items():  # usually one: every kind's default
        report.buried += FollowUp.objects.filter(
            status=FollowUp.Status.WAITING, kind__in=kinds, retrying_since__lt=now - deadline
        ).update(
            status=FollowUp.Status.DEAD,
            finished_at=now,
            updated_at=now,
            last_error=Value(
                f"gave up after {deadline.total_seconds() / 3600:g} h: its provider did not answer"
            ),
        )
    budget = max(1, int(settings.FOLLOW_UP_BREAKER_RELEASE_PER_SECOND * max(elapsed_seconds, 1.0)))
    for provider in providers:
        waiting = FollowUp.objects.filter(
            status=FollowUp.Status.WAITING, kind__in=provider_kinds(provider)
        ).order_by("created_at")
        if states.get(provider, State.CLOSED) == State.CLOSED:
            ids = list(waiting.values_list("pk", flat=True)[:budget])
            report.released += _release(ids, now)
            continue
        candidate = waiting.values_list("pk", flat=True).first()
        if candidate is not None and _probe_slot_take(
            provider=provider, follow_up_id=candidate, now=now
        ):
            report.probes += _release([candidate], now)
    return report


def _release(ids: list[int], now) -> int:
    """Waiting rows become retries due now; the relay publishes them in this same tick."""
    if not ids:
        return 0
    return FollowUp.objects.filter(pk__in=ids, status=FollowUp.Status.WAITING).update(
        status=FollowUp.Status.RETRYING,
        next_attempt_at=now,
        published_at=None,
        updated_at=now,
    )
