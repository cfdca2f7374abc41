"""The failure lab: stored toggles the providers read, a poison order, and simulated shoppers."""

import re
from datetime import timedelta

import httpx
import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from devtools.models import EmailFaults, WarehouseFaults
from follow_ups.models import FollowUp
from ops.forms import EMAIL_LATENCY_MAX_MS
from ops.services import POISON_RECIPIENT
from orders.models import Order
from tests.factories import ProductFactory, place_order
from tests.processes import free_port

pytestmark = pytest.mark.django_db


def test_the_failure_lab_is_for_staff_only(client):
    assert client.get("/ops/lab/").status_code == 302
    assert client.post("/ops/lab/", {"action": "poison"}).status_code == 302
    assert not Order.objects.exists()


def test_email_faults_are_stored_for_the_provider_to_read(admin_client):
    response = admin_client.post(
        "/ops/lab/", {"action": "email", "email-latency_ms": "250", "email-error_rate": "0.3"}
    )

    assert response.status_code == 302
    faults = EmailFaults.objects.get()
    assert (faults.latency_ms, faults.error_rate) == (250, 0.3)


def test_the_lab_page_says_when_email_faults_are_not_acted_out(admin_client, settings):
    settings.FAILURE_LAB = True
    assert 'data-lab="off"' not in admin_client.get("/ops/lab/").content.decode()
    settings.FAILURE_LAB = False
    assert 'data-lab="off"' in admin_client.get("/ops/lab/").content.decode()


def test_an_error_rate_above_one_is_a_form_error_not_a_crash(admin_client):
    response = admin_client.post(
        "/ops/lab/", {"action": "email", "email-latency_ms": "0", "email-error_rate": "2"}
    )

    assert response.status_code == 400
    assert "Ensure this value is less than or equal to 1" in response.content.decode()
    assert not EmailFaults.objects.exists()


def test_a_slow_email_provider_set_in_the_lab_shows_customers_delayed(admin_client, settings):
    latency_seconds = settings.ORDER_DELAYED_AFTER_SECONDS + 5
    response = admin_client.post(
        "/ops/lab/",
        {"action": "email", "email-latency_ms": latency_seconds * 1000, "email-error_rate": "0"},
    )
    assert response.status_code == 302
    order = place_order((ProductFactory(), 1)).order
    FollowUp.objects.filter(label=order.number, kind="confirmation_email").update(
        status="running", attempts=1
    )
    FollowUp.objects.filter(label=order.number).exclude(kind="confirmation_email").update(
        status="succeeded", attempts=1
    )

    # The confirmation is still being sent, as slowly as the lab asked.
    with time_machine.travel(timezone.now() + timedelta(seconds=latency_seconds - 1)):
        page = Client().get(f"/orders/{order.pk}/").content.decode()

    assert 'data-status="delayed"' in page
    assert "Taking longer than usual" not in page  # still running: a delay, not a retry
    assert settings.ORDER_DELAYED_AFTER_SECONDS * 1000 < EMAIL_LATENCY_MAX_MS
    assert EMAIL_LATENCY_MAX_MS < settings.CELERY_TASK_SOFT_TIME_LIMIT * 1000


def test_the_lab_says_how_to_make_each_state_a_customer_sees(admin_client):
    page = admin_client.get("/ops/lab/").content.decode()

    states = page[page.index('id="customer-states"') :]
    for state in ("Order placed", "Delayed", "Needs our attention", "Order ready"):
        assert f"<strong>{state}</strong>" in states
    assert "above 30 s" in states


def test_an_unknown_action_is_a_bad_request(admin_client):
    assert admin_client.post("/ops/lab/", {"action": "explode"}).status_code == 400


def test_warehouse_faults_are_stored_and_pushed_to_the_warehouse(admin_client, warehouse):
    response = admin_client.post(
        "/ops/lab/",
        {
            "action": "warehouse",
            "warehouse-latency_ms": "40",
            "warehouse-failure_rate": "0.5",
            "warehouse-outage": "on",
        },
    )

    assert response.status_code == 302
    stored = WarehouseFaults.objects.get()
    assert (stored.latency_ms, stored.failure_rate, stored.outage) == (40, 0.5, True)
    live = httpx.get(f"{warehouse.url}/config", timeout=5).json()
    assert (live["latency_ms"], live["failure_rate"], live["outage"]) == (40, 0.5, True)


def test_warehouse_faults_are_kept_and_the_operator_told_when_the_warehouse_is_away(
    admin_client, settings
):
    settings.WAREHOUSE_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    response = admin_client.post(
        "/ops/lab/",
        {
            "action": "warehouse",
            "warehouse-latency_ms": "5",
            "warehouse-failure_rate": "0",
            "warehouse-outage": "on",
        },
        follow=True,
    )

    assert response.status_code == 200
    assert "the warehouse did not take it" in response.content.decode()
    assert WarehouseFaults.objects.get().outage is True


def test_the_two_fault_forms_have_distinct_field_ids_and_each_label_points_at_its_own_field(
    admin_client,
):
    page = admin_client.get("/ops/lab/").content.decode()

    ids = re.findall(r'<input [^>]*id="([^"]+)"', page)
    assert len(ids) == len(set(ids)), ids
    for label_for in re.findall(r'<label for="([^"]+)"', page):
        assert ids.count(label_for) == 1, label_for
    assert '<label for="id_email-latency_ms">' in page
    assert '<label for="id_warehouse-latency_ms">' in page


def test_a_poison_order_is_placed_for_the_poison_recipient(admin_client):
    ProductFactory(stock=5)

    response = admin_client.post("/ops/lab/", {"action": "poison"})

    assert response.status_code == 302
    order = Order.objects.get()
    page = admin_client.get(response["Location"]).content.decode()
    assert f'Poison order <a href="/orders/{order.pk}/">{order.number}</a> placed' in page
    assert order.email == POISON_RECIPIENT
    assert EmailFaults.objects.get().poison_recipient == POISON_RECIPIENT
    assert FollowUp.objects.filter(label=order.number).count() == 3


def test_simulate_orders_places_orders_over_the_real_checkout_path(
    django_capture_on_commit_callbacks,
):
    product = ProductFactory(stock=10)

    with django_capture_on_commit_callbacks() as callbacks:
        call_command("simulate_orders", count=3, rate=100)

    assert Order.objects.count() == 3
    assert FollowUp.objects.exclude(kind="payment_void").count() == 9
    # Each follow-up is published after its order commits.
    assert [callback.__name__ for callback in callbacks].count("publish_follow_up") == 9
    product.refresh_from_db()
    assert product.stock == 7


@pytest.mark.parametrize("arguments", [{"count": 0, "rate": 1}, {"count": 1, "rate": 0}])
def test_simulate_orders_refuses_nonsense_counts_and_rates(arguments):
    with pytest.raises(CommandError):
        call_command("simulate_orders", **arguments)
    assert not Order.objects.exists()


def test_simulate_orders_says_so_when_nothing_is_in_stock():
    ProductFactory(stock=0)
    with pytest.raises(CommandError, match="seed_catalog"):
        call_command("simulate_orders", count=1, rate=10)
