"""Beat's bookkeeping leaves ``orders`` for ``scheduling``: every row is kept (its table is renamed)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

MOVE = ("scheduling", "0001_initial")


def migrate(targets):
    """Migrate the test database to ``targets``; return the models as they are there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


@pytest.mark.django_db(transaction=True)
def test_leases_run_records_and_sync_fingerprints_are_kept():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        old = migrate([("orders", "0003_recurring_jobs_and_delayed_work"), ("scheduling", None)])
        now = timezone.now()
        old.get_model("orders", "BeatLease").objects.create(
            name="celery-beat", holder="host:1:abc", expires_at=now, acquired_at=now
        )
        run = old.get_model("orders", "JobRun").objects.create(
            job="cleanup", period="2026-11-01T07:07:00+00:00", started_at=now, error="boom"
        )
        old.get_model("orders", "ScheduleSync").objects.create(name="cleanup", fingerprint="f" * 64)
    finally:
        new = migrate(latest)

    lease = new.get_model("scheduling", "Lease").objects.get()
    assert (lease.name, lease.holder) == ("celery-beat", "host:1:abc")
    kept = new.get_model("scheduling", "JobRun").objects.get()
    assert (kept.pk, kept.job, kept.error) == (run.pk, "cleanup", "boom")
    assert new.get_model("scheduling", "ScheduleSync").objects.get().fingerprint == "f" * 64
    # New rows continue after the kept ones.
    later = new.get_model("scheduling", "JobRun").objects.create(
        job="cleanup", period="next", started_at=timezone.now()
    )
    assert later.pk > run.pk
