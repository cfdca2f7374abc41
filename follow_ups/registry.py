"""The kinds of follow-up, each declared once: what it is called, where it runs, what it does.

An app declares its effects in its ``ready()`` (``orders/follow_ups.py``, for instance) with
``register``; the engine looks a row's kind up here to publish it to the right queue, run its
effect, retry what is transient and stop after the attempt limit.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings


@dataclass(frozen=True)
class Kind:
    name: str  # stored on the row: "confirmation_email"
    label: str  # for people: "Confirmation email"
    queue: str  # "critical", "default" or "bulk" (settings.CELERY_TASK_QUEUES)
    # The effect. Takes the claimed row, returns what to record as its result; raises one of
    # ``transient`` to be retried later, anything else to become a dead letter at once.
    perform: Callable[..., dict]
    transient: tuple[type[BaseException], ...] = ()
    # The outside system it calls ("smtp", "warehouse"): its circuit breaker is shared by every
    # kind that names it. None: no breaker.
    provider: str | None = None
    # Transient failures that say nothing about the provider's health (an email held as unknown):
    # retried, but not counted by the breaker.
    breaker_ignores: tuple[type[BaseException], ...] = ()
    # How long transient failures are retried before the row is a dead letter. None: the setting
    # (FOLLOW_UP_RETRY_FOR_HOURS_BY_KIND for this kind, else FOLLOW_UP_RETRY_FOR_HOURS).
    retry_for: timedelta | None = None
    max_crashes: int | None = None  # None: settings.FOLLOW_UP_MAX_CRASHES

    @property
    def deadline(self) -> timedelta:
        """Transient failures are retried for this long, counted from the first one."""
        hours = settings.FOLLOW_UP_RETRY_FOR_HOURS_BY_KIND.get(self.name)
        if hours is not None:
            return timedelta(hours=hours)
        return self.retry_for or timedelta(hours=settings.FOLLOW_UP_RETRY_FOR_HOURS)

    @property
    def crash_limit(self) -> int:
        """Starts that never recorded an outcome before the row is buried as poison."""
        return self.max_crashes or settings.FOLLOW_UP_MAX_CRASHES


_kinds: dict[str, Kind] = {}


class UnknownKind(LookupError):
    pass


def register(kind: Kind) -> Kind:
    known = _kinds.get(kind.name)
    if known is not None and known != kind:
        raise ValueError(f"follow-up kind {kind.name!r} is declared twice")
    _kinds[kind.name] = kind
    return kind


def kind_get(name: str) -> Kind:
    try:
        return _kinds[name]
    except KeyError:
        raise UnknownKind(f"no follow-up kind {name!r} is declared") from None


def kinds() -> list[Kind]:
    return list(_kinds.values())
