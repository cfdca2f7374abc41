"""Exactly one run per period: the beat lease, the per-period run key, and the period beat stamps."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from celery.schedules import crontab, schedule
from django.utils import timezone

from scheduling import services
from scheduling.beat import period_for
from scheduling.models import JobRun, Lease

pytestmark = pytest.mark.django_db

NOON = datetime(2030, 5, 4, 12, 0, 0, tzinfo=UTC)


def test_a_job_run_twice_for_the_same_period_does_its_work_once():
    calls = []

    def work():
        calls.append(1)
        return {"done": len(calls)}

    first = services.job_run(job="probe", period="2030-05-04T12:00:00+00:00", work=work)
    second = services.job_run(job="probe", period="2030-05-04T12:00:00+00:00", work=work)

    assert calls == [1]
    assert first["done"] == 1
    assert second["skipped"] is True
    run = JobRun.objects.get(job="probe")
    assert run.outcome == "succeeded" and run.counts == {"done": 1} and run.finished_at


def test_each_period_runs_once_and_is_recorded():
    for hour in (12, 13):
        for _ in range(2):
            services.job_run(job="probe", period=f"2030-05-04T{hour}:00", work=dict)

    assert sorted(JobRun.objects.values_list("period", flat=True)) == [
        "2030-05-04T12:00",
        "2030-05-04T13:00",
    ]


def test_a_failed_run_is_recorded_and_may_be_tried_again_for_its_period():
    def broken():
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        services.job_run(job="probe", period="p1", work=broken)
    failed = JobRun.objects.get(job="probe", period="p1")
    assert failed.outcome == "failed" and "disk full" in failed.error

    services.job_run(job="probe", period="p1", work=lambda: {"ok": 1})

    retried = JobRun.objects.get(job="probe", period="p1")
    assert (retried.outcome, retried.attempts, retried.counts) == ("succeeded", 2, {"ok": 1})


def test_a_run_started_by_hand_always_runs():
    services.job_run(job="probe", period=None, work=dict)
    services.job_run(job="probe", period=None, work=dict)

    assert JobRun.objects.filter(job="probe", outcome="succeeded").count() == 2


def test_only_one_beat_holds_the_lease_while_it_renews_it():
    with time_machine.travel(NOON, tick=False) as clock:
        assert services.lease_acquire(name="beat", holder="a", ttl_seconds=30)
        assert not services.lease_acquire(name="beat", holder="b", ttl_seconds=30)
        clock.shift(20)
        assert services.lease_acquire(name="beat", holder="a", ttl_seconds=30)  # renewal
        clock.shift(20)
        assert not services.lease_acquire(name="beat", holder="b", ttl_seconds=30)

    lease = Lease.objects.get(name="beat")
    assert (lease.holder, lease.acquired_at) == ("a", NOON)


def test_a_standby_beat_takes_over_when_the_holder_stops_renewing():
    with time_machine.travel(NOON, tick=False) as clock:
        services.lease_acquire(name="beat", holder="a", ttl_seconds=30)
        clock.shift(31)
        assert services.lease_acquire(name="beat", holder="b", ttl_seconds=30)
        assert not services.lease_acquire(name="beat", holder="a", ttl_seconds=30)

    assert Lease.objects.get(name="beat").holder == "b"


def test_a_released_lease_is_taken_at_once():
    with time_machine.travel(NOON, tick=False) as clock:
        services.lease_acquire(name="beat", holder="a", ttl_seconds=30)
        services.lease_release(name="beat", holder="a")
        clock.shift(0.001)
        assert services.lease_acquire(name="beat", holder="b", ttl_seconds=30)


def test_beat_stamps_interval_jobs_with_their_window_and_crontab_jobs_with_their_minute():
    late = NOON + timedelta(seconds=7, microseconds=5)
    assert period_for(schedule(timedelta(seconds=5)), late) == "2030-05-04T12:00:05+00:00"
    assert period_for(schedule(timedelta(hours=1)), late) == "2030-05-04T12:00:00+00:00"
    assert period_for(crontab(minute="0"), late) == "2030-05-04T12:00:00+00:00"


def test_a_run_whose_worker_died_is_taken_over_once_it_is_past_every_time_limit():
    with time_machine.travel(NOON, tick=False) as clock:
        JobRun.objects.create(job="probe", period="p1", started_at=timezone.now())  # never finished
        clock.shift(60)
        assert services.job_run(job="probe", period="p1", work=dict)["skipped"]
        clock.shift(15 * 60)
        services.job_run(job="probe", period="p1", work=lambda: {"ok": 1})

    run = JobRun.objects.get(job="probe", period="p1")
    assert (run.outcome, run.attempts, run.counts) == ("succeeded", 2, {"ok": 1})
