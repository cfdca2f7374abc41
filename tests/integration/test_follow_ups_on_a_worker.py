"""Orders placed over HTTP, follow-ups run by a real Celery worker on the configured broker."""

import io
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from pypdf import PdfReader

from follow_ups.models import FollowUp
from follow_ups.services import follow_up_send
from notifications.models import EmailDelivery
from orders.models import Invoice, Order
from orders.services import order_subject
from tests.factories import ProductFactory, checkout_payload
from tests.processes import wait_until

pytestmark = pytest.mark.integration


def place(client, *items) -> dict:
    response = client.post(
        "/api/orders/", data=json.dumps(checkout_payload(*items)), content_type="application/json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def order_json(client, order_id) -> dict:
    return client.get(f"/api/orders/{order_id}/").json()


def wait_ready(client, order_ids, timeout=60):
    def all_ready():
        return all(order_json(client, order_id)["status"] == "ready" for order_id in order_ids)

    wait_until(all_ready, timeout=timeout, interval=0.2, message="orders to become ready")


def follow_ups_of(order_id):
    return FollowUp.objects.filter(subject=order_subject(order_id))


def follow_ups_of_many(order_ids):
    return FollowUp.objects.filter(subject__in=[order_subject(pk) for pk in order_ids])


def assert_one_effect_each(orders, smtp_server, warehouse):
    shipments = warehouse.shipments()
    for order in orders:
        assert len(smtp_server.confirmations(order.number)) == 1, f"emails for {order.number}"
        assert [s["order_number"] for s in shipments].count(order.number) == 1, (
            f"shipments for {order.number}"
        )
        assert Invoice.objects.filter(order=order).count() == 1
        assert (
            EmailDelivery.objects.filter(
                purpose_key=f"order-{order.pk}-confirmation", status="sent"
            ).count()
            == 1
        )


def test_every_order_gets_one_email_one_shipment_and_one_invoice(
    live_worker, client, smtp_server, warehouse
):
    product = ProductFactory(stock=50)
    placed = [place(client, (product.sku, 1)) for _ in range(6)]

    wait_ready(client, [p["id"] for p in placed])

    orders = list(Order.objects.filter(pk__in=[p["id"] for p in placed]))
    assert_one_effect_each(orders, smtp_server, warehouse)
    for order in orders:
        assert order.shipment_reference.startswith("SHP-")
        assert {(f.status, f.attempts) for f in follow_ups_of(order.pk)} == {("succeeded", 1)}
        pdf = client.get(f"/orders/{order.pk}/invoice.pdf")
        assert pdf["Content-Type"] == "application/pdf"
        text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
        assert order.number in text
    body = order_json(client, placed[0]["id"])
    assert body["status"] == "ready"
    assert all(f["status"] == "succeeded" for f in body["follow_ups"])


def test_every_task_delivered_twice_concurrently_has_one_effect(
    live_worker, client, smtp_server, warehouse
):
    product = ProductFactory(stock=50)
    placed = [place(client, (product.sku, 1)) for _ in range(3)]
    follow_ups = follow_ups_of_many([p["id"] for p in placed])
    with ThreadPoolExecutor(4) as pool:  # the duplicates race the originals
        list(
            pool.map(
                follow_up_send,
                list(follow_ups) * 2,
            )
        )

    wait_ready(client, [p["id"] for p in placed])

    assert_one_effect_each(
        list(Order.objects.filter(pk__in=[p["id"] for p in placed])), smtp_server, warehouse
    )
    assert set(
        follow_ups_of_many([p["id"] for p in placed]).values_list("attempts", flat=True)
    ) == {1}


def test_a_warehouse_outage_is_retried_with_backoff_until_it_succeeds(
    live_worker, live_relay, client, warehouse
):
    warehouse.configure(outage=True)
    placed = place(client, (ProductFactory().sku, 1))
    sync = follow_ups_of(placed["id"]).get(kind="warehouse_sync")

    wait_until(
        lambda: FollowUp.objects.get(pk=sync.pk).attempts >= 3, timeout=30, message="three attempts"
    )
    during = FollowUp.objects.get(pk=sync.pk)
    assert during.status in ("retrying", "running")
    assert "503" in during.last_error
    warehouse.configure(outage=False)

    wait_ready(client, [placed["id"]])
    sync.refresh_from_db()
    assert sync.status == "succeeded" and sync.last_error == ""
    assert [s["order_number"] for s in warehouse.shipments()].count(placed["number"]) == 1


def test_a_temporary_smtp_refusal_is_retried_and_the_customer_gets_one_email(
    live_worker, live_relay, client, smtp_server
):
    smtp_server.refuse_next("451 4.3.0 Try again later", "421 4.7.0 Too busy")
    placed = place(client, (ProductFactory().sku, 1))

    wait_ready(client, [placed["id"]])
    email = follow_ups_of(placed["id"]).get(kind="confirmation_email")
    assert email.attempts == 3
    assert len(smtp_server.confirmations(placed["number"])) == 1
    # Each failed attempt is logged (and shown in Flower) as a retry, not a failure.
    outcomes = [
        json.loads(line)["outcome"]
        for line in live_worker.log().splitlines()
        if '"job.finished"' in line and f'"follow_up_id": {email.pk},' in line
    ]
    assert outcomes == ["retrying", "retrying", "succeeded"]


def test_a_permanent_warehouse_rejection_becomes_a_dead_letter_and_spares_the_rest(
    live_worker, client, warehouse, smtp_server
):
    warehouse.configure(reject=True)
    placed = place(client, (ProductFactory().sku, 1))

    def dead():
        return follow_ups_of(placed["id"]).filter(kind="warehouse_sync", status="dead").first()

    dead_letter = wait_until(dead, timeout=30, message="a dead letter")
    assert dead_letter.attempts == 1
    assert "422" in dead_letter.last_error
    wait_until(
        lambda: follow_ups_of(placed["id"]).filter(status="succeeded").count() == 2,
        timeout=30,
        message="email and invoice to succeed",
    )
    body = order_json(client, placed["id"])
    assert body["status"] == "needs_attention"
    assert {f["kind"]: f["status"] for f in body["follow_ups"]} == {
        "confirmation_email": "succeeded",
        "warehouse_sync": "dead",
        "invoice": "succeeded",
    }


def test_an_expected_dead_letter_logs_one_structured_line_and_no_traceback(
    live_worker, client, warehouse, smtp_server
):
    warehouse.configure(reject=True)
    log_before = len(live_worker.log())
    placed = place(client, (ProductFactory().sku, 1))
    dead_letter = wait_until(
        lambda: follow_ups_of(placed["id"]).filter(kind="warehouse_sync", status="dead").first(),
        timeout=30,
        message="a dead letter",
    )
    wait_until(
        lambda: (
            f'"follow_up_id": {dead_letter.pk},' in live_worker.log()[log_before:]
            and '"job.finished"' in live_worker.log()[log_before:]
        ),
        timeout=10,
        message="the job log's line",
    )

    log = live_worker.log()[log_before:]
    finished = [
        json.loads(line)
        for line in log.splitlines()
        if '"job.finished"' in line and f'"follow_up_id": {dead_letter.pk},' in line
    ]
    assert [(line["outcome"], line["level"]) for line in finished] == [("dead", "error")]
    assert "422" in finished[0]["error"]
    assert "Traceback" not in log
    assert "raised unexpected" not in log
