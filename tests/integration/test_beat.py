"""Two real ``celery beat`` processes on PostgreSQL and a real worker: each period runs once."""

import json
import os
import signal
from datetime import datetime

import pytest
from django.contrib.auth import get_user_model
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from config.schedules import SCHEDULES
from follow_ups.relay import LEASE_NAME as RELAY_LEASE_NAME
from scheduling.beat import LEASE_NAME
from scheduling.models import JobRun, Lease
from scheduling.services import schedules_sync
from tests.factories import ProductFactory
from tests.processes import BIN, Process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SENDING = "Sending due task low-stock-alert"


def start_beat(env, log_dir, name) -> Process:
    beat = Process(
        name, [str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO"], env, log_dir
    )
    beat.wait_for_log("beat: Starting...", timeout=60)
    return beat


def runs() -> list[str]:
    return list(JobRun.objects.filter(job="low-stock-alert").values_list("period", flat=True))


def results() -> list[dict]:
    return [
        json.loads(result)
        for result in TaskResult.objects.filter(
            task_name="shop.tasks.low_stock_alert_task", status="SUCCESS"
        ).values_list("result", flat=True)
    ]


def test_two_beats_send_each_period_once_and_a_standby_takes_over(
    live_worker, live_relay, worker_env, process_log_dir, smtp_server
):
    if not worker_env["DATABASE_URL"].startswith("postgresql"):
        pytest.fail("this test needs PostgreSQL; CI deselects it with -m 'not postgres' elsewhere")
    get_user_model().objects.create_user("ops", "ops@example.com", "x", is_staff=True)
    product = ProductFactory(name="Celery seeds", stock=1)
    schedules_sync(schedules=SCHEDULES)
    # One job, every 2 s, so periods pass quickly; the others stay out of the way.
    PeriodicTask.objects.exclude(name="low-stock-alert").update(enabled=False)
    every_two, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    job = PeriodicTask.objects.get(name="low-stock-alert")
    job.crontab = None
    job.interval = every_two
    job.expire_seconds = 2
    job.save()

    env = {**worker_env, "BEAT_LEASE_SECONDS": "3"}
    first = start_beat(env, process_log_dir, "beat-a")
    second = start_beat(env, process_log_dir, "beat-b")
    try:
        wait_until(lambda: len(runs()) >= 4, timeout=30, message="four periods to run")
        senders = [beat for beat in (first, second) if SENDING in beat.log()]
        assert len(senders) == 1, "both beats sent jobs while both were alive"
        leader = senders[0]
        standby = second if leader is first else first
        assert Lease.objects.get(name=LEASE_NAME).holder.split(":")[1] == str(leader.popen.pid)
        # The relay holds a lease of its own in the same table: neither takes the other's.
        relay_lease = Lease.objects.get(name=RELAY_LEASE_NAME)
        assert relay_lease.holder.split(":")[1] == str(live_relay.popen.pid)

        os.killpg(leader.popen.pid, signal.SIGKILL)  # a crash: the lease is not released
        runs_at_crash = len(runs())
        wait_until(lambda: SENDING in standby.log(), timeout=20, message="the standby to send")
        wait_until(lambda: len(runs()) >= runs_at_crash + 3, timeout=30, message="more periods")
    finally:
        first.stop()
        second.stop()

    periods = runs()
    assert len(periods) == len(set(periods))
    assert all(period.endswith("+00:00") for period in periods)  # UTC windows
    # Each period is a 2-second window of the schedule's own interval.
    assert all(int(datetime.fromisoformat(period).timestamp()) % 2 == 0 for period in periods)
    # Every delivery either ran its period or found it already run: never two runs of one period.
    done = results()
    assert (
        len([r for r in done if not r.get("skipped")])
        == JobRun.objects.filter(job="low-stock-alert", outcome="succeeded").count()
    )
    # The work itself happened once: one alert email for the one crossing, however many runs.
    assert len(smtp_server.for_subject(f"Low stock: Celery seeds ({product.sku})")) == 1
