"""Schedules are defined in code, synced to the beat tables idempotently, and admin edits survive."""

import pytest
from django.conf import settings
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from config.schedules import SCHEDULES, Schedule
from scheduling.models import JobRun
from scheduling.services import job_run, schedules_sync

pytestmark = pytest.mark.django_db


def sync(**kwargs):
    return schedules_sync(schedules=SCHEDULES, **kwargs)


def test_every_schedule_in_code_becomes_one_enabled_periodic_task_with_expiry_and_queue():
    sync()

    tasks = {task.name: task for task in PeriodicTask.objects.all()}
    assert set(tasks) == {schedule.name for schedule in SCHEDULES}
    for schedule in SCHEDULES:
        task = tasks[schedule.name]
        assert task.task == schedule.task
        assert task.queue == schedule.queue
        assert task.enabled
        assert task.expire_seconds == schedule.expires > 0
        assert settings.CELERY_TASK_ROUTES[schedule.task] == {"queue": schedule.queue}
        if schedule.cron:
            assert str(task.crontab.timezone) == "UTC"


def test_every_scheduled_task_is_one_a_worker_knows():
    from config.celery import app

    app.loader.import_default_modules()
    assert {schedule.task for schedule in SCHEDULES} <= set(app.tasks)
    assert settings.CELERY_BEAT_SCHEDULE == {}  # nothing for beat to overwrite the table with


def test_the_relay_is_its_own_process_not_a_beat_schedule():
    sync()

    assert "follow-up-relay" not in {schedule.name for schedule in SCHEDULES}
    assert not PeriodicTask.objects.filter(task__icontains="relay").exists()


def test_the_beat_relay_schedule_of_an_earlier_release_is_removed_by_the_next_sync():
    """A database synced before the relay became a process holds its periodic task: beat would
    keep sending a task no worker has any more."""
    retired = Schedule(
        name="follow-up-relay",
        task="orders.tasks.follow_up_relay_task",
        queue="critical",
        every=5,
        expires=5,
        run_key=False,
        description="Re-publish follow-ups whose publish was lost, or whose worker died.",
    )
    schedules_sync(schedules=[*SCHEDULES, retired])

    report = sync()

    assert report.removed == ["follow-up-relay"]
    assert not PeriodicTask.objects.filter(name="follow-up-relay").exists()


def test_syncing_twice_changes_nothing_the_second_time():
    first = sync()
    before = list(PeriodicTask.objects.order_by("name").values())

    second = sync()

    assert len(first.created) == len(SCHEDULES)
    assert second.unchanged == [schedule.name for schedule in SCHEDULES]
    assert second.created == second.updated == second.kept_admin_edits == []
    assert list(PeriodicTask.objects.order_by("name").values()) == before


def test_a_schedule_edited_in_the_admin_is_kept_and_reported():
    sync()
    cleanup = PeriodicTask.objects.get(name="cleanup")
    cleanup.crontab, _ = CrontabSchedule.objects.get_or_create(minute="45", hour="*/2")
    cleanup.save()

    report = sync()

    assert report.kept_admin_edits == ["cleanup"]
    assert PeriodicTask.objects.get(name="cleanup").crontab.minute == "45"


def test_the_command_warns_about_admin_edits_and_force_overwrites_them(capsys):
    call_command("sync_schedules")
    PeriodicTask.objects.filter(name="cleanup").update(enabled=False)

    call_command("sync_schedules")
    assert "kept admin edits: cleanup" in capsys.readouterr().out
    assert not PeriodicTask.objects.get(name="cleanup").enabled

    call_command("sync_schedules", "--force")
    assert PeriodicTask.objects.get(name="cleanup").enabled


def test_a_code_change_is_applied_to_a_row_nobody_edited():
    sync()
    changed = [
        Schedule(**{**schedule.__dict__, "expires": 99}) if schedule.name == "cleanup" else schedule
        for schedule in SCHEDULES
    ]

    report = schedules_sync(schedules=changed)

    assert report.updated == ["cleanup"]
    assert PeriodicTask.objects.get(name="cleanup").expire_seconds == 99


def test_a_schedule_removed_from_code_is_removed_from_the_table():
    sync()

    report = schedules_sync(schedules=[s for s in SCHEDULES if s.name != "review-requests"])

    assert report.removed == ["review-requests"]
    assert not PeriodicTask.objects.filter(name="review-requests").exists()


def test_a_row_written_before_the_first_sync_is_adopted_and_updated():
    """Rows the old settings-based schedule left behind become the code's, not duplicates."""
    every_minute, _ = IntervalSchedule.objects.get_or_create(
        every=60, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.create(
        name="ops-queue-sample", task="ops.tasks.queue_sample_task", interval=every_minute
    )

    report = sync()

    assert "ops-queue-sample" in report.updated
    sample = PeriodicTask.objects.get(name="ops-queue-sample")
    assert (sample.queue, sample.interval.every) == ("critical", 30)


def test_periodic_tasks_and_job_runs_are_shown_in_the_admin_with_their_errors(admin_client):
    sync()
    job_run(job="cleanup", period="2030-05-04T12:07:00+00:00", work=lambda: {"sessions": 3})
    with pytest.raises(ValueError):
        job_run(job="cleanup", period="2030-05-04T13:07:00+00:00", work=lambda: int("x"))

    runs = admin_client.get("/admin/scheduling/jobrun/")
    assert runs.status_code == 200
    assert b"2030-05-04T12:07:00+00:00" in runs.content and b"succeeded" in runs.content
    assert b"ValueError: invalid literal for int()" in runs.content
    failed = JobRun.objects.get(period="2030-05-04T13:07:00+00:00")
    detail = admin_client.get(f"/admin/scheduling/jobrun/{failed.pk}/change/")
    assert b"ValueError: invalid literal for int() with base 10: &#x27;x&#x27;" in detail.content
    assert admin_client.get("/admin/django_celery_beat/periodictask/").status_code == 200
    assert admin_client.get("/admin/scheduling/lease/").status_code == 200
    for model in ["salesreport", "ordershipment", "abandonedcart"]:
        assert admin_client.get(f"/admin/orders/{model}/").status_code == 200
    assert admin_client.get("/admin/shop/lowstockalert/").status_code == 200
