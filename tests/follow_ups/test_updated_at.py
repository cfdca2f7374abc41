"""``updated_at`` tells an operator when a follow-up last changed state: every transition moves it.

The engine's transitions are conditional ``UPDATE``s (claims, fenced outcomes, the relay's repairs),
which Django's ``auto_now`` never sees, so each one sets the field itself. Each test first moves
``updated_at`` a day into the past, then makes one transition.
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from follow_ups import services
from follow_ups.models import FollowUp
from follow_ups.relay import Relay
from tests.follow_ups.conftest import Flaky

pytestmark = pytest.mark.django_db

A_DAY_AGO = timedelta(days=1)


def age(row: FollowUp, **fields) -> None:
    FollowUp.objects.filter(pk=row.pk).update(updated_at=timezone.now() - A_DAY_AGO, **fields)


def assert_moved(row: FollowUp, status: str) -> None:
    row.refresh_from_db()
    assert row.status == status
    assert timezone.now() - row.updated_at < timedelta(seconds=5), row.updated_at


def claimed(make_follow_up, *script) -> services.Claim:
    row = make_follow_up(*script)
    return services.follow_up_claim(follow_up_id=row.pk)


def test_a_new_follow_up_starts_with_updated_at_now(make_follow_up):
    assert_moved(make_follow_up(), "pending")


def test_being_handed_to_the_broker_moves_updated_at(make_follow_up):
    row = make_follow_up()
    age(row)
    services.follow_ups_mark_published([row])
    row.refresh_from_db()
    assert row.published_at is not None
    assert_moved(row, "pending")


def test_a_claim_moves_updated_at(make_follow_up):
    row = make_follow_up()
    age(row)
    services.follow_up_claim(follow_up_id=row.pk)
    assert_moved(row, "running")


def test_success_moves_updated_at(make_follow_up):
    claim = claimed(make_follow_up)
    age(claim.follow_up)
    services.follow_up_succeed(follow_up=claim.follow_up, result={})
    assert_moved(claim.follow_up, "succeeded")


def test_a_retry_moves_updated_at(make_follow_up):
    row = make_follow_up(Flaky, "ok")
    age(row)
    with pytest.raises(services.AttemptFailed):
        services.follow_up_run(follow_up_id=row.pk)
    assert_moved(row, "retrying")


def test_burying_moves_updated_at(make_follow_up):
    claim = claimed(make_follow_up)
    age(claim.follow_up)
    services.follow_up_bury(follow_up=claim.follow_up, error="refused for good")
    assert_moved(claim.follow_up, "dead")


def test_burying_at_the_crash_limit_moves_updated_at(make_follow_up, settings):
    row = make_follow_up()
    age(row, crashes=settings.FOLLOW_UP_MAX_CRASHES)
    assert services.follow_up_claim(follow_up_id=row.pk) is None
    assert_moved(row, "dead")


def test_burying_a_row_of_an_undeclared_kind_moves_updated_at(make_follow_up):
    row = make_follow_up()
    age(row, kind="kind_from_a_newer_release")
    services.follow_up_claim(follow_up_id=row.pk)
    assert_moved(row, "dead")


def test_the_relay_recovering_a_lapsed_lease_moves_updated_at(make_follow_up, test_queue):
    claim = claimed(make_follow_up)
    age(claim.follow_up, lease_expires_at=timezone.now() - timedelta(seconds=1))
    Relay().tick()
    assert_moved(claim.follow_up, "pending")


def test_a_replay_moves_updated_at(make_follow_up, django_capture_on_commit_callbacks):
    claim = claimed(make_follow_up)
    services.follow_up_bury(follow_up=claim.follow_up, error="refused for good")
    age(claim.follow_up)
    with django_capture_on_commit_callbacks():  # captured, not run: the publish is not the point
        services.follow_up_replay(follow_up_ids=[claim.follow_up.pk])
    assert_moved(claim.follow_up, "pending")


@pytest.mark.django_db(transaction=True)
def test_a_lease_renewal_is_not_a_transition_and_leaves_updated_at(make_follow_up, settings):
    # The heartbeat runs every few seconds: were it to move updated_at, the admin's "updated"
    # column would say nothing about when the row last changed state. A short lease, so the
    # keeper renews within the test.
    settings.FOLLOW_UP_LEASE_SECONDS = 0.6
    claim = claimed(make_follow_up)
    age(claim.follow_up)
    first_expiry = FollowUp.objects.get(pk=claim.follow_up.pk).lease_expires_at
    with services.LeaseKeeper(claim.follow_up):
        time.sleep(1.0)
    row = FollowUp.objects.get(pk=claim.follow_up.pk)
    assert row.lease_expires_at > first_expiry  # renewed
    assert timezone.now() - row.updated_at > A_DAY_AGO - timedelta(minutes=1)
