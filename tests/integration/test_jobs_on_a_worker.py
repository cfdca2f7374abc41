"""Scheduled jobs on a real worker and a real relay: a job writes follow-up rows, the worker runs
each one; one bad item never blocks the rest, and nothing is sent twice."""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_celery_results.models import TaskResult

from follow_ups.models import FollowUp, RelayState
from orders import recurring, tasks
from orders.models import AbandonedCart
from scheduling.models import JobRun
from tests.factories import ProductFactory
from tests.processes import start_relay, wait_until

pytestmark = pytest.mark.integration

REMINDER = "You left something in your cart"


@pytest.fixture
def relay(live_worker, worker_env, process_log_dir):
    """The follow-up relay as its own process, with production timings (grace, lease, checks)."""
    process = start_relay(worker_env, process_log_dir)
    yield process
    process.stop()


def settled(kind: str, count: int):
    """All ``count`` rows of ``kind`` are done, one way or the other."""
    rows = FollowUp.objects.filter(kind=kind)
    return rows.count() == count and not rows.exclude(status__in=["succeeded", "dead"]).exists()


def test_one_refused_recipient_among_100_reminders_leaves_99_sent_one_dead_letter_and_no_repeat(
    live_worker, relay, smtp_server
):
    touched = timezone.now() - timedelta(hours=settings.CART_REMINDER_AFTER_HOURS + 1)
    AbandonedCart.objects.bulk_create(
        AbandonedCart(
            session_key=f"session-{n}",
            email=f"shopper{n}@example.com",
            items={"SKU-X": 1},
            touched_at=touched,
        )
        for n in range(100)
    )
    smtp_server.refuse_recipient("shopper42@example.com", "550 5.1.1 Mailbox unavailable")

    first = tasks.cart_reminders_task(period="2030-05-04T12:10:00+00:00")
    assert (first["due"], first["follow_ups"]) == (100, 100)
    wait_until(
        lambda: settled(recurring.CART_REMINDER_EMAIL, 100),
        timeout=120,
        interval=0.5,
        message="every reminder to be sent or dead",
    )

    reminders = smtp_server.for_subject(REMINDER)
    assert len(reminders) == 99
    assert len({m["message_id"] for m in reminders}) == 99
    assert sorted(m["to"][0] for m in reminders) == sorted(
        f"shopper{n}@example.com" for n in range(100) if n != 42
    )
    (dead,) = FollowUp.objects.filter(kind=recurring.CART_REMINDER_EMAIL, status="dead")
    assert dead.payload["cart_id"] == AbandonedCart.objects.get(session_key="session-42").pk
    assert "550" in dead.last_error and dead.attempts == 1

    second_run_at = timezone.now()
    second = tasks.cart_reminders_task(period="2030-05-04T12:20:00+00:00")
    assert (second["due"], second["follow_ups"]) == (0, 0)
    # Give the relay every chance to send something again: past its grace period and a
    # lost-message check, with production timings.
    quiet_until = second_run_at + timedelta(
        seconds=settings.FOLLOW_UP_RELAY_GRACE_SECONDS + settings.FOLLOW_UP_LOST_CHECK_SECONDS
    )
    wait_until(
        lambda: (
            (state := RelayState.objects.filter(pk=1).first()) and state.ticked_at > quiet_until
        ),
        timeout=60,
        interval=0.5,
        message="the relay to tick past its grace period",
    )
    assert len(smtp_server.for_subject(REMINDER)) == 99
    assert FollowUp.objects.filter(kind=recurring.CART_REMINDER_EMAIL).count() == 100


def test_a_job_delivered_twice_for_one_period_runs_once_on_the_worker(live_worker, smtp_server):
    get_user_model().objects.create_user("ops", "ops@example.com", "x", is_staff=True)
    product = ProductFactory(name="Clay pot", stock=0)
    period = "2030-05-04T12:10:00+00:00"

    with ThreadPoolExecutor(2) as pool:
        sent = list(
            pool.map(
                lambda _: current_app.send_task(
                    "shop.tasks.low_stock_alert_task", kwargs={"period": period}
                ),
                range(2),
            )
        )

    def finished():
        rows = TaskResult.objects.filter(task_id__in=[r.id for r in sent], status="SUCCESS")
        return rows.count() == 2 and [json.loads(r) for r in rows.values_list("result", flat=True)]

    results = wait_until(finished, timeout=30, message="both deliveries to finish")
    assert sorted(bool(r.get("skipped")) for r in results) == [False, True]
    run = JobRun.objects.get(job="low-stock-alert", period=period)
    assert (run.outcome, run.counts["notified"], run.counts["emails"]) == ("succeeded", 1, 1)
    subject = f"Low stock: Clay pot ({product.sku})"
    wait_until(lambda: smtp_server.for_subject(subject), timeout=30, message="the alert email")
    assert len(smtp_server.for_subject(subject)) == 1
