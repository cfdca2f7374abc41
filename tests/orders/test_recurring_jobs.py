"""The orders' recurring and delayed jobs, run on a controlled clock: each selects what is due and
hands it to follow-up rows once, in chunks; the rows' effects are run here through the engine's
own service (tests/ledger.py), on a real worker in tests/integration/test_jobs_on_a_worker.py."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.test import Client
from django_celery_beat.models import PeriodicTask

from config.schedules import SCHEDULES
from follow_ups.models import FollowUp
from notifications.models import EmailDelivery, Unsubscribe
from orders import recurring, tasks
from orders.models import (
    AbandonedCart,
    CheckoutFailures,
    OrderShipment,
    SalesReport,
    WarehouseCursor,
)
from orders.selectors import order_progress
from orders.services import shipment_create
from scheduling.models import JobRun
from scheduling.services import schedules_sync
from tests.factories import DECLINED_CARD, GOOD_CARD, ProductFactory, place_order
from tests.ledger import follow_ups_run

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


def rows(kind: str) -> list[FollowUp]:
    return list(FollowUp.objects.filter(kind=kind).order_by("pk"))


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
    ("retention", "03:40:00", "+1 03:39:59", "+1 03:40:00"),
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


def test_cleanup_deletes_only_expired_sessions_and_finished_failure_windows():
    """What is kept for a retention period is the retention job's (tests/orders/test_retention.py)."""
    CheckoutFailures.objects.create(
        client="203.0.113.7", window_start=DAY - timedelta(days=2), failures=10
    )
    CheckoutFailures.objects.create(
        client="203.0.113.7", window_start=DAY - timedelta(minutes=10), failures=3
    )
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
        "checkout_failures": 1,
    }
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]
    assert list(CheckoutFailures.objects.values_list("failures", flat=True)) == [3]
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
    follow_ups_run(kind=recurring.SALES_REPORT_EMAIL)

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


def test_the_nightly_report_is_one_email_follow_up_per_staff_recipient(django_user_model):
    django_user_model.objects.create_user("ann", "ann@example.com", "x", is_staff=True)

    tasks.sales_report_task(period=(DAY + timedelta(hours=1)).isoformat())

    assert [(f.key, f.status) for f in rows(recurring.SALES_REPORT_EMAIL)] == [
        ("sales_report:2030-05-03:to:ann@example.com", "pending"),
        ("sales_report:2030-05-03:to:ops@example.com", "pending"),
    ]


def test_the_nightly_report_run_twice_stores_and_emails_once(mailoutbox):
    night = DAY + timedelta(hours=1, minutes=15)
    with time_machine.travel(night, tick=False):
        tasks.sales_report_task(period=night.isoformat())
        tasks.sales_report_task(period=night.isoformat())
        tasks.sales_report_task(period=None)  # by hand, the same night: no second report or email
    follow_ups_run()

    assert SalesReport.objects.count() == 1
    assert len(rows(recurring.SALES_REPORT_EMAIL)) == 1
    assert len(to(mailoutbox, "ops@example.com")) == 1


def test_a_day_without_sales_reports_zeros():
    tasks.sales_report_task(period=(DAY + timedelta(hours=1)).isoformat())

    assert SalesReport.objects.get().csv.splitlines() == [
        "sku,name,orders,units,revenue",
        "TOTAL,,0,0,0.00",
    ]


# --- Warehouse reconciliation and the review request ----------------------------------------------


@pytest.fixture
def shipped_order(warehouse):
    warehouse.configure(ship_after_seconds=0)
    recurring.warehouse_reconcile()  # the cursor past what earlier tests shipped
    order = place_order((ProductFactory(), 1), email="bo@example.com").order
    shipment_create(order=order)
    order.refresh_from_db()
    yield order
    warehouse.configure(ship_after_seconds=60)


def test_reconciliation_marks_shipped_orders_and_hands_each_its_shipped_email_once(
    shipped_order, warehouse, mailoutbox
):
    warehouse.configure(ship_after_seconds=3600)
    tasks.warehouse_reconciliation_task(period="p1")
    assert not OrderShipment.objects.exists() and rows(recurring.SHIPPED_EMAIL) == []

    warehouse.configure(ship_after_seconds=0)
    tasks.warehouse_reconciliation_task(period="p2")
    tasks.warehouse_reconciliation_task(period="p2")
    tasks.warehouse_reconciliation_task(period="p3")

    shipment = OrderShipment.objects.get(order=shipped_order)
    (follow_up,) = rows(recurring.SHIPPED_EMAIL)
    assert shipment.shipped_email_sent_at is not None  # handed to its follow-up
    assert (follow_up.key, follow_up.subject, follow_up.label) == (
        f"order:{shipped_order.pk}:shipped_email",
        f"order:{shipped_order.pk}",
        shipped_order.number,
    )
    follow_ups_run(kind=recurring.SHIPPED_EMAIL)
    (email,) = to(mailoutbox, "bo@example.com")
    assert email.subject == f"Order {shipped_order.number} has shipped"
    assert (
        EmailDelivery.objects.get(purpose_key=f"order-{shipped_order.pk}-shipped").status == "sent"
    )


def test_reconciliation_reads_a_history_longer_than_a_chunk_across_runs_and_never_twice(
    shipped_order, warehouse, settings
):
    orders = [shipped_order]
    for _ in range(6):
        order = place_order((ProductFactory(), 1)).order
        shipment_create(order=order)
        orders.append(order)
    settings.WAREHOUSE_RECONCILE_CHUNK_SIZE = 3
    settings.WAREHOUSE_RECONCILE_MAX_CHUNKS = 1
    positions = [WarehouseCursor.objects.get(feed="shipped").position]

    results = []
    for run in range(4):
        results.append(tasks.warehouse_reconciliation_task(period=f"run-{run}"))
        positions.append(WarehouseCursor.objects.get(feed="shipped").position)

    assert [(r["chunks"], r["shipped"], r["emails"]) for r in results] == [
        (1, 3, 3),
        (1, 3, 3),
        (1, 1, 1),
        (0, 0, 0),
    ]
    assert [int(p) for p in positions] == sorted(int(p) for p in positions)
    assert positions[-1] == positions[-2]  # nothing new: the cursor stays
    assert OrderShipment.objects.count() == 7
    shipped_emails = rows(recurring.SHIPPED_EMAIL)
    assert sorted(f.subject for f in shipped_emails) == sorted(f"order:{o.pk}" for o in orders)


def test_the_cursor_starts_over_from_what_was_stored_when_a_run_cannot_reach_the_warehouse(
    shipped_order, warehouse, settings
):
    before = WarehouseCursor.objects.get(feed="shipped").position
    settings.WAREHOUSE_URL = "http://127.0.0.1:9"  # nothing listens there

    with pytest.raises(Exception, match="ConnectError"):
        tasks.warehouse_reconciliation_task(period="away")
    assert WarehouseCursor.objects.get(feed="shipped").position == before

    settings.WAREHOUSE_URL = warehouse.url
    tasks.warehouse_reconciliation_task(period="back")
    assert OrderShipment.objects.filter(order=shipped_order).exists()


def test_the_shipped_email_does_not_change_whether_an_order_is_ready(shipped_order):
    FollowUp.objects.filter(subject=f"order:{shipped_order.pk}").update(status="succeeded")
    tasks.warehouse_reconciliation_task(period="p1")

    (shipped_email,) = rows(recurring.SHIPPED_EMAIL)
    assert shipped_email.status == "pending"
    assert order_progress(shipped_order).state == "ready"


def test_the_review_request_is_handed_over_once_n_days_after_shipping(
    shipped_order, warehouse, mailoutbox
):
    tasks.warehouse_reconciliation_task(period="reconcile")
    shipment = OrderShipment.objects.get(order=shipped_order)
    assert shipment.review_due_at == shipment.shipped_at + timedelta(days=7)

    with time_machine.travel(shipment.review_due_at - timedelta(minutes=1), tick=False):
        tasks.review_requests_task(period="early")
    assert rows(recurring.REVIEW_REQUEST_EMAIL) == []

    with time_machine.travel(shipment.review_due_at + timedelta(minutes=1), tick=False):
        tasks.review_requests_task(period="due")
        tasks.review_requests_task(period="due")
        tasks.review_requests_task(period="next")
    follow_ups_run(kind=recurring.SHIPPED_EMAIL)
    follow_ups_run(kind=recurring.REVIEW_REQUEST_EMAIL)

    (review_request,) = rows(recurring.REVIEW_REQUEST_EMAIL)
    assert review_request.key == f"order:{shipped_order.pk}:review_request_email"
    assert OrderShipment.objects.get(pk=shipment.pk).review_sent_at is not None
    subjects = [m.subject for m in to(mailoutbox, "bo@example.com")]
    assert subjects == [
        f"Order {shipped_order.number} has shipped",
        f"How was order {shipped_order.number}?",
    ]


# --- Abandoned-cart reminder ----------------------------------------------------------------------


def checkout_form(
    client, product, *, card_number, email="cy@example.com", remind_me=True, add=True
):
    if add:
        client.post(f"/cart/add/{product.sku}/", {"quantity": 2})
    token = client.get("/checkout/").context["form"].initial["token"]
    data = {
        "email": email,
        "name": "Cy",
        "line1": "Kerkstraat 1",
        "city": "Amsterdam",
        "postal_code": "1017 GA",
        "country": "NL",
        "card_number": card_number,
        "token": token,
    }
    if remind_me:
        data["remind_me"] = "on"
    return client.post("/checkout/", data)


def carts_due(count: int, *, email="cart{n}@example.com") -> list[AbandonedCart]:
    return AbandonedCart.objects.bulk_create(
        AbandonedCart(
            session_key=f"session-{n}",
            email=email.format(n=n),
            items={"SKU-X": 1},
            touched_at=DAY - timedelta(hours=3),
        )
        for n in range(count)
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
    assert rows(recurring.CART_REMINDER_EMAIL) == []

    with time_machine.travel(DAY + timedelta(hours=2, minutes=1), tick=False):
        first = tasks.cart_reminders_task(period="due")
        tasks.cart_reminders_task(period="due")
    with time_machine.travel(DAY + timedelta(hours=3), tick=False):
        later = tasks.cart_reminders_task(period="later")
    follow_ups_run()

    assert (first["due"], first["follow_ups"]) == (1, 1)
    assert (later["due"], later["follow_ups"]) == (0, 0)
    (follow_up,) = rows(recurring.CART_REMINDER_EMAIL)
    assert follow_up.status == "succeeded"
    (reminder,) = to(mailoutbox, "cy@example.com")
    assert reminder.subject == "You left something in your cart"
    assert "2 × Celery seeds" in reminder.body
    unsubscribe = reminder.extra_headers["List-Unsubscribe"].strip("<>")
    assert unsubscribe in reminder.body
    assert reminder.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_without_the_tick_a_failed_checkout_keeps_no_cart_and_mails_nobody(client, mailoutbox):
    product = ProductFactory()
    with time_machine.travel(DAY, tick=False):
        checkout_form(client, product, card_number=DECLINED_CARD, remind_me=False)
    assert not AbandonedCart.objects.exists()
    with time_machine.travel(DAY + timedelta(hours=3), tick=False):
        tasks.cart_reminders_task(period="due")
    follow_ups_run()
    assert mailoutbox == []


def test_the_reminder_box_is_unticked_on_a_new_checkout_form(client):
    product = ProductFactory()
    client.post(f"/cart/add/{product.sku}/", {"quantity": 1})
    page = client.get("/checkout/").content.decode()
    (box,) = [tag for tag in page.split("<input") if 'name="remind_me"' in tag]
    assert 'type="checkbox"' in box and "checked" not in box


def test_an_address_gets_one_reminder_a_week_however_many_carts_it_leaves(mailoutbox):
    carts_due(3, email="same@example.com")
    with time_machine.travel(DAY, tick=False):
        tasks.cart_reminders_task(period="due")
    follow_ups_run()
    assert len(to(mailoutbox, "same@example.com")) == 1

    # Another cart three days later: still inside the week, no reminder.
    AbandonedCart.objects.create(
        session_key="later",
        email="same@example.com",
        items={"SKU-X": 1},
        touched_at=DAY + timedelta(days=3),
    )
    with time_machine.travel(DAY + timedelta(days=3, hours=3), tick=False):
        tasks.cart_reminders_task(period="three days on")
    follow_ups_run()
    assert len(to(mailoutbox, "same@example.com")) == 1

    # Eight days on, a new cart may be reminded again.
    AbandonedCart.objects.create(
        session_key="next week",
        email="same@example.com",
        items={"SKU-X": 1},
        touched_at=DAY + timedelta(days=8),
    )
    with time_machine.travel(DAY + timedelta(days=8, hours=3), tick=False):
        tasks.cart_reminders_task(period="next week")
    follow_ups_run()
    assert len(to(mailoutbox, "same@example.com")) == 2


def test_an_address_is_reminded_once_a_week_even_when_its_reminded_cart_is_gone(mailoutbox):
    """The cart that was reminded is forgotten when its session unticks the box (or orders), and a
    new cart for the address is left: the week still counts from the reminder that went out, across
    the period's calendar boundary."""
    week = timedelta(days=7)  # CART_REMINDER_PERIOD_DAYS
    boundary = datetime.fromtimestamp(
        (DAY.timestamp() // week.total_seconds() + 1) * week.total_seconds(), tz=UTC
    )

    def leave_a_cart(session_key: str, at: datetime) -> None:
        AbandonedCart.objects.create(
            session_key=session_key, email="eve@example.com", items={"SKU-X": 1}, touched_at=at
        )

    def remind(at: datetime) -> dict:
        with time_machine.travel(at, tick=False):
            result = tasks.cart_reminders_task(period=at.isoformat())
            follow_ups_run()
        return result

    leave_a_cart("first", boundary - timedelta(days=1, hours=3))
    assert remind(boundary - timedelta(days=1))["follow_ups"] == 1
    recurring.abandoned_cart_forget(session_key="first")  # the box unticked in that session
    leave_a_cart("second", boundary - timedelta(hours=3))

    assert remind(boundary + timedelta(days=1))["follow_ups"] == 0  # two days after the first
    assert len(to(mailoutbox, "eve@example.com")) == 1
    # A week after the first reminder, the cart left since may be reminded.
    assert remind(boundary + timedelta(days=6, hours=1))["follow_ups"] == 1
    assert len(to(mailoutbox, "eve@example.com")) == 2


def test_the_unsubscribe_link_works_in_one_click_and_stops_reminders(client, mailoutbox):
    (cart,) = carts_due(1, email="Dee@Example.com")
    with time_machine.travel(DAY, tick=False):
        tasks.cart_reminders_task(period="due")
    follow_ups_run()
    (reminder,) = mailoutbox
    path = reminder.extra_headers["List-Unsubscribe"].strip("<>").split("://", 1)[1]
    path = path[path.index("/") :]

    asked = client.get(path)  # a link scanner's GET unsubscribes nobody
    assert asked.status_code == 200 and b"Stop reminder emails" in asked.content
    assert not Unsubscribe.objects.exists()
    # RFC 8058: the mailbox provider POSTs, without a CSRF token.
    csrf_client = Client(enforce_csrf_checks=True)
    done = csrf_client.post(path, {"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and b"no more reminder emails" in done.content
    assert Unsubscribe.objects.get().email == "dee@example.com"

    AbandonedCart.objects.create(
        session_key="again",
        email="dee@example.com",
        items={"SKU-X": 1},
        touched_at=DAY + timedelta(days=10),
    )
    with time_machine.travel(DAY + timedelta(days=10, hours=3), tick=False):
        result = tasks.cart_reminders_task(period="later")
    assert result["follow_ups"] == 0
    assert len(mailoutbox) == 1


def test_a_forged_unsubscribe_token_is_refused(client):
    response = client.post("/email/unsubscribe/ZGVlQGV4YW1wbGUuY29t:forged/")
    assert response.status_code == 400
    assert not Unsubscribe.objects.exists()


def test_a_reminder_run_makes_one_row_per_due_cart_and_marks_each_cart():
    carts_due(5)
    AbandonedCart.objects.create(
        session_key="fresh", email="fresh@example.com", items={}, touched_at=DAY
    )

    with time_machine.travel(DAY, tick=False):
        result = tasks.cart_reminders_task(period="due")

    assert (result["due"], result["follow_ups"]) == (5, 5)
    assert set(
        AbandonedCart.objects.filter(reminded_at__isnull=False).values_list(
            "session_key", flat=True
        )
    ) == {f"session-{n}" for n in range(5)}
    assert {f.payload["cart_id"] for f in rows(recurring.CART_REMINDER_EMAIL)} == set(
        AbandonedCart.objects.exclude(session_key="fresh").values_list("pk", flat=True)
    )


def test_reminders_are_handed_over_in_chunks_past_the_chunk_size(settings):
    settings.JOB_CHUNK_SIZE = 3
    carts_due(8)

    with time_machine.travel(DAY, tick=False):
        result = recurring.cart_reminders_create()
        again = recurring.cart_reminders_create()

    assert (result["due"], result["follow_ups"]) == (8, 8)
    assert (again["due"], again["follow_ups"]) == (0, 0)
    assert not AbandonedCart.objects.filter(reminded_at__isnull=True).exists()
    assert len({f.key for f in rows(recurring.CART_REMINDER_EMAIL)}) == 8


def test_one_refused_address_spares_every_other_reminder(smtp):
    carts_due(4)
    smtp.refuse_recipient("cart1@example.com")

    with time_machine.travel(DAY, tick=False):
        tasks.cart_reminders_task(period="due")
    outcomes = {f.payload["cart_id"]: f.status for f in follow_ups_run()}

    refused = AbandonedCart.objects.get(email="cart1@example.com")
    assert outcomes.pop(refused.pk) == "dead"
    assert set(outcomes.values()) == {"succeeded"}
    assert sorted(m["to"][0] for m in smtp.messages) == [
        "cart0@example.com",
        "cart2@example.com",
        "cart3@example.com",
    ]


def test_a_cart_that_became_an_order_gets_no_reminder(client, mailoutbox):
    product = ProductFactory()
    with time_machine.travel(DAY, tick=False):
        checkout_form(client, product, card_number=DECLINED_CARD)
        assert AbandonedCart.objects.exists()
        checkout_form(client, product, card_number=GOOD_CARD)

    with time_machine.travel(DAY + timedelta(hours=3), tick=False):
        tasks.cart_reminders_task(period="due")

    assert not AbandonedCart.objects.exists()
    assert rows(recurring.CART_REMINDER_EMAIL) == []
    assert to(mailoutbox, "cy@example.com") == []


def test_a_cart_ordered_after_its_reminder_was_handed_over_is_not_reminded(mailoutbox):
    (cart,) = carts_due(1)
    with time_machine.travel(DAY, tick=False):
        tasks.cart_reminders_task(period="due")
    recurring.abandoned_cart_forget(session_key=cart.session_key)

    (follow_up,) = follow_ups_run()

    assert (follow_up.status, follow_up.result) == ("succeeded", {"skipped": "cart gone"})
    assert mailoutbox == []
