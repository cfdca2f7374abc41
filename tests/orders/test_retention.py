"""The daily ``retention`` job (orders/retention.py) on a controlled clock: what each table loses,
what it keeps, and the proof that an email was sent outliving every follow-up that could send it
again, counted at a real SMTP server."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from config.schedules import SCHEDULES
from follow_ups.models import FollowUp
from follow_ups.services import follow_up_replay
from notifications.models import EmailDelivery, OutboxMessage
from orders import services, tasks
from orders.models import AbandonedCart, CheckoutRequest, Invoice, Order, PaymentAttempt
from orders.retention import retention_prune
from orders.selectors import order_progress
from scheduling.models import JobRun
from scheduling.services import schedules_sync
from tests.factories import ProductFactory, place_order
from tests.ledger import follow_ups_run

pytestmark = pytest.mark.django_db

DAY = datetime(2030, 5, 4, 3, 40, tzinfo=UTC)


@pytest.fixture(autouse=True)
def defaults(settings):
    """The production defaults, stated here so the test reads without settings.py."""
    settings.RETENTION_DAYS = 90
    settings.FOLLOW_UP_RETENTION_DAYS = 30
    settings.FOLLOW_UP_DEAD_RETENTION_DAYS = 365
    settings.EMAIL_DELIVERY_RETENTION_DAYS = 90
    settings.PAYMENT_ATTEMPT_RETENTION_DAYS = 180
    settings.CHECKOUT_REQUEST_RETENTION_DAYS = 7
    settings.INVOICE_PDF_RETENTION_DAYS = 0


def days_before(days: float) -> datetime:
    return DAY - timedelta(days=days)


def prune_at(moment: datetime) -> dict:
    with time_machine.travel(moment, tick=False):
        return retention_prune()


def confirmation_of(order: Order) -> FollowUp:
    return FollowUp.objects.get(key=f"order:{order.pk}:{services.CONFIRMATION_EMAIL}")


def order_confirmed(smtp, *, at: datetime) -> Order:
    """An order placed ``at``, its confirmation sent to the SMTP server then, and its other
    follow-ups recorded succeeded (they send no email)."""
    with time_machine.travel(at, tick=False):
        order = place_order((ProductFactory(), 1)).order
        (confirmation,) = follow_ups_run(kind=services.CONFIRMATION_EMAIL)
        assert confirmation.status == "succeeded"
        FollowUp.objects.filter(subject=f"order:{order.pk}").exclude(pk=confirmation.pk).update(
            status="succeeded", finished_at=at
        )
    return order


# --- The schedule ---------------------------------------------------------------------------------


def test_beat_runs_the_retention_job_daily_at_0340_utc_on_the_bulk_queue():
    schedules_sync(schedules=SCHEDULES)

    task = PeriodicTask.objects.get(name="retention")

    assert (task.task, task.queue, task.enabled) == ("orders.tasks.retention_task", "bulk", True)
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_month, str(crontab.timezone)) == (
        "40",
        "3",
        "*",
        "UTC",
    )


def test_the_job_records_its_run_with_what_each_table_lost_and_a_second_run_of_the_day_is_a_no_op():
    with time_machine.travel(days_before(31), tick=False):
        FollowUp.objects.create(key="old", kind="invoice", status="succeeded")

    with time_machine.travel(DAY, tick=False):
        first = tasks.retention_task(period=DAY.isoformat())
        second = tasks.retention_task(period=DAY.isoformat())

    assert first["follow_ups_succeeded"] == 1
    assert second == {"skipped": True, "job": "retention", "period": DAY.isoformat()}
    assert JobRun.objects.get(job="retention").counts["follow_ups_succeeded"] == 1


def test_a_run_out_of_time_says_it_is_unfinished_and_the_next_run_carries_on(settings):
    with time_machine.travel(days_before(31), tick=False):
        FollowUp.objects.create(key="old", kind="invoice", status="succeeded")
    settings.RETENTION_RUN_MAX_SECONDS = 0

    cut_short = prune_at(DAY)
    settings.RETENTION_RUN_MAX_SECONDS = 1500
    next_run = prune_at(DAY + timedelta(days=1))

    assert (cut_short["follow_ups_succeeded"], cut_short["unfinished"]) == (0, True)
    assert (next_run["follow_ups_succeeded"], next_run["unfinished"]) == (1, False)


# --- Every table at once --------------------------------------------------------------------------


def test_each_table_loses_exactly_what_is_past_its_retention():
    with time_machine.travel(days_before(200), tick=False):
        PaymentAttempt.objects.create(amount=Decimal("5"), card_last4="0002", status="declined")
        PaymentAttempt.objects.create(amount=Decimal("5"), card_last4="4242", status="voided")
        # Charged, its order never committed, its void not done yet: the money is still out.
        PaymentAttempt.objects.create(amount=Decimal("5"), card_last4="4242", status="charged")
        EmailDelivery.objects.create(
            purpose_key="old-sent", recipient="a@example.com", status="sent"
        )
        TaskResult.objects.create(task_id="old", status="SUCCESS")
        JobRun.objects.create(
            job="probe", period="old", started_at=timezone.now(), outcome="failed"
        )
        JobRun.objects.create(job="probe", period="stuck", started_at=timezone.now())
        AbandonedCart.objects.create(
            session_key="old", email="a@example.com", items={"X": 1}, touched_at=timezone.now()
        )
        OutboxMessage.objects.create(recipients="a@example.com", subject="old", body="")
        paid_long_ago = place_order((ProductFactory(), 1), idempotency_key="key-200d").order
        services.invoice_create(order=paid_long_ago)
        FollowUp.objects.filter(subject=f"order:{paid_long_ago.pk}").update(status="succeeded")
    with time_machine.travel(days_before(170), tick=False):
        PaymentAttempt.objects.create(amount=Decimal("5"), card_last4="0002", status="declined")
    with time_machine.travel(days_before(6), tick=False):
        place_order((ProductFactory(), 1), idempotency_key="key-6d")
        TaskResult.objects.create(task_id="recent", status="SUCCESS")
        EmailDelivery.objects.create(purpose_key="recent", recipient="a@example.com")

    counts = prune_at(DAY)

    assert counts == {
        # paid_long_ago's three checkout follow-ups, and its payment's void (set aside when the
        # order committed); the six-day-old order's are the oldest left.
        "follow_ups_succeeded": 4,
        "follow_ups_dead": 0,
        "email_deliveries": 1,
        "payment_attempts": 2,
        "checkout_requests": 1,
        "invoice_pdfs": 0,
        "abandoned_carts": 1,
        "job_runs": 1,
        "task_results": 1,
        "outbox_messages": 1,
        "unfinished": False,
    }
    assert set(EmailDelivery.objects.values_list("purpose_key", flat=True)) == {"recent"}
    assert sorted(PaymentAttempt.objects.values_list("status", "card_last4")) == [
        ("attached", "4242"),
        ("attached", "4242"),
        ("charged", "4242"),
        ("declined", "0002"),
    ]
    assert list(CheckoutRequest.objects.values_list("key", flat=True)) == ["key-6d"]
    # The order itself, its lines and its invoice are business records: kept.
    assert Order.objects.filter(pk=paid_long_ago.pk).exists()
    assert bytes(Invoice.objects.get(order=paid_long_ago).pdf).startswith(b"%PDF")
    assert list(JobRun.objects.values_list("period", flat=True)) == ["stuck"]
    assert list(TaskResult.objects.values_list("task_id", flat=True)) == ["recent"]


# --- The proof that an email was sent -------------------------------------------------------------


def test_a_sent_confirmations_delivery_record_outlives_its_follow_up(smtp):
    order = order_confirmed(smtp, at=days_before(31))
    delivery_key = f"order-{order.pk}-confirmation"

    counts = prune_at(DAY)

    assert counts["follow_ups_succeeded"] == 4  # its three, and its payment's void (set aside)
    assert not FollowUp.objects.exists()
    assert EmailDelivery.objects.filter(purpose_key=delivery_key, status="sent").exists()
    # Its own retention over, with no follow-up left that could send under its key, it goes.
    assert prune_at(days_before(31 - 91))["email_deliveries"] == 1
    assert len(smtp.messages) == 1


def test_an_old_confirmation_replayed_after_retention_ran_is_not_sent_a_second_time(smtp, settings):
    """Its email was sent, but the follow-up never recorded it (its worker was killed after the
    server's 250, on every attempt): a dead letter an operator may replay months later."""
    settings.EMAIL_DELIVERY_RETENTION_DAYS = 1  # shorter than anything: the code still keeps it
    order = order_confirmed(smtp, at=days_before(200))
    FollowUp.objects.filter(pk=confirmation_of(order).pk).update(status="dead", result={})
    # A newer order keeps the ledger busy: only the dead letter holds the old delivery.
    order_confirmed(smtp, at=days_before(1))

    counts = prune_at(DAY)
    with time_machine.travel(DAY, tick=False):
        assert follow_up_replay(follow_up_ids=[confirmation_of(order).pk]) == 1
        (replayed,) = follow_ups_run(kind=services.CONFIRMATION_EMAIL)

    confirmations = [m for m in smtp.messages if order.number in m["subject"]]
    assert len(confirmations) == 1
    assert (replayed.status, replayed.result["already_sent"]) == ("succeeded", True)
    # The old order's warehouse sync, invoice and payment void went; its dead letter stayed.
    assert (counts["follow_ups_succeeded"], counts["email_deliveries"]) == (3, 0)


def test_a_dead_letters_delivery_record_goes_once_the_dead_letter_is_past_its_own_retention(smtp):
    order = order_confirmed(smtp, at=days_before(366))
    FollowUp.objects.filter(pk=confirmation_of(order).pk).update(status="dead")

    counts = prune_at(DAY)

    assert (counts["follow_ups_dead"], counts["email_deliveries"]) == (1, 1)
    assert not EmailDelivery.objects.exists()


# --- What the customer sees of an old order -------------------------------------------------------


def test_an_order_whose_follow_ups_were_pruned_reads_ready_with_its_invoice_still_linked():
    with time_machine.travel(days_before(31), tick=False):
        order = place_order((ProductFactory(), 1)).order
        services.invoice_create(order=order)
        FollowUp.objects.filter(subject=f"order:{order.pk}").update(status="succeeded")
    prune_at(DAY)

    with time_machine.travel(DAY, tick=False):
        progress = order_progress(order)
        page = Client().get(f"/orders/{order.pk}/").content.decode()

    assert (progress.state, progress.in_flight, progress.follow_ups) == ("ready", False, [])
    assert [kind for kind, _ in progress.pruned_steps] == services.CHECKOUT_KINDS
    assert 'data-status="ready"' in page
    assert f'href="/orders/{order.pk}/invoice.pdf"' in page
    assert page.count('<span class="status ready">Done</span>') == 3


def test_an_invoice_pdf_dropped_by_retention_is_drawn_again_when_asked_for(settings):
    settings.INVOICE_PDF_RETENTION_DAYS = 30
    with time_machine.travel(days_before(31), tick=False):
        old = place_order((ProductFactory(), 1)).order
        services.invoice_create(order=old)
    with time_machine.travel(days_before(1), tick=False):
        recent = place_order((ProductFactory(), 1)).order
        services.invoice_create(order=recent)
    stored = bytes(Invoice.objects.get(order=recent).pdf)

    counts = prune_at(DAY)
    response = Client().get(f"/orders/{old.pk}/invoice.pdf")

    assert counts["invoice_pdfs"] == 1
    assert bytes(Invoice.objects.get(order=old).pdf) == b""
    assert bytes(Invoice.objects.get(order=recent).pdf) == stored
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
    assert response["Content-Disposition"] == f'inline; filename="invoice-{old.number}.pdf"'
