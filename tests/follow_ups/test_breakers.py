"""A provider's circuit breaker, shared through the database: it opens after consecutive transient
failures, its follow-ups then wait without spending attempts, one probe at a time tests the
provider, and its success releases the waiting ones at a bounded rate."""

from datetime import timedelta

import pytest
from django.utils import timezone

from follow_ups import breakers, services
from follow_ups.models import Breaker, FollowUp
from follow_ups.relay import Relay
from follow_ups.selectors import breakers_overview
from tests.follow_ups.conftest import CALLS, PROVIDER, PROVIDER_KIND, Flaky, Held

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_breakers():
    breakers._seen.clear()  # as a new process: what it knows of breakers comes from the database
    CALLS.clear()
    yield
    breakers._seen.clear()


@pytest.fixture
def behind_breaker(make_follow_up):
    def make(*script):
        return make_follow_up(*script, kind=PROVIDER_KIND)

    return make


def run(row) -> dict | None:
    """Run the row's message once, as a worker would; ``None`` when the attempt failed."""
    FollowUp.objects.filter(pk=row.pk, status="retrying").update(next_attempt_at=timezone.now())
    try:
        return services.follow_up_run(follow_up_id=row.pk)
    except services.AttemptFailed:
        return None


def breaker() -> Breaker:
    return Breaker.objects.get(provider=PROVIDER)


def trip(behind_breaker, settings) -> list[FollowUp]:
    """The provider fails as many times in a row as it takes to open the breaker."""
    rows = [behind_breaker(Flaky) for _ in range(settings.FOLLOW_UP_BREAKER_THRESHOLD)]
    for row in rows:
        run(row)
    return rows


def probe_due() -> None:
    Breaker.objects.filter(provider=PROVIDER).update(probe_at=timezone.now() - timedelta(seconds=1))


def test_consecutive_transient_failures_open_the_breaker_and_the_last_one_waits(
    behind_breaker, settings
):
    assert settings.FOLLOW_UP_BREAKER_THRESHOLD == 5  # the production default
    rows = trip(behind_breaker, settings)

    state = breaker()
    assert (state.state, state.failures) == ("open", 5)
    assert state.probe_at - state.opened_at == timedelta(seconds=30)
    statuses = [FollowUp.objects.get(pk=row.pk).status for row in rows]
    assert statuses == ["retrying"] * 4 + ["waiting"]


def test_a_success_between_failures_starts_the_count_again(behind_breaker, settings):
    for _ in range(settings.FOLLOW_UP_BREAKER_THRESHOLD - 1):
        run(behind_breaker(Flaky))
    assert breaker().failures == 4
    breakers._seen.clear()
    run(behind_breaker("ok"))
    assert (breaker().state, breaker().failures) == ("closed", 0)
    run(behind_breaker(Flaky))
    assert (breaker().state, breaker().failures) == ("closed", 1)


def test_while_open_a_follow_up_waits_without_calling_the_provider_or_spending_an_attempt(
    behind_breaker, settings
):
    trip(behind_breaker, settings)
    CALLS.clear()
    row = behind_breaker("ok")

    with pytest.raises(services.AttemptFailed, match="waiting for test-provider"):
        services.follow_up_run(follow_up_id=row.pk)

    row.refresh_from_db()
    assert (row.status, row.attempts, row.published_at, row.lease_token) == ("waiting", 0, None, "")
    assert row.retrying_since is not None  # its deadline runs while it waits
    assert CALLS == []


def test_a_follow_up_of_another_provider_is_not_held_up(behind_breaker, make_follow_up, settings):
    trip(behind_breaker, settings)
    other = make_follow_up("ok")  # no provider
    assert services.follow_up_run(follow_up_id=other.pk) == {"done": other.key}


def test_a_failure_that_says_nothing_about_the_provider_is_not_counted(behind_breaker, settings):
    for _ in range(settings.FOLLOW_UP_BREAKER_THRESHOLD + 2):
        run(behind_breaker(Held))
    assert (breaker().state, breaker().failures) == ("closed", 0)


def test_the_relay_wakes_one_waiting_follow_up_as_the_probe_once_it_is_due(
    behind_breaker, settings, test_queue
):
    trip(behind_breaker, settings)
    waiting = [behind_breaker("ok") for _ in range(3)]
    for row in waiting:
        run(row)
    relay = Relay()

    relay.tick()  # the probe is not due yet: nothing moves
    assert FollowUp.objects.filter(status="waiting").count() == 4

    probe_due()
    relay.tick()
    state = breaker()
    assert state.state == "half_open"
    probe = FollowUp.objects.get(pk=state.probe_follow_up_id)
    assert (probe.status, probe.published_at is not None) == ("retrying", True)
    assert FollowUp.objects.filter(status="waiting").count() == 3

    relay.tick()  # one probe at a time
    assert FollowUp.objects.filter(status="waiting").count() == 3


def test_a_failed_probe_opens_the_breaker_again_and_the_probe_waits_with_the_rest(
    behind_breaker, settings
):
    trip(behind_breaker, settings)
    probe_due()
    row = behind_breaker(Flaky)

    assert run(row) is None  # it took the due probe slot, called the provider, and failed

    state = breaker()
    assert (state.state, state.probe_follow_up_id) == ("open", None)
    assert (state.probe_at - timezone.now()).total_seconds() == pytest.approx(30, abs=2)
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("waiting", 1)


def test_a_successful_probe_closes_the_breaker_and_the_relay_releases_the_rest_at_its_rate(
    behind_breaker, settings, test_queue
):
    settings.FOLLOW_UP_BREAKER_RELEASE_PER_SECOND = 2
    trip(behind_breaker, settings)
    waiting = [behind_breaker("ok") for _ in range(5)]
    for row in waiting:
        run(row)
    probe_due()
    probe = behind_breaker("ok")

    assert run(probe) == {"done": probe.key}
    assert (breaker().state, breaker().failures) == ("closed", 0)

    waited = list(
        FollowUp.objects.filter(status="waiting")
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    assert len(waited) == 6  # the five and the follow-up that tripped the breaker

    relay = Relay()
    for released_so_far in (2, 4):  # the oldest first, two a second
        relay.last_tick_at -= 1  # a second since the last tick
        relay.tick()
        still_waiting = FollowUp.objects.filter(status="waiting").order_by("created_at")
        assert list(still_waiting.values_list("pk", flat=True)) == waited[released_so_far:]


def test_waiting_follow_ups_past_their_deadline_are_buried_by_the_relay(
    behind_breaker, settings, test_queue
):
    trip(behind_breaker, settings)
    row = behind_breaker("ok")
    run(row)
    FollowUp.objects.filter(pk=row.pk).update(
        retrying_since=timezone.now() - timedelta(hours=72, seconds=1)
    )

    Relay().tick()

    row.refresh_from_db()
    assert row.status == "dead"
    assert row.last_error == "gave up after 72 h: its provider did not answer"


def test_a_breaker_closed_while_a_row_was_parking_does_not_strand_it(
    behind_breaker, settings, test_queue
):
    # The close and a park race: whatever waits under a closed breaker is released by the relay.
    trip(behind_breaker, settings)
    Breaker.objects.filter(provider=PROVIDER).update(state="closed", failures=0)
    stranded = FollowUp.objects.filter(status="waiting")
    assert stranded.count() == 1

    Relay().tick()

    assert not stranded.exists()


def test_the_overview_shows_state_since_when_and_how_many_wait(behind_breaker, settings):
    trip(behind_breaker, settings)
    run(behind_breaker("ok"))

    (overview,) = [b for b in breakers_overview() if b["provider"] == PROVIDER]
    assert (overview["state"], overview["waiting"]) == ("open", 2)
    assert overview["since"] == breaker().opened_at
