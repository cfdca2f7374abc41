"""The recurring and delayed jobs, run on a controlled clock: each does its work once, on time."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from config.schedules import SCHEDULES
from follow_ups.models import DeadLetterNotice, FollowUp
from notifications.models import EmailDelivery
from orders import tasks
from orders.jobs import schedules_sync
from orders.models import (
    AbandonedCart,
    JobRun,
    LowStockAlert,
    OrderShipment,
    SalesReport,
)
from orders.services import shipment_create
from shop.models import Product
from tests.factories import DECLINED_CARD, GOOD_CARD, ProductFactory, place_order

pytestmark = pytest.mark.django_db

DAY = datetime(2030, 5, 4, tzinfo=UTC)


@pytest.fixture(autouse=True)
def staff(settings):
    settings.STAFF_EMAILS = ["ops@example.com"]
    settings.LOW_STOCK_THRESHOLD = 5
    settings.CART_REMINDER_AFTER_HOURS = 2
    settings.REVIEW_REQUEST_AFTER_DAYS = 7
    settings.RETENTION_DAYS = 30


def to(mailoutbox, address):
    return [m for m in mailoutbox if m.to == [address]]


# --- When each schedule fires ---------------------------------------------------------------------

# (name, last run, a moment it is not yet due, a moment it is due) — all UTC.
FIRES = [
    ("cleanup", "12:07:00", "13:06:59", "13:07:00"),
    ("sales-report", "01:15:00", "+1 01:14:59", "+1 01:15:00"),
    ("low-stock-alert", "12:00:00", "12:09:59", "12:10:00"),
    ("dead-letter-digest", "12:00:00", "12:59:59", "13:00:00"),
    ("warehouse-reconciliation", "12:05:00", "12:09:59", "12:10:00"),
    ("cart-reminders", "12:10:00", "12:19:59", "12:20:00"),
    ("review-requests", "12:30:00", "13:29:59", "13:30:00"),
    ("ops-queue-sample", "12:00:00", "12:00:29", "12:00:30"),
]


def at(text: str) -> datetime:
    days, _, clock = text.rpartition(" ")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return DAY + timedelta(days=int(days or 0), hours=hours, minutes=minutes, seconds=seconds)


def test_every_schedule_in_code_has_a_firing_time_checked_here():
    assert {name for name, *_ in FIRES} == {schedule.name for schedule in SCHEDULES}


@pytest.mark.parametrize(("name", "last_run", "not_yet", "due"), FIRES)
def test_each_schedule_fires_when_due_in_utc_and_not_before(name, last_run, not_yet, due):
    schedules_sync(schedules=SCHEDULES)
    entry = PeriodicTask.objects.get(name=name).schedule

    with time_machine.travel(at(not_yet), tick=False):
        assert not entry.is_due(at(last_run)).is_due
    with time_machine.travel(at(due), tick=False):
        assert entry.is_due(at(last_run)).is_due


# --- Cleanup --------------------------------------------------------------------------------------


def test_cleanup_deletes_only_what_is_past_expiry_or_retention():
    with time_machine.travel(DAY - timedelta(days=31), tick=False):
        TaskResult.objects.create(task_id="old", status="SUCCESS")
        EmailDelivery.objects.create(purpose_key="old", recipient="a@example.com", status="sent")
        EmailDelivery.objects.create(
            purpose_key="old-failed", recipient="a@example.com", status="failed"
        )
        JobRun.objects.create(
            job="probe", period="old", started_at=timezone.now(), outcome="succeeded"
        )
        AbandonedCart.objects.create(
            session_key="old", email="a@example.com", items={"X": 1}, touched_at=timezone.now()
        )
    with time_machine.travel(DAY - timedelta(days=29), tick=False):
        TaskResult.objects.create(task_id="recent", status="SUCCESS")
        EmailDelivery.objects.create(purpose_key="recent", recipient="a@example.com", status="sent")
    expired = SessionStore()
    expired.set_expiry(60)
    with time_machine.travel(DAY - timedelta(minutes=2), tick=False):
        expired.create()
    live = SessionStore()
    with time_machine.travel(DAY, tick=False):
        live.create()

        result = tasks.cleanup_task(period=DAY.isoformat())

    assert result == {
        "job": "cleanup",
        "period": DAY.isoformat(),
        "sessions": 1,
        "task_results": 1,
        "email_deliveries": 1,
        "job_runs": 1,
        "abandoned_carts": 1,
    }
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]
    assert list(TaskResult.objects.values_list("task_id", flat=True)) == ["recent"]
    assert set(EmailDelivery.objects.values_list("purpose_key", flat=True)) == {
        "old-failed",
        "recent",
    }
    assert JobRun.objects.get(job="cleanup").counts["sessions"] == 1


# --- Nightly sales report -------------------------------------------------------------------------


def test_the_nightly_report_is_yesterdays_sales_per_product_row_by_row(mailoutbox):
    seeds = ProductFactory(sku="SEED-A", name="Celery seeds", price="3.50")
    pot = ProductFactory(sku="POT-B", name="Clay pot", price="12.00")
    with time_machine.travel(DAY - timedelta(seconds=1), tick=False):
        place_order((seeds, 9))  # the day before: not in the report
    with time_machine.travel(DAY, tick=False):
        place_order((seeds, 2), (pot, 1))
    with time_machine.travel(DAY + timedelta(hours=23, minutes=59), tick=False):
        place_order((seeds, 1))
    with time_machine.travel(DAY + timedelta(days=1), tick=False):
        place_order((pot, 5))  # the day after: not in the report

    with time_machine.travel(DAY + timedelta(days=1, hours=1, minutes=15), tick=False):
        tasks.sales_report_task(period=(DAY + timedelta(days=1, hours=1, minutes=15)).isoformat())

    report = SalesReport.objects.get()
    assert report.day == DAY.date()
    assert list(csv.reader(io.StringIO(report.csv))) == [
        ["sku", "name", "orders", "units", "revenue"],
        ["POT-B", "Clay pot", "1", "1", "12.00"],
        ["SEED-A", "Celery seeds", "2", "3", "10.50"],
        ["TOTAL", "", "2", "4", "22.50"],
    ]
    (email,) = to(mailoutbox, "ops@example.com")
    assert "2030-05-04" in email.subject and "22.50" in email.subject
    assert report.csv in email.body


def test_the_nightly_report_run_twice_stores_and_emails_once(mailoutbox):
    night = DAY + timedelta(hours=1, minutes=15)
    with time_machine.travel(night, tick=False):
        tasks.sales_report_task(period=night.isoformat())
        tasks.sales_report_task(period=night.isoformat())
        tasks.sales_report_task(period=None)  # by hand, the same night: no second report or email

    assert SalesReport.objects.count() == 1
    assert len(to(mailoutbox, "ops@example.com")) == 1


def test_a_day_without_sales_reports_zeros():
    tasks.sales_report_task(period=(DAY + timedelta(hours=1)).isoformat())

    assert SalesReport.objects.get().csv.splitlines() == [
        "sku,name,orders,units,revenue",
        "TOTAL,,0,0,0.00",
    ]


# --- Low-stock alert ------------------------------------------------------------------------------


def test_low_stock_alerts_staff_once_per_crossing_below_the_threshold(mailoutbox):
    product = ProductFactory(name="Celery seeds", stock=6)
    ProductFactory(stock=50)

    tasks.low_stock_alert_task(period="p1")
    assert mailoutbox == []

    place_order((product, 2))  # 4 left: under 5
    tasks.low_stock_alert_task(period="p2")
    tasks.low_stock_alert_task(period="p3")
    place_order((product, 1))  # still under: no second email
    tasks.low_stock_alert_task(period="p4")
    assert [m.subject for m in mailoutbox] == [f"Low stock: Celery seeds ({product.sku})"]
    assert "down to 4" in mailoutbox[0].body

    Product.objects.filter(pk=product.pk).update(stock=20)  # restocked
    tasks.low_stock_alert_task(period="p5")
    place_order((product, 17))  # crosses again
    tasks.low_stock_alert_task(period="p6")

    assert len(mailoutbox) == 2
    assert LowStockAlert.objects.filter(product=product).count() == 2
    assert LowStockAlert.objects.filter(product=product, resolved_at__isnull=True).count() == 1


# --- Dead-letter digest ---------------------------------------------------------------------------


def kill(order, kind: str, error: str) -> None:
    FollowUp.objects.filter(label=order.number, kind=kind).update(status="dead", last_error=error)


def test_the_digest_lists_each_new_dead_letter_once(mailoutbox):
    first = place_order((ProductFactory(), 1)).order
    second = place_order((ProductFactory(), 1)).order
    kill(first, "warehouse_sync", "HTTP 422: address cannot be delivered to")

    tasks.dead_letter_digest_task(period="2030-05-04T12:00")
    tasks.dead_letter_digest_task(period="2030-05-04T12:00")  # the same hour again: nothing new
    tasks.dead_letter_digest_task(period="2030-05-04T13:00")  # nothing died since: no email
    kill(second, "invoice", "ValueError: bad font")
    tasks.dead_letter_digest_task(period="2030-05-04T14:00")

    first_digest, second_digest = to(mailoutbox, "ops@example.com")
    assert first.number in first_digest.body and "HTTP 422" in first_digest.body
    assert second.number not in first_digest.body
    assert second.number in second_digest.body and first.number not in second_digest.body
    assert DeadLetterNotice.objects.count() == 2


# --- Warehouse reconciliation and the review request ----------------------------------------------


@pytest.fixture
def shipped_order(warehouse):
    order = place_order((ProductFactory(), 1), email="bo@example.com").order
    shipment_create(order=order)
    order.refresh_from_db()
    yield order
    warehouse.configure(ship_after_seconds=60)


def test_reconciliation_marks_shipped_orders_and_emails_the_customer_once(
    shipped_order, warehouse, mailoutbox
):
    warehouse.configure(ship_after_seconds=3600)
    tasks.warehouse_reconciliation_task(period="p1")
    assert not OrderShipment.objects.exists() and mailoutbox == []

    warehouse.configure(ship_after_seconds=0)
    tasks.warehouse_reconciliation_task(period="p2")
    tasks.warehouse_reconciliation_task(period="p2")
    tasks.warehouse_reconciliation_task(period="p3")

    shipment = OrderShipment.objects.get(order=shipped_order)
    assert shipment.shipped_email_sent_at is not None
    (email,) = to(mailoutbox, "bo@example.com")
    assert email.subject == f"Order {shipped_order.number} has shipped"
    assert (
        EmailDelivery.objects.get(purpose_key=f"order-{shipped_order.pk}-shipped").status == "sent"
    )


def test_the_review_request_is_sent_once_n_days_after_shipping(
    shipped_order, warehouse, mailoutbox
):
    warehouse.configure(ship_after_seconds=0)
    tasks.warehouse_reconciliation_task(period="reconcile")
    shipment = OrderShipment.objects.get(order=shipped_order)
    assert shipment.review_due_at == shipment.shipped_at + timedelta(days=7)

    with time_machine.travel(shipment.review_due_at - timedelta(minutes=1), tick=False):
        tasks.review_requests_task(period="early")
    assert len(to(mailoutbox, "bo@example.com")) == 1  # only the "shipped" email

    with time_machine.travel(shipment.review_due_at + timedelta(minutes=1), tick=False):
        tasks.review_requests_task(period="due")
        tasks.review_requests_task(period="due")
        tasks.review_requests_task(period="next")

    subjects = [m.subject for m in to(mailoutbox, "bo@example.com")]
    assert subjects == [
        f"Order {shipped_order.number} has shipped",
        f"How was order {shipped_order.number}?",
    ]


# --- Abandoned-cart reminder ----------------------------------------------------------------------


def checkout_form(client, product, *, card_number, email="cy@example.com") -> None:
    client.post(f"/cart/add/{product.sku}/", {"quantity": 2})
    token = client.get("/checkout/").context["form"].initial["token"]
    client.post(
        "/checkout/",
        {
            "email": email,
            "name": "Cy",
            "line1": "Kerkstraat 1",
            "city": "Amsterdam",
            "postal_code": "1017 GA",
            "country": "NL",
            "card_number": card_number,
            "token": token,
        },
    )


def test_a_cart_untouched_for_two_hours_gets_one_reminder_even_when_the_job_runs_twice(
    client, mailoutbox
):
    product = ProductFactory(name="Celery seeds")
    with time_machine.travel(DAY, tick=False):
        checkout_form(client, product, card_number=DECLINED_CARD)  # email known, no order
    cart = AbandonedCart.objects.get()
    assert (cart.email, cart.items) == ("cy@example.com", {product.sku: 2})

    with time_machine.travel(DAY + timedelta(hours=1, minutes=59), tick=False):
        tasks.cart_reminders_task(period="early")
    assert mailoutbox == []

    with time_machine.travel(DAY + timedelta(hours=2, minutes=1), tick=False):
        tasks.cart_reminders_task(period="due")
        tasks.cart_reminders_task(period="due")
    with time_machine.travel(DAY + timedelta(hours=3), tick=False):
        tasks.cart_reminders_task(period="later")

    (reminder,) = to(mailoutbox, "cy@example.com")
    assert reminder.subject == "You left something in your cart"
    assert "2 × Celery seeds" in reminder.body


def test_a_cart_that_became_an_order_gets_no_reminder(client, mailoutbox):
    product = ProductFactory()
    with time_machine.travel(DAY, tick=False):
        checkout_form(client, product, card_number=DECLINED_CARD)
        assert AbandonedCart.objects.exists()
        checkout_form(client, product, card_number=GOOD_CARD)

    with time_machine.travel(DAY + timedelta(hours=3), tick=False):
        tasks.cart_reminders_task(period="due")

    assert not AbandonedCart.objects.exists()
    assert to(mailoutbox, "cy@example.com") == []
