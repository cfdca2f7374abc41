"""Kinds of follow-up that exist only in these tests, on queues of their own, so a relay under test
counts exactly the messages it is responsible for."""

import uuid

import pytest
from celery import current_app

from follow_ups import registry
from follow_ups.models import FollowUp
from follow_ups.services import NewFollowUp, follow_ups_create


class Flaky(Exception):
    """What the test effects raise to ask for a retry."""


class Held(Flaky):
    """A retry that says nothing about the provider (as an email held as unknown)."""


EFFECTS: dict[str, list] = {}  # row key -> outcomes to play, in order ("ok", Flaky, ValueError)


def _perform(follow_up: FollowUp) -> dict:
    CALLS.append(follow_up.key)
    script = EFFECTS.get(follow_up.key) or ["ok"]
    outcome = script.pop(0) if len(script) > 1 else script[0]
    if outcome == "ok":
        return {"done": follow_up.key}
    raise outcome(f"scripted failure of {follow_up.key}")


TEST_QUEUE = f"follow-ups-test-{uuid.uuid4().hex[:8]}"
TEST_KIND = registry.register(
    registry.Kind(
        name="test_effect",
        label="Test effect",
        queue=TEST_QUEUE,
        perform=_perform,
        transient=(Flaky,),
    )
)

# The same effect behind a provider's circuit breaker.
PROVIDER = "test-provider"
PROVIDER_KIND = registry.register(
    registry.Kind(
        name="test_provider_effect",
        label="Test effect behind a breaker",
        queue=TEST_QUEUE,
        perform=_perform,
        transient=(Flaky,),
        provider=PROVIDER,
        breaker_ignores=(Held,),
    )
)
CALLS: list[str] = []  # keys whose effect ran, in order


@pytest.fixture
def make_follow_up(db):
    def make(*script, key=None, kind=TEST_KIND) -> FollowUp:
        key = key or f"test:{uuid.uuid4().hex}"
        EFFECTS[key] = list(script) or ["ok"]
        (row,) = follow_ups_create(follow_ups=[NewFollowUp(key=key, kind=kind.name, label=key)])
        return FollowUp.objects.get(pk=row.pk)

    return make


@pytest.fixture
def test_queue():
    """The test kind's queue on the real broker, emptied before and after the test."""
    with current_app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_declare(queue=TEST_QUEUE, durable=True, auto_delete=False)
        channel.queue_purge(TEST_QUEUE)
    yield TEST_QUEUE
    with current_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(TEST_QUEUE)
