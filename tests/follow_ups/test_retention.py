"""The ledger's retention (follow_ups/retention.py): succeeded rows go after
FOLLOW_UP_RETENTION_DAYS, dead letters after their own, far longer retention, nothing unfinished
ever; a chunk per transaction."""

import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from follow_ups.models import DeadLetterNotice, FollowUp
from follow_ups.retention import follow_ups_oldest_created_at, follow_ups_prune
from scheduling.retention import rows_delete_in_chunks

pytestmark = pytest.mark.django_db

NOW = datetime(2030, 5, 4, 3, 40, tzinfo=UTC)


@pytest.fixture(autouse=True)
def retention(settings):
    settings.FOLLOW_UP_RETENTION_DAYS = 30
    settings.FOLLOW_UP_DEAD_RETENTION_DAYS = 365


def row(key: str, status: str, *, days_ago: float, **fields) -> FollowUp:
    """A follow-up written ``days_ago`` and last changed then (its outcome, for a finished one)."""
    with time_machine.travel(NOW - timedelta(days=days_ago), tick=False):
        return FollowUp.objects.create(key=key, kind="confirmation_email", status=status, **fields)


def keys() -> set[str]:
    return set(FollowUp.objects.values_list("key", flat=True))


def test_succeeded_follow_ups_past_their_retention_go_and_recent_dead_and_unfinished_ones_stay():
    row("succeeded-31d", "succeeded", days_ago=31)
    row("succeeded-29d", "succeeded", days_ago=29)
    row("dead-31d", "dead", days_ago=31)
    row("pending-31d", "pending", days_ago=31)
    row("retrying-31d", "retrying", days_ago=31)
    row("running-31d", "running", days_ago=31)

    counts = follow_ups_prune(now=NOW)

    assert counts == {"follow_ups_succeeded": 1, "follow_ups_dead": 0}
    assert keys() == {"succeeded-29d", "dead-31d", "pending-31d", "retrying-31d", "running-31d"}


def test_a_follow_up_that_succeeded_lately_stays_however_long_ago_it_was_written():
    """A dead letter replayed after weeks, that succeeded yesterday: its last change counts."""
    replayed = row("replayed", "succeeded", days_ago=40)
    with time_machine.travel(NOW - timedelta(days=1), tick=False):
        FollowUp.objects.filter(pk=replayed.pk).update(updated_at=NOW - timedelta(days=1))

    assert follow_ups_prune(now=NOW)["follow_ups_succeeded"] == 0
    assert keys() == {"replayed"}


def test_dead_letters_go_only_after_their_own_retention_and_their_digest_notice_with_them():
    old = row("dead-366d", "dead", days_ago=366)
    DeadLetterNotice.objects.create(follow_up=old, digest_period="p", created_at=NOW)
    row("dead-364d", "dead", days_ago=364)
    replayed_lately = row("dead-400d-replayed", "dead", days_ago=400)
    FollowUp.objects.filter(pk=replayed_lately.pk).update(updated_at=NOW - timedelta(days=3))

    counts = follow_ups_prune(now=NOW)

    assert counts == {"follow_ups_succeeded": 0, "follow_ups_dead": 1}
    assert keys() == {"dead-364d", "dead-400d-replayed"}
    assert not DeadLetterNotice.objects.exists()


def test_zero_days_keeps_follow_ups_for_ever(settings):
    settings.FOLLOW_UP_RETENTION_DAYS = 0
    settings.FOLLOW_UP_DEAD_RETENTION_DAYS = 0
    row("succeeded-5y", "succeeded", days_ago=5 * 365)
    row("dead-5y", "dead", days_ago=5 * 365)

    assert follow_ups_prune(now=NOW) == {"follow_ups_succeeded": 0, "follow_ups_dead": 0}
    assert keys() == {"succeeded-5y", "dead-5y"}


def test_more_rows_than_one_chunk_are_deleted_one_chunk_per_transaction(settings):
    settings.RETENTION_CHUNK_SIZE = 10
    for number in range(25):
        row(f"old-{number}", "succeeded", days_ago=31)
    row("recent", "succeeded", days_ago=1)
    table = FollowUp._meta.db_table

    with CaptureQueriesContext(connection) as queries:
        counts = follow_ups_prune(now=NOW)

    deletes = [q["sql"] for q in queries if q["sql"].startswith(f'DELETE FROM "{table}"')]
    assert counts["follow_ups_succeeded"] == 25
    assert [len(sql.split(" IN (")[1].split(")")[0].split(",")) for sql in deletes] == [10, 10, 5]
    assert keys() == {"recent"}


def test_a_run_past_its_deadline_starts_no_further_chunk(settings):
    settings.RETENTION_CHUNK_SIZE = 10
    for number in range(25):
        row(f"old-{number}", "succeeded", days_ago=31)

    deleted = rows_delete_in_chunks(
        rows=FollowUp.objects.filter(status="succeeded"), deadline=time.monotonic() - 1
    )
    later = rows_delete_in_chunks(rows=FollowUp.objects.filter(status="succeeded"))

    assert (deleted, later) == (0, 25)


def test_the_oldest_follow_up_on_record_is_the_one_written_first():
    assert follow_ups_oldest_created_at() is None
    row("first", "dead", days_ago=200)
    row("second", "succeeded", days_ago=3)

    assert follow_ups_oldest_created_at() == NOW - timedelta(days=200)
