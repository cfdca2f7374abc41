"""Ownership of running work: a lease held by a live execution, a fencing token, crashes counted;
retries until a deadline in time."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from follow_ups import registry, services
from follow_ups.models import FollowUp
from tests.follow_ups.conftest import TEST_KIND, Flaky

pytestmark = pytest.mark.django_db


def lapse(follow_up: FollowUp) -> None:
    """The execution holding the row stopped renewing its lease (its worker died) long enough ago."""
    FollowUp.objects.filter(pk=follow_up.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_follow_up_is_claimed_once(make_follow_up):
    row = make_follow_up()
    claim = services.follow_up_claim(follow_up_id=row.pk)

    assert claim is not None
    assert (claim.follow_up.status, claim.follow_up.attempts) == ("running", 1)
    assert services.follow_up_claim(follow_up_id=row.pk) is None


def test_a_redelivered_copy_does_nothing_while_the_execution_holds_its_lease(make_follow_up):
    # A dropped broker connection re-delivers the very same message while its execution still runs.
    row = make_follow_up()
    first = services.follow_up_claim(follow_up_id=row.pk)

    assert services.follow_up_claim(follow_up_id=row.pk) is None
    row.refresh_from_db()
    assert (row.attempts, row.lease_token) == (1, first.follow_up.lease_token)
    assert row.lease_expires_at > timezone.now() + timedelta(seconds=10)  # production lease: 15 s


def test_a_lapsed_lease_lets_the_next_claim_take_over_and_counts_the_attempt(make_follow_up):
    row = make_follow_up()
    first = services.follow_up_claim(follow_up_id=row.pk)
    lapse(row)

    second = services.follow_up_claim(follow_up_id=row.pk)

    assert second is not None and second.follow_up.attempts == 2
    assert second.follow_up.lease_token != first.follow_up.lease_token


def test_a_stale_execution_cannot_record_its_outcome_over_a_newer_one(make_follow_up):
    row = make_follow_up()
    stale = services.follow_up_claim(follow_up_id=row.pk).follow_up
    lapse(row)
    fresh = services.follow_up_claim(follow_up_id=row.pk).follow_up

    assert services.follow_up_succeed(follow_up=stale, result={"from": "stale"}) is False
    assert services.follow_up_bury(follow_up=stale, error="late news from a lost worker") is False
    row.refresh_from_db()
    assert (row.status, row.lease_token) == ("running", fresh.lease_token)
    assert services.follow_up_succeed(follow_up=fresh, result={"from": "fresh"}) is True
    row.refresh_from_db()
    assert (row.status, row.result) == ("succeeded", {"from": "fresh"})


def test_a_follow_up_whose_every_start_crashes_is_buried_after_the_crash_limit(
    make_follow_up, settings
):
    # A worker killed on every attempt (out of memory) never records an outcome: each takeover of
    # its lapsed lease counts a crash, and the start after the limit buries it as poison.
    limit = settings.FOLLOW_UP_MAX_CRASHES
    row = make_follow_up()
    for attempt in range(1, limit + 1):
        claim = services.follow_up_claim(follow_up_id=row.pk)
        assert claim is not None and claim.follow_up.attempts == attempt
        assert claim.follow_up.crashes == attempt - 1
        lapse(row)

    assert services.follow_up_claim(follow_up_id=row.pk) is None
    row.refresh_from_db()
    assert (row.status, row.attempts, row.crashes) == ("dead", limit, limit)
    assert f"gave up after {limit} attempts that did not finish" in row.last_error


def test_transient_failures_do_not_use_up_the_crash_limit(make_follow_up, settings):
    row = make_follow_up(Flaky, Flaky, Flaky, Flaky, Flaky, Flaky, "ok")
    for _ in range(settings.FOLLOW_UP_MAX_CRASHES + 1):
        FollowUp.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
        with pytest.raises(services.AttemptFailed, match="retrying"):
            services.follow_up_run(follow_up_id=row.pk)
    FollowUp.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    assert services.follow_up_run(follow_up_id=row.pk) == {"done": row.key}
    row.refresh_from_db()
    assert (row.status, row.attempts, row.crashes) == ("succeeded", 7, 0)


def test_a_retry_is_not_claimed_before_it_is_due(make_follow_up):
    row = make_follow_up()
    claim = services.follow_up_claim(follow_up_id=row.pk)
    services.follow_up_retry_later(follow_up=claim.follow_up, error="timeout", delay_seconds=60)

    assert services.follow_up_claim(follow_up_id=row.pk) is None
    FollowUp.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    assert services.follow_up_claim(follow_up_id=row.pk).follow_up.attempts == 2


def test_a_succeeded_or_dead_follow_up_is_never_claimed_again(make_follow_up):
    done, dead = make_follow_up(), make_follow_up()
    services.follow_up_succeed(
        follow_up=services.follow_up_claim(follow_up_id=done.pk).follow_up, result={}
    )
    services.follow_up_bury(
        follow_up=services.follow_up_claim(follow_up_id=dead.pk).follow_up, error="no"
    )
    for row in (done, dead):
        FollowUp.objects.filter(pk=row.pk).update(lease_expires_at=None)
        assert services.follow_up_claim(follow_up_id=row.pk) is None


def test_a_missing_follow_up_is_not_claimed():
    assert services.follow_up_claim(follow_up_id=987654) is None


def test_a_transient_failure_schedules_one_retry_in_the_database_and_a_later_run_succeeds(
    make_follow_up,
):
    row = make_follow_up(Flaky, "ok")

    with pytest.raises(services.AttemptFailed, match="retrying"):
        services.follow_up_run(follow_up_id=row.pk)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.published_at) == ("retrying", 1, None)
    assert row.last_error.startswith("Flaky: scripted failure")

    FollowUp.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    assert services.follow_up_run(follow_up_id=row.pk) == {"done": row.key}
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == ("succeeded", 2, "")


def test_a_permanent_failure_is_a_dead_letter_at_once(make_follow_up):
    row = make_follow_up(ValueError)
    with pytest.raises(services.AttemptFailed, match="dead: ValueError") as failed:
        services.follow_up_run(follow_up_id=row.pk)
    assert failed.value.dead and isinstance(failed.value.__cause__, ValueError)
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("dead", 1)


def test_transient_failures_are_retried_until_the_kinds_deadline_then_the_row_is_dead(
    make_follow_up, settings
):
    row = make_follow_up(Flaky)
    with pytest.raises(services.AttemptFailed, match="retrying"):
        services.follow_up_run(follow_up_id=row.pk)
    row.refresh_from_db()
    first_failure = row.retrying_since
    assert first_failure is not None

    # Many more failures inside the deadline: still retrying, the deadline still counted from the
    # first failure (no attempt count ends it).
    for _ in range(20):
        FollowUp.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
        with pytest.raises(services.AttemptFailed, match="retrying"):
            services.follow_up_run(follow_up_id=row.pk)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.retrying_since) == ("retrying", 21, first_failure)

    # The first failure was the deadline (3 days by default) ago: the next failure buries it.
    deadline = timedelta(hours=settings.FOLLOW_UP_RETRY_FOR_HOURS)
    FollowUp.objects.filter(pk=row.pk).update(
        next_attempt_at=timezone.now(),
        retrying_since=timezone.now() - deadline - timedelta(seconds=1),
    )
    with pytest.raises(services.AttemptFailed, match="dead"):
        services.follow_up_run(follow_up_id=row.pk)
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("dead", 22)
    assert row.last_error.startswith("gave up after 72 h of failures: Flaky")


def test_a_kinds_deadline_can_be_set_on_its_own(make_follow_up, settings):
    settings.FOLLOW_UP_RETRY_FOR_HOURS_BY_KIND = {"test_effect": 1}
    row = make_follow_up(Flaky)
    with pytest.raises(services.AttemptFailed, match="retrying"):
        services.follow_up_run(follow_up_id=row.pk)
    FollowUp.objects.filter(pk=row.pk).update(
        next_attempt_at=timezone.now(), retrying_since=timezone.now() - timedelta(minutes=61)
    )
    with pytest.raises(services.AttemptFailed, match="dead"):
        services.follow_up_run(follow_up_id=row.pk)
    row.refresh_from_db()
    assert row.status == "dead"
    assert row.last_error.startswith("gave up after 1 h of failures")


def test_a_success_clears_the_deadline_so_the_next_streak_gets_a_whole_one(make_follow_up):
    row = make_follow_up(Flaky, "ok")
    with pytest.raises(services.AttemptFailed):
        services.follow_up_run(follow_up_id=row.pk)
    FollowUp.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    services.follow_up_run(follow_up_id=row.pk)
    row.refresh_from_db()
    assert (row.status, row.retrying_since) == ("succeeded", None)


@pytest.mark.django_db(transaction=True)
def test_the_lease_is_renewed_while_the_effect_runs_and_given_up_when_taken_over(
    make_follow_up, settings
):
    # A short lease, so renewals happen within the test; the renewal logic does not depend on its
    # length (a third of the lease, whatever it is).
    settings.FOLLOW_UP_LEASE_SECONDS = 0.6
    row = make_follow_up()
    claim = services.follow_up_claim(follow_up_id=row.pk)
    first_expiry = FollowUp.objects.get(pk=row.pk).lease_expires_at

    with services.LeaseKeeper(claim.follow_up) as keeper:
        time.sleep(1.0)
        renewed_expiry = FollowUp.objects.get(pk=row.pk).lease_expires_at
        FollowUp.objects.filter(pk=row.pk).update(lease_token="someone-else")
        deadline = time.monotonic() + 3
        while not keeper.lost and time.monotonic() < deadline:
            time.sleep(0.05)

    assert renewed_expiry > first_expiry + timedelta(seconds=0.5)
    assert keeper.lost


@pytest.mark.parametrize("attempt", range(1, 12))
def test_retry_delay_is_full_jitter_under_an_exponential_cap(settings, attempt):
    settings.FOLLOW_UP_RETRY_BASE_SECONDS = 2
    settings.FOLLOW_UP_RETRY_CAP_SECONDS = 300
    delays = [services.retry_delay_seconds(attempt=attempt) for _ in range(200)]
    ceiling = min(300, 2 * 2**attempt)
    assert all(0 <= delay <= ceiling for delay in delays)
    assert max(delays) > ceiling / 2  # spread over the range, not a fixed value


def test_retry_delay_honours_a_providers_retry_after_up_to_its_own_cap(settings):
    settings.FOLLOW_UP_RETRY_BASE_SECONDS = 2
    settings.FOLLOW_UP_RETRY_CAP_SECONDS = 300
    settings.FOLLOW_UP_RETRY_AFTER_MAX_SECONDS = 3600
    assert all(services.retry_delay_seconds(attempt=1, retry_after=900) >= 900 for _ in range(50))
    assert services.retry_delay_seconds(attempt=1, retry_after=100_000) <= 3600


def test_a_row_of_a_kind_no_release_here_declares_is_a_dead_letter_not_a_loop(make_follow_up):
    row = make_follow_up()
    FollowUp.objects.filter(pk=row.pk).update(kind="kind_from_a_newer_release")

    assert services.follow_up_claim(follow_up_id=row.pk) is None
    row.refresh_from_db()
    assert row.status == "dead"
    assert "kind_from_a_newer_release" in row.last_error


def test_a_pending_row_that_may_not_start_yet_is_claimed_only_once_it_is_due(make_follow_up):
    # A row written with ``not_before`` (a charge's void) waits pending with a future due time.
    row = make_follow_up()
    FollowUp.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=1))
    assert services.follow_up_claim(follow_up_id=row.pk) is None

    # Within the clock tolerance (2 s) it is due: the relay's clock may run a little ahead.
    FollowUp.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=1))
    claim = services.follow_up_claim(follow_up_id=row.pk)
    assert claim is not None and claim.follow_up.next_attempt_at is None


def test_a_claim_is_one_update_returning_the_claimed_row(make_follow_up):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    row = make_follow_up()
    with CaptureQueriesContext(connection) as queries:
        claim = services.follow_up_claim(follow_up_id=row.pk)

    stored = FollowUp.objects.get(pk=row.pk)
    claimed = claim.follow_up
    for field in FollowUp._meta.concrete_fields:
        assert getattr(claimed, field.attname) == getattr(stored, field.attname), field.name
    assert (claimed.status, claimed.attempts, claimed.label) == ("running", 1, row.label)
    assert claimed.lease_expires_at > timezone.now() + timedelta(seconds=10)
    statements = [q["sql"] for q in queries.captured_queries]
    if not connection.features.can_return_columns_from_insert:
        # No RETURNING here (SQLite before 3.35): the row is read, then compare-and-set.
        assert statements[0].startswith("SELECT") and statements[-1].startswith("UPDATE")
        return
    (query,) = statements
    assert query.startswith("UPDATE") and "RETURNING" in query


def test_a_copy_of_a_message_whose_row_is_taken_changes_nothing(make_follow_up):
    row = make_follow_up()
    first = services.follow_up_claim(follow_up_id=row.pk).follow_up
    before = FollowUp.objects.values().get(pk=row.pk)

    assert services.follow_up_claim(follow_up_id=row.pk) is None
    assert FollowUp.objects.values().get(pk=row.pk) == before
    assert before["lease_token"] == first.lease_token


def _taken_over_while_running(follow_up: FollowUp) -> dict:
    # The worker stalls past its lease (a long GC pause, a frozen VM) and another execution takes
    # the row over before this one returns.
    lapse(follow_up)
    services.follow_up_claim(follow_up_id=follow_up.pk)
    return {"done": "late"}


TAKEN_OVER_KIND = registry.register(
    registry.Kind(
        name="test_taken_over",
        label="Test effect taken over while it runs",
        queue=TEST_KIND.queue,
        perform=_taken_over_while_running,
    )
)


def test_a_run_whose_row_was_taken_over_is_not_reported_as_a_success(make_follow_up):
    # Celery (and so Flower) must not call it SUCCESS while the ledger says another execution
    # holds the row: the task raises, and its outcome is dropped.
    row = make_follow_up(kind=TAKEN_OVER_KIND)
    with pytest.raises(services.LeaseLost, match="taken over"):
        services.follow_up_run(follow_up_id=row.pk)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.result) == ("running", 2, {})
