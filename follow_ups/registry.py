"""The kinds of follow-up, each declared once: what it is called, where it runs, what it does.

An app declares its effects in its ``ready()`` (``orders/follow_ups.py``, for instance) with
``register``; the engine looks a row's kind up here to publish it to the right queue, run its
effect, retry what is transient and stop after the attempt limit.
"""

from collections.abc import Callable
from dataclasses import dataclass

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
    max_attempts: int | None = None  # None: settings.FOLLOW_UP_MAX_ATTEMPTS

    @property
    def attempt_limit(self) -> int:
        return self.max_attempts or settings.FOLLOW_UP_MAX_ATTEMPTS


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
