"""The job log's lines for follow-up tasks: named from the row the claim took, read by nobody else.

The task runs through Celery's tracer (``apply``), which sends the same prerun and postrun signals
a worker does; the worker itself is in tests/integration/test_ops_with_a_worker.py.
"""

import json
import logging
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from follow_ups import registry
from follow_ups.models import FollowUp
from follow_ups.tasks import follow_up_run_task

# Each task run ends with close_old_connections (config/celery.py), as on a worker: no test transaction.
pytestmark = pytest.mark.django_db(transaction=True)

KIND = registry.register(
    registry.Kind(name="job_log_test", label="Job log test", queue="bulk", perform=lambda row: {})
)


@pytest.fixture
def job_lines():
    lines: list[dict] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(json.loads(record.getMessage()))

    handler = Collect()
    logging.getLogger("jobs").addHandler(handler)
    yield lines
    logging.getLogger("jobs").removeHandler(handler)


def make_row() -> FollowUp:
    # Written directly, not published: no broker message of this test's kind is left behind.
    return FollowUp.objects.create(
        key=f"job-log:{uuid.uuid4().hex}", kind=KIND.name, label="CS-JOBLOG1"
    )


def test_job_started_names_the_follow_up_from_its_claim_without_reading_the_row(job_lines):
    row = make_row()
    with CaptureQueriesContext(connection) as queries:
        follow_up_run_task.apply(args=[row.pk])

    started, finished = job_lines
    assert started["event"] == "job.started"
    expected = {"follow_up_id": row.pk, "kind": KIND.name, "label": "CS-JOBLOG1", "attempt": 1}
    assert started.items() >= {**expected, "job": "follow_ups.run"}.items()
    assert finished.items() >= {**expected, "event": "job.finished", "outcome": "succeeded"}.items()
    if connection.features.can_return_columns_from_insert:
        reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
        assert not [sql for sql in reads if FollowUp._meta.db_table in sql]


def test_a_skipped_copy_is_logged_with_the_row_it_found(job_lines):
    row = make_row()
    follow_up_run_task.apply(args=[row.pk])
    job_lines.clear()

    follow_up_run_task.apply(args=[row.pk])

    started, finished = job_lines
    assert (started["event"], started["label"], started["kind"]) == (
        "job.started",
        "CS-JOBLOG1",
        KIND.name,
    )
    assert (finished["event"], finished["outcome"]) == ("job.finished", "skipped")


def test_a_message_that_is_no_follow_up_id_is_logged_started_then_finished(job_lines):
    follow_up_run_task.apply(args=["not-an-id"])

    assert [line["event"] for line in job_lines] == ["job.started", "job.finished"]
    assert "follow_up_id" not in job_lines[0]


def test_a_missing_row_is_logged_by_its_id(job_lines):
    follow_up_run_task.apply(args=[987_654])

    started, finished = job_lines
    assert (started["event"], started["follow_up_id"]) == ("job.started", 987_654)
    assert finished["outcome"] == "skipped"
