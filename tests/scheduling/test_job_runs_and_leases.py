"""Exactly one run per period: the beat lease, the per-period run key, and the period beat stamps."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from celery.schedules import crontab, schedule
from django.db.models import F
from django.utils import timezone

from scheduling import clock, services
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


def age_lease(name: str, seconds: float) -> None:
    """Move the lease's times back, as if ``seconds`` had passed on the database's clock."""
    Lease.objects.filter(name=name).update(
        acquired_at=F("acquired_at") - timedelta(seconds=seconds),
        expires_at=F("expires_at") - timedelta(seconds=seconds),
    )


def test_only_one_beat_holds_the_lease_while_it_renews_it():
    assert services.lease_acquire(name="beat", holder="a", ttl_seconds=30)
    assert not services.lease_acquire(name="beat", holder="b", ttl_seconds=30)
    age_lease("beat", 20)
    acquired_at = Lease.objects.get(name="beat").acquired_at
    assert services.lease_acquire(name="beat", holder="a", ttl_seconds=30)  # renewal
    age_lease("beat", 20)
    assert not services.lease_acquire(name="beat", holder="b", ttl_seconds=30)

    lease = Lease.objects.get(name="beat")
    assert lease.holder == "a"
    assert lease.acquired_at == acquired_at - timedelta(seconds=20)  # a renewal keeps it


def test_a_standby_beat_takes_over_when_the_holder_stops_renewing():
    services.lease_acquire(name="beat", holder="a", ttl_seconds=30)
    age_lease("beat", 31)
    assert services.lease_acquire(name="beat", holder="b", ttl_seconds=30)
    assert not services.lease_acquire(name="beat", holder="a", ttl_seconds=30)

    assert Lease.objects.get(name="beat").holder == "b"


@pytest.mark.parametrize("minutes", [15, -15])
def test_a_holder_whose_clock_is_off_judges_the_lease_by_the_databases_clock(minutes):
    # Leases compare the database's time: a standby whose clock runs 15 minutes ahead does not
    # take a lease renewed a moment ago, and one 15 minutes behind takes a lapsed one.
    clock.forget()
    services.lease_acquire(name="beat", holder="a", ttl_seconds=30)
    with time_machine.travel(timezone.now() + timedelta(minutes=minutes)):
        assert not services.lease_acquire(name="beat", holder="b", ttl_seconds=30)
        age_lease("beat", 31)
        assert services.lease_acquire(name="beat", holder="b", ttl_seconds=30)
    assert Lease.objects.get(name="beat").holder == "b"


def test_a_released_lease_is_taken_at_once():
    services.lease_acquire(name="beat", holder="a", ttl_seconds=30)
    services.lease_release(name="beat", holder="a")
    assert services.lease_acquire(name="beat", holder="b", ttl_seconds=30)


def test_beat_stamps_interval_jobs_with_their_window_and_crontab_jobs_with_their_minute():
    late = NOON + timedelta(seconds=7, microseconds=5)
    assert period_for(schedule(timedelta(seconds=5)), late) == "2030-05-04T12:00:05+00:00"
    assert period_for(schedule(timedelta(hours=1)), late) == "2030-05-04T12:00:00+00:00"
    assert period_for(crontab(minute="0"), late) == "2030-05-04T12:00:00+00:00"


def test_a_run_whose_worker_died_is_taken_over_once_it_is_past_every_time_limit():
    run = JobRun.objects.create(  # never finished
        job="probe", period="p1", started_at=timezone.now() - timedelta(seconds=60)
    )
    assert services.job_run(job="probe", period="p1", work=dict)["skipped"]
    JobRun.objects.filter(pk=run.pk).update(started_at=F("started_at") - timedelta(minutes=15))
    services.job_run(job="probe", period="p1", work=lambda: {"ok": 1})

    run = JobRun.objects.get(job="probe", period="p1")
    assert (run.outcome, run.attempts, run.counts) == ("succeeded", 2, {"ok": 1})
