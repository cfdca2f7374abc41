"""Orders placed over HTTP, follow-ups run by a real Celery worker on the configured broker."""

import io
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import current_app
from pypdf import PdfReader

from notifications.models import EmailDelivery
from orders.models import FollowUp, Invoice, Order
from orders.services import TASK_NAME_BY_KIND
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
        assert {(f.status, f.attempts) for f in order.follow_ups.all()} == {("succeeded", 1)}
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
    follow_ups = FollowUp.objects.filter(order_id__in=[p["id"] for p in placed])
    with ThreadPoolExecutor(4) as pool:  # the duplicates race the originals
        list(
            pool.map(
                lambda f: current_app.send_task(TASK_NAME_BY_KIND[f.kind], args=[f.pk]),
                list(follow_ups) * 2,
            )
        )

    wait_ready(client, [p["id"] for p in placed])

    assert_one_effect_each(
        list(Order.objects.filter(pk__in=[p["id"] for p in placed])), smtp_server, warehouse
    )
    assert set(
        FollowUp.objects.filter(order_id__in=[p["id"] for p in placed]).values_list(
            "attempts", flat=True
        )
    ) == {1}


def test_a_warehouse_outage_is_retried_with_backoff_until_it_succeeds(
    live_worker, client, warehouse
):
    warehouse.configure(outage=True)
    placed = place(client, (ProductFactory().sku, 1))
    sync = FollowUp.objects.get(order_id=placed["id"], kind="warehouse_sync")

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
    live_worker, client, smtp_server
):
    smtp_server.refuse_next("451 4.3.0 Try again later", "421 4.7.0 Too busy")
    placed = place(client, (ProductFactory().sku, 1))

    wait_ready(client, [placed["id"]])
    email = FollowUp.objects.get(order_id=placed["id"], kind="confirmation_email")
    assert email.attempts == 3
    assert len(smtp_server.confirmations(placed["number"])) == 1


def test_a_permanent_warehouse_rejection_becomes_a_dead_letter_and_spares_the_rest(
    live_worker, client, warehouse, smtp_server
):
    warehouse.configure(reject=True)
    placed = place(client, (ProductFactory().sku, 1))

    def dead():
        return FollowUp.objects.filter(
            order_id=placed["id"], kind="warehouse_sync", status="dead"
        ).first()

    dead_letter = wait_until(dead, timeout=30, message="a dead letter")
    assert dead_letter.attempts == 1
    assert "422" in dead_letter.last_error
    wait_until(
        lambda: FollowUp.objects.filter(order_id=placed["id"], status="succeeded").count() == 2,
        timeout=30,
        message="email and invoice to succeed",
    )
    body = order_json(client, placed["id"])
    assert body["status"] == "placed"
    assert {f["kind"]: f["status"] for f in body["follow_ups"]} == {
        "confirmation_email": "succeeded",
        "warehouse_sync": "dead",
        "invoice": "succeeded",
    }
