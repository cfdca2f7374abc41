"""The follow-up services and the claim: each effect happens once, however often it runs."""

import io
from datetime import timedelta

import pytest
from django.utils import timezone
from pypdf import PdfReader

from notifications.models import EmailDelivery
from notifications.services import EmailPermanentFailure, EmailTemporaryFailure
from orders import services
from orders.models import FollowUp, Invoice, Order
from orders.warehouse import WarehouseRejected, WarehouseUnavailable
from tests.factories import ProductFactory, place_order

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp(smtp_server, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    smtp_server.clear()
    return smtp_server


@pytest.fixture
def order():
    return place_order((ProductFactory(name="Celery seeds", price="3.50"), 2)).order


def test_confirmation_email_is_sent_once_however_often_it_runs(smtp, order):
    first = services.confirmation_email_send(order=order)
    second = services.confirmation_email_send(order=order)

    assert first["already_sent"] is False and second["already_sent"] is True
    messages = smtp.for_subject(order.number)
    assert len(messages) == 1
    assert messages[0]["to"] == ["ann@example.com"]
    assert messages[0]["subject"] == f"Order {order.number} confirmed"
    assert "2 x Celery seeds" in messages[0]["body"]
    assert "Total: EUR 7.00" in messages[0]["body"]
    assert f"/orders/{order.pk}/" in messages[0]["body"]
    delivery = EmailDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("sent", 1)


def test_confirmation_email_temporary_smtp_refusal_is_transient(smtp, order):
    smtp.refuse_next("451 4.3.0 Mailbox busy, try again later")
    with pytest.raises(EmailTemporaryFailure):
        services.confirmation_email_send(order=order)
    assert EmailDelivery.objects.get().status == "failed"
    services.confirmation_email_send(order=order)
    assert len(smtp.for_subject(order.number)) == 1
    assert EmailDelivery.objects.get().status == "sent"


def test_confirmation_email_permanent_smtp_refusal_is_permanent(smtp, order):
    smtp.refuse_next("554 5.7.1 Message rejected")
    with pytest.raises(EmailPermanentFailure):
        services.confirmation_email_send(order=order)
    assert smtp.for_subject(order.number) == []


def test_shipment_is_created_once_even_after_losing_our_own_record_of_it(warehouse, order):
    first = services.shipment_create(order=order)
    # A worker killed after the warehouse answered but before our row was updated:
    Order.objects.filter(pk=order.pk).update(shipment_reference="")
    order.refresh_from_db()
    second = services.shipment_create(order=order)

    assert first == second
    shipments = [s for s in warehouse.shipments() if s["order_number"] == order.number]
    assert len(shipments) == 1
    order.refresh_from_db()
    assert order.shipment_reference == first["shipment_reference"]


def test_warehouse_outage_is_transient_and_honours_retry_after(warehouse, order):
    warehouse.configure(outage=True)
    with pytest.raises(WarehouseUnavailable) as unavailable:
        services.shipment_create(order=order)
    assert unavailable.value.retry_after == 5


def test_warehouse_unreachable_is_transient(settings, order):
    from tests.processes import free_port

    settings.WAREHOUSE_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(WarehouseUnavailable):
        services.shipment_create(order=order)


def test_warehouse_rejection_is_permanent(warehouse, order):
    warehouse.configure(reject=True)
    with pytest.raises(WarehouseRejected):
        services.shipment_create(order=order)


def test_invoice_is_a_real_pdf_with_the_order_number_rendered_once(order):
    first = services.invoice_create(order=order)
    second = services.invoice_create(order=order)

    assert first["already_rendered"] is False and second["already_rendered"] is True
    assert Invoice.objects.count() == 1
    reader = PdfReader(io.BytesIO(bytes(Invoice.objects.get().pdf)))
    text = "".join(page.extract_text() for page in reader.pages)
    assert f"Invoice {order.number}" in text
    assert "Ann Example" in text
    assert "Celery seeds" in text
    assert "7.00" in text


def test_invoice_escapes_customer_text():
    order = place_order((ProductFactory(), 1)).order
    Order.objects.filter(pk=order.pk).update(name="<b>Bobby</b> & <script>")
    order.refresh_from_db()
    services.invoice_create(order=order)
    text = PdfReader(io.BytesIO(bytes(Invoice.objects.get().pdf))).pages[0].extract_text()
    assert "<b>Bobby</b> & <script>" in text


def test_a_follow_up_is_claimed_once(order):
    follow_up = order.follow_ups.first()
    claimed = services.follow_up_claim(follow_up_id=follow_up.pk, task_id="task-1")
    assert claimed is not None and claimed.status == "running" and claimed.attempts == 1
    assert services.follow_up_claim(follow_up_id=follow_up.pk, task_id="task-2") is None


def test_the_message_holding_the_claim_may_take_it_over_after_its_worker_died(order):
    follow_up = services.follow_up_claim(follow_up_id=order.follow_ups.first().pk, task_id="task-1")
    # The worker was SIGKILLed; the broker hands the same message (same task id) out again.
    again = services.follow_up_claim(follow_up_id=follow_up.pk, task_id="task-1")
    assert again is not None and again.attempts == 2
    assert services.follow_up_claim(follow_up_id=follow_up.pk, task_id="another-task") is None


def test_a_succeeded_follow_up_is_not_claimed_again(order):
    follow_up = services.follow_up_claim(follow_up_id=order.follow_ups.first().pk, task_id="task-1")
    services.follow_up_succeed(follow_up=follow_up, result={"ok": True})
    assert services.follow_up_claim(follow_up_id=follow_up.pk, task_id="task-2") is None
    follow_up.refresh_from_db()
    assert (follow_up.status, follow_up.result) == ("succeeded", {"ok": True})


def test_a_retrying_follow_up_is_claimed_again_and_counts_attempts(order):
    follow_up = services.follow_up_claim(follow_up_id=order.follow_ups.first().pk, task_id="task-1")
    services.follow_up_retry_later(follow_up=follow_up, error="timeout", delay_seconds=1)
    follow_up.refresh_from_db()
    assert (follow_up.status, follow_up.last_error) == ("retrying", "timeout")
    assert follow_up.next_attempt_at > timezone.now()
    again = services.follow_up_claim(follow_up_id=follow_up.pk, task_id="task-2")
    assert again.attempts == 2


def test_a_lost_claim_cannot_overwrite_a_newer_attempt(order):
    stale = services.follow_up_claim(follow_up_id=order.follow_ups.first().pk, task_id="task-1")
    # The relay recovered the row and a second worker claimed it again:
    FollowUp.objects.filter(pk=stale.pk).update(status="pending")
    fresh = services.follow_up_claim(follow_up_id=stale.pk, task_id="task-2")
    services.follow_up_bury(follow_up=stale, error="late news from a lost worker")
    fresh.refresh_from_db()
    assert fresh.status == "running"


def test_a_missing_follow_up_is_not_claimed():
    assert services.follow_up_claim(follow_up_id=987654, task_id="task-1") is None


@pytest.mark.parametrize("attempt", range(1, 12))
def test_retry_delay_is_full_jitter_under_an_exponential_cap(settings, attempt):
    settings.FOLLOW_UP_RETRY_BASE_SECONDS = 2
    settings.FOLLOW_UP_RETRY_CAP_SECONDS = 300
    delays = [services.retry_delay_seconds(attempt=attempt) for _ in range(200)]
    ceiling = min(300, 2 * 2**attempt)
    assert all(0 <= delay <= ceiling for delay in delays)
    assert max(delays) > ceiling / 2  # spread over the range, not a fixed value


def test_retry_delay_honours_retry_after_within_the_cap(settings):
    settings.FOLLOW_UP_RETRY_BASE_SECONDS = 2
    settings.FOLLOW_UP_RETRY_CAP_SECONDS = 300
    assert all(services.retry_delay_seconds(attempt=1, retry_after=30) >= 30 for _ in range(50))
    assert services.retry_delay_seconds(attempt=1, retry_after=10_000) <= 300


# The relay tests run inside a transaction that is never committed, so a worker that may be running
# for other tests cannot see these rows and race the relay for them.


def test_relay_publishes_only_follow_ups_past_the_grace_period(published_tasks, settings):
    settings.FOLLOW_UP_RELAY_GRACE_SECONDS = 10
    old = place_order((ProductFactory(), 1)).order
    new = place_order((ProductFactory(), 1)).order
    long_ago = timezone.now() - timedelta(minutes=1)
    FollowUp.objects.filter(order=old).update(created_at=long_ago, published_at=None)
    FollowUp.objects.filter(order=new).update(published_at=None)
    published_tasks.clear()

    report = services.follow_up_relay()

    assert report.published == 3
    assert sorted(args[0] for _, args in published_tasks) == sorted(
        old.follow_ups.values_list("pk", flat=True)
    )
    assert all(f.published_at is not None for f in FollowUp.objects.filter(order=old))


def test_relay_leaves_recently_published_follow_ups_alone(published_tasks, settings):
    settings.FOLLOW_UP_RELAY_GRACE_SECONDS = 0
    order = place_order((ProductFactory(), 1)).order
    FollowUp.objects.filter(order=order).update(
        created_at=timezone.now() - timedelta(minutes=1), published_at=timezone.now()
    )
    assert services.follow_up_relay().published == 0
    assert published_tasks == []


def test_relay_recovers_follow_ups_held_by_a_dead_worker_and_overdue_retries(
    published_tasks, settings
):
    order = place_order((ProductFactory(), 1)).order
    email, shipment, invoice = order.follow_ups.order_by("id")
    long_ago = timezone.now() - timedelta(hours=1)
    FollowUp.objects.filter(order=order).update(created_at=long_ago)
    FollowUp.objects.filter(pk=email.pk).update(status="running", started_at=long_ago)
    FollowUp.objects.filter(pk=shipment.pk).update(status="retrying", next_attempt_at=long_ago)
    FollowUp.objects.filter(pk=invoice.pk).update(status="succeeded")
    published_tasks.clear()

    report = services.follow_up_relay()

    assert (report.recovered, report.published) == (1, 2)
    assert sorted(args[0] for _, args in published_tasks) == sorted([email.pk, shipment.pk])
    email.refresh_from_db()
    assert email.status == "pending"
