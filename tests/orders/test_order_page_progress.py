"""The order page updates itself (htmx polls a partial) and says what is happening in words."""

import pytest

from follow_ups.models import FollowUp
from orders.selectors import follow_up_progress
from tests.factories import ProductFactory, place_order

pytestmark = pytest.mark.django_db


@pytest.fixture
def order():
    return place_order((ProductFactory(), 1)).order


def test_a_placed_order_page_polls_for_its_progress(client, order):
    page = client.get(f"/orders/{order.pk}/").content.decode()

    assert f'hx-get="/orders/{order.pk}/"' in page
    assert 'hx-trigger="every 2s"' in page
    assert "vendor/htmx-2.0.11.min.js" in page


def test_polling_gets_the_progress_part_alone(client, order):
    response = client.get(f"/orders/{order.pk}/", headers={"HX-Request": "true"})

    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="order-progress"' in body
    assert "<html" not in body
    assert "Email delivery is waiting to start" in body
    assert "HX-Request" in response["Vary"]


def test_a_retry_is_told_in_words_with_the_attempt_to_come(client, order):
    FollowUp.objects.filter(label=order.number, kind="confirmation_email").update(
        status="retrying", attempts=1, last_error="SMTP 451"
    )

    body = client.get(f"/orders/{order.pk}/", headers={"HX-Request": "true"}).content.decode()

    assert "Email delivery is retrying, attempt 2" in body


def test_a_ready_order_stops_polling(client, order):
    FollowUp.objects.filter(label=order.number).update(status="succeeded", attempts=1)

    body = client.get(f"/orders/{order.pk}/").content.decode()

    assert "Order ready" in body
    assert "hx-trigger" not in body


@pytest.mark.parametrize(
    ("kind", "status", "attempts", "words"),
    [
        ("warehouse_sync", "running", 3, "Warehouse sync is running, attempt 3"),
        ("invoice", "dead", 8, "Invoice rendering stopped after 8 attempts"),
        ("invoice", "succeeded", 1, "Invoice rendering is done"),
    ],
)
def test_each_state_has_its_sentence(kind, status, attempts, words):
    assert follow_up_progress(FollowUp(kind=kind, status=status, attempts=attempts)) == words
