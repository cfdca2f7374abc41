"""Settings that safety depends on: JSON only, acks late, Redis visibility above every delay, auth."""

import json
import os
import subprocess

import pytest
from django.conf import settings

from tests.processes import BIN, REPO


def settings_under(env: dict[str, str], *names: str) -> dict:
    """Read settings in a fresh interpreter with ``env``, as a process started with it would."""
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {list(names)!r}}}, default=str))"
    )
    result = subprocess.run(
        [str(BIN / "python"), "-c", code],
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def test_only_json_crosses_the_broker():
    assert settings.CELERY_ACCEPT_CONTENT == ["json"]
    assert settings.CELERY_TASK_SERIALIZER == settings.CELERY_RESULT_SERIALIZER == "json"


def test_tasks_are_acknowledged_after_they_finish_and_requeued_when_a_worker_dies():
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_TASK_SOFT_TIME_LIMIT < settings.CELERY_TASK_TIME_LIMIT


def test_with_redis_the_visibility_timeout_outlasts_every_task():
    """Retries wait in the database, not in the broker, so the longest task is what counts."""
    values = settings_under(
        {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"},
        "CELERY_BROKER_TRANSPORT_OPTIONS",
        "CELERY_TASK_TIME_LIMIT",
    )
    visibility = values["CELERY_BROKER_TRANSPORT_OPTIONS"]["visibility_timeout"]
    assert visibility > values["CELERY_TASK_TIME_LIMIT"]


def test_every_order_follow_up_is_declared_on_its_urgency_queue():
    from follow_ups.registry import kind_get
    from orders.services import CHECKOUT_KINDS

    assert {kind: kind_get(kind).queue for kind in CHECKOUT_KINDS} == {
        "confirmation_email": "critical",
        "warehouse_sync": "default",
        "invoice": "bulk",
    }
    assert {kind_get(kind).queue for kind in CHECKOUT_KINDS} <= {
        queue.name for queue in settings.CELERY_TASK_QUEUES
    }


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/admin/", "/admin/orders/order/", "/admin/follow_ups/followup/"])
def test_the_admin_demands_a_staff_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_tests_run_with_every_recovery_timing_of_production():
    """Only the retry backoff is shortened: leases, the relay's grace and lost-message checks and
    the time limits are what production runs, so the crash tests prove production's behaviour."""
    timings = (
        "FOLLOW_UP_LEASE_SECONDS",
        "FOLLOW_UP_RELAY_INTERVAL_SECONDS",
        "FOLLOW_UP_RELAY_LEASE_SECONDS",
        "FOLLOW_UP_RELAY_GRACE_SECONDS",
        "FOLLOW_UP_LOST_AFTER_SECONDS",
        "FOLLOW_UP_LOST_CHECK_SECONDS",
        "CELERY_TASK_SOFT_TIME_LIMIT",
        "CELERY_TASK_TIME_LIMIT",
    )

    production = settings_under({}, *timings)
    tests = settings_under({"DJANGO_SETTINGS_MODULE": "config.settings_test"}, *timings)

    assert tests == production


def refusal_under(env: dict[str, str]) -> str:
    """The last line a process started with ``env`` prints when it refuses to start."""
    result = subprocess.run(
        [str(BIN / "python"), "-c", "import django; django.setup()"],
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


def test_retention_defaults_keep_delivery_logs_longer_than_follow_ups_and_invoices_for_ever():
    days = settings_under(
        {},
        "RETENTION_DAYS",
        "FOLLOW_UP_RETENTION_DAYS",
        "FOLLOW_UP_DEAD_RETENTION_DAYS",
        "EMAIL_DELIVERY_RETENTION_DAYS",
        "PAYMENT_ATTEMPT_RETENTION_DAYS",
        "CHECKOUT_REQUEST_RETENTION_DAYS",
        "INVOICE_PDF_RETENTION_DAYS",
        "RETENTION_CHUNK_SIZE",
    )

    assert days == {
        "RETENTION_DAYS": 90,
        "FOLLOW_UP_RETENTION_DAYS": 30,
        "FOLLOW_UP_DEAD_RETENTION_DAYS": 365,
        "EMAIL_DELIVERY_RETENTION_DAYS": 90,
        "PAYMENT_ATTEMPT_RETENTION_DAYS": 180,
        "CHECKOUT_REQUEST_RETENTION_DAYS": 7,
        "INVOICE_PDF_RETENTION_DAYS": 0,
        "RETENTION_CHUNK_SIZE": 1000,
    }


def test_a_follow_up_retention_shorter_than_the_cart_reminder_period_is_refused_at_start():
    line = refusal_under({"FOLLOW_UP_RETENTION_DAYS": "3"})

    assert line.endswith(
        "FOLLOW_UP_RETENTION_DAYS (3) must be at least CART_REMINDER_PERIOD_DAYS (7): the "
        "reminders read the ledger to send one per address per period."
    )


def test_a_negative_retention_is_refused_at_start_naming_the_setting():
    line = refusal_under({"EMAIL_DELIVERY_RETENTION_DAYS": "-1"})

    assert line.endswith(
        "EMAIL_DELIVERY_RETENTION_DAYS must be a number of days, or 0 to keep for ever."
    )
