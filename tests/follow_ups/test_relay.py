"""The relay against the real broker: it publishes what is owed, repairs what the broker lost, and
re-publishes nothing that is merely queued. Messages are counted in the broker's own queue (a queue
of this test module's kind, which no worker consumes) and by Celery's publish signal.

Every timing is the production default, except where a test says why.
"""

from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from follow_ups import services
from follow_ups.broker import queue_depths
from follow_ups.models import FollowUp
from follow_ups.relay import Relay, relay_state_record

pytestmark = pytest.mark.django_db


def backdate(rows, **ages) -> None:
    """Move the rows' timestamps into the past: ``created=60`` is "created a minute ago"."""
    now = timezone.now()
    FollowUp.objects.filter(pk__in=[row.pk for row in rows]).update(
        **{f"{field}_at": now - timedelta(seconds=seconds) for field, seconds in ages.items()}
    )


def depth(queue: str) -> int:
    return queue_depths([queue])[queue]


def published_ids(published_tasks) -> list[int]:
    return sorted(args[0] for name, args in published_tasks if name == services.RUN_TASK_NAME)


def test_rows_never_handed_over_are_published_after_the_grace_period_and_only_then(
    make_follow_up, published_tasks, test_queue, settings
):
    old, new = make_follow_up(), make_follow_up()  # never published: no commit in this test
    backdate([old], created=settings.FOLLOW_UP_RELAY_GRACE_SECONDS + 1)

    report = Relay().tick()

    assert report.published == 1
    assert published_ids(published_tasks) == [old.pk]
    assert depth(test_queue) == 1
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.published_at is not None and new.published_at is None


def test_rows_the_web_could_not_publish_are_published_at_once_when_it_wakes_the_relay(
    make_follow_up, published_tasks, test_queue
):
    row = make_follow_up()

    report = Relay().tick(woken_ids=[row.pk])

    assert report.published == 1 and published_ids(published_tasks) == [row.pk]


def test_a_due_retry_is_published_once_per_due_time(make_follow_up, published_tasks, test_queue):
    row = make_follow_up()
    claim = services.follow_up_claim(follow_up_id=row.pk)
    services.follow_up_retry_later(follow_up=claim.follow_up, error="timeout", delay_seconds=0)
    relay = Relay()

    reports = [relay.tick() for _ in range(6)]

    assert [report.published for report in reports] == [1, 0, 0, 0, 0, 0]
    assert published_ids(published_tasks) == [row.pk]
    assert depth(test_queue) == 1


def test_a_retry_not_yet_due_is_not_published(make_follow_up, published_tasks, test_queue):
    row = make_follow_up()
    claim = services.follow_up_claim(follow_up_id=row.pk)
    services.follow_up_retry_later(follow_up=claim.follow_up, error="timeout", delay_seconds=60)

    assert Relay().tick().published == 0
    assert published_tasks == []


def test_a_row_whose_execution_lost_its_lease_is_recovered_and_published(
    make_follow_up, published_tasks, test_queue
):
    row = make_follow_up()
    services.follow_up_claim(follow_up_id=row.pk)
    FollowUp.objects.filter(pk=row.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    report = Relay().tick()

    assert (report.recovered, report.published) == (1, 1)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.lease_token) == ("pending", 1, "")
    assert row.last_error == "worker lost: its lease lapsed"
    assert published_ids(published_tasks) == [row.pk]


def test_a_row_under_a_live_lease_is_left_alone(make_follow_up, published_tasks, test_queue):
    row = make_follow_up()
    services.follow_up_claim(follow_up_id=row.pk)
    backdate([row], created=3600, started=3600)  # a long effect, still renewing its lease

    report = Relay().tick()

    assert (report.recovered, report.published) == (0, 0)
    assert FollowUp.objects.get(pk=row.pk).status == "running"


def _publish_and_age(rows, settings) -> None:
    """Hand the rows to the broker, as the web does at commit, and age them past every window."""
    for row in rows:
        services.follow_up_send(row)
    services.follow_ups_mark_published(rows)
    backdate(rows, created=3600, published=3600)


def test_a_backlog_older_than_every_window_is_never_republished(
    make_follow_up, published_tasks, test_queue, settings
):
    rows = [make_follow_up() for _ in range(30)]
    _publish_and_age(rows, settings)
    published_tasks.clear()
    assert depth(test_queue) == 30
    # Each tick runs the lost-message check (production default: every 5 s): the timing of the
    # check does not change what it finds, only how often it looks.
    settings.FOLLOW_UP_LOST_CHECK_SECONDS = 0
    relay = Relay()

    reports = [relay.tick() for _ in range(3)]

    assert [report.republished for report in reports] == [0, 0, 0]
    assert published_tasks == []
    assert depth(test_queue) == 30


def test_messages_the_broker_lost_are_republished_once_two_checks_agree(
    make_follow_up, published_tasks, test_queue, settings
):
    queued = [make_follow_up() for _ in range(10)]
    lost = [make_follow_up() for _ in range(5)]
    _publish_and_age(lost, settings)
    with current_app.connection_for_write() as conn:  # the broker restarted empty ...
        conn.default_channel.queue_purge(test_queue)
    _publish_and_age(queued, settings)  # ... and has taken new messages since
    published_tasks.clear()
    settings.FOLLOW_UP_LOST_CHECK_SECONDS = 0  # as above: how often, not what
    relay = Relay()

    first, second, third = relay.tick(), relay.tick(), relay.tick()

    assert (first.republished, second.republished, third.republished) == (0, 5, 0)
    assert published_ids(published_tasks) == sorted(row.pk for row in lost)
    assert depth(test_queue) == 15


def test_the_relay_records_what_it_did_for_ops(make_follow_up, test_queue):
    relay = Relay()
    relay_state_record(holder="relay-a", report=relay.tick(woken_ids=[make_follow_up().pk]))
    relay_state_record(holder="relay-a", report=relay.tick(woken_ids=[make_follow_up().pk]))

    from follow_ups.selectors import relay_state_get

    state = relay_state_get()
    assert (state.holder, state.published) == ("relay-a", 2)
    assert timezone.now() - state.ticked_at < timedelta(seconds=5)


def test_a_row_of_an_undeclared_kind_is_buried_and_the_rest_are_published(
    make_follow_up, published_tasks, test_queue
):
    orphan, row = make_follow_up(), make_follow_up()
    FollowUp.objects.filter(pk=orphan.pk).update(kind="kind_from_a_newer_release")

    report = Relay().tick(woken_ids=[orphan.pk, row.pk])

    assert report.published == 1 and published_ids(published_tasks) == [row.pk]
    assert FollowUp.objects.get(pk=orphan.pk).status == "dead"


def test_a_wake_up_between_full_ticks_publishes_the_rows_it_names_and_scans_nothing(
    make_follow_up, published_tasks, test_queue, settings, django_assert_num_queries
):
    """Under FOLLOW_UP_PUBLISH=relay every commit wakes the relay; a wake-up is one SELECT by
    primary key and the UPDATE that marks what it handed over, not the full tick's scans."""
    relay = Relay()
    relay.step(woken_ids=[])  # the full tick that starts the interval (production: 1 s)
    overdue, lapsed, woken = make_follow_up(), make_follow_up(), make_follow_up()
    backdate([overdue], created=settings.FOLLOW_UP_RELAY_GRACE_SECONDS + 1)
    services.follow_up_claim(follow_up_id=lapsed.pk)
    FollowUp.objects.filter(pk=lapsed.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    published_tasks.clear()

    with django_assert_num_queries(2):
        report = relay.step(woken_ids=[woken.pk])

    assert (report.published, report.recovered, report.lag_seconds) == (1, 0, None)
    assert published_ids(published_tasks) == [woken.pk]
    assert FollowUp.objects.get(pk=lapsed.pk).status == "running"  # left to the full tick


def test_a_wake_up_once_the_interval_has_passed_is_a_full_tick(
    make_follow_up, published_tasks, test_queue, settings
):
    relay = Relay()
    relay.step(woken_ids=[])
    assert 0 < relay.seconds_to_full_tick() <= settings.FOLLOW_UP_RELAY_INTERVAL_SECONDS
    overdue, woken = make_follow_up(), make_follow_up()
    backdate([overdue], created=settings.FOLLOW_UP_RELAY_GRACE_SECONDS + 1)
    relay.full_tick_due_at = 0.0  # as once FOLLOW_UP_RELAY_INTERVAL_SECONDS has passed

    report = relay.step(woken_ids=[woken.pk])

    assert report.published == 2 and report.lag_seconds is not None
    assert published_ids(published_tasks) == sorted([overdue.pk, woken.pk])


def test_a_wake_up_never_publishes_a_row_already_handed_over_or_taken(
    make_follow_up, published_tasks, test_queue
):
    relay = Relay()
    relay.step(woken_ids=[])
    handed_over, taken = make_follow_up(), make_follow_up()
    services.follow_ups_mark_published([handed_over])
    services.follow_up_claim(follow_up_id=taken.pk)
    published_tasks.clear()

    report = relay.step(woken_ids=[handed_over.pk, taken.pk])

    assert report.published == 0 and published_tasks == []


def test_a_wake_up_leaves_the_recorded_lag_as_the_last_full_tick_measured_it(
    make_follow_up, test_queue, settings
):
    from follow_ups.selectors import relay_state_get

    relay = Relay()
    behind = make_follow_up()
    backdate([behind], created=settings.FOLLOW_UP_RELAY_GRACE_SECONDS - 2)  # owed, not yet due
    relay_state_record(holder="relay-a", report=relay.step(woken_ids=[]))
    lag = relay_state_get().lag_seconds
    assert lag >= settings.FOLLOW_UP_RELAY_GRACE_SECONDS - 2

    relay_state_record(holder="relay-a", report=relay.step(woken_ids=[make_follow_up().pk]))

    state = relay_state_get()
    assert (state.published, state.lag_seconds) == (1, lag)


def test_the_publish_mark_never_overwrites_the_outcome_of_a_worker_that_was_faster(
    make_follow_up, published_tasks, test_queue
):
    # The web (or the relay) publishes, a worker takes the message and fails at once, and only
    # then does the publisher mark the row handed over: the retry the worker scheduled stands.
    from tests.follow_ups.conftest import Flaky

    row = make_follow_up(Flaky, "ok")
    as_published = FollowUp.objects.get(pk=row.pk)
    with pytest.raises(services.AttemptFailed, match="retrying"):
        services.follow_up_run(follow_up_id=row.pk)

    services.follow_ups_mark_published([as_published])

    row.refresh_from_db()
    assert (row.status, row.published_at) == ("retrying", None)
    # So the retry is published once it is due, and never counted as a message the broker lost.
    FollowUp.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    published_tasks.clear()
    report = Relay().tick()
    assert (report.published, report.republished) == (1, 0)
    assert published_ids(published_tasks) == [row.pk]


def test_the_publish_mark_still_marks_a_row_no_worker_has_taken(make_follow_up, test_queue):
    row = make_follow_up()
    services.follow_ups_mark_published([FollowUp.objects.get(pk=row.pk)])
    row.refresh_from_db()
    assert row.published_at is not None
