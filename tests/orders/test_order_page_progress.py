"""The order page updates itself (htmx polls a partial), says what is happening in words, and
gives every order a state the customer understands: ready, delayed, or needs our attention."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from follow_ups.models import FollowUp
from orders import services
from orders.selectors import follow_up_progress, order_delayed_after, order_progress
from tests.factories import ProductFactory, place_order

pytestmark = pytest.mark.django_db

INTERNAL_ERRORS = {
    "confirmation_email": "EmailTemporaryFailure: SMTP 451 4.3.0 mail.internal.example busy",
    "warehouse_sync": 'WarehouseUnavailable: HTTP 503: {"error": "outage"}',
    "invoice": "RuntimeError: /srv/invoices/render.py line 12",
}


@pytest.fixture
def order():
    return place_order((ProductFactory(), 1)).order


def set_follow_up(order, kind, status, attempts, error=None):
    FollowUp.objects.filter(label=order.number, kind=kind).update(
        status=status, attempts=attempts, last_error=error or INTERNAL_ERRORS[kind]
    )


def progress_part(client, order, shown="placed") -> str:
    response = client.get(f"/orders/{order.pk}/", {"shown": shown}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    return response.content.decode()


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
    assert "We are sending it to ann@example.com" in body
    assert "HX-Request" in response["Vary"]


def test_a_ready_order_stops_polling(client, order):
    FollowUp.objects.filter(label=order.number).update(status="succeeded", attempts=1)

    body = client.get(f"/orders/{order.pk}/").content.decode()

    assert "Order ready" in body
    assert "hx-trigger" not in body


def test_a_retrying_follow_up_makes_the_order_delayed_with_nothing_for_the_customer_to_do(
    client, order
):
    set_follow_up(order, "warehouse_sync", "retrying", 2)

    page = client.get(f"/orders/{order.pk}/").content.decode()

    assert "Delayed" in page
    assert "We will keep trying; there is nothing you need to do." in page
    assert 'hx-trigger="every 2s"' in page  # the retry is in flight: the page keeps asking
    assert "HTTP 503" not in page and "outage" not in page


def test_an_order_waiting_longer_than_usual_is_delayed(order):
    assert order_progress(order).state == "placed"

    FollowUp.objects.filter(label=order.number).update(
        created_at=timezone.now() - order_delayed_after() - timedelta(seconds=1)
    )

    assert order_progress(order).state == "delayed"


def test_how_long_before_an_order_counts_as_delayed_is_a_setting(order, settings):
    FollowUp.objects.filter(label=order.number).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )

    settings.ORDER_DELAYED_AFTER_SECONDS = 600
    assert order_progress(order).state == "placed"
    settings.ORDER_DELAYED_AFTER_SECONDS = 30  # the default
    assert order_progress(order).state == "delayed"


def test_a_dead_follow_up_needs_our_attention_and_says_what_it_means(client, order):
    set_follow_up(order, "confirmation_email", "succeeded", 1, error="")
    set_follow_up(order, "invoice", "succeeded", 1, error="")
    set_follow_up(order, "warehouse_sync", "dead", 8)

    page = client.get(f"/orders/{order.pk}/").content.decode()

    assert "Needs our attention" in page
    assert "Our team has been told and is on it; there is nothing you need to do." in page
    assert "Your order has not reached our warehouse yet" in page
    assert "Your order has not reached our warehouse yet; our team is on it" in page
    assert "hx-trigger" not in page  # nothing is in flight: the page stops asking
    assert "503" not in page and "outage" not in page and "gave up" not in page


def test_a_dead_confirmation_names_the_address_it_could_not_reach(client, order):
    set_follow_up(order, "confirmation_email", "dead", 1)

    page = client.get(f"/orders/{order.pk}/").content.decode()

    assert "We could not email your confirmation to ann@example.com." in page
    assert re.search(r"We could not deliver it; our team is on it\s*<", page)
    assert 'hx-trigger="every 2s"' in page  # the warehouse sync and invoice still run


def test_no_internal_error_reaches_the_customer_in_any_state(client, order):
    for status in ("retrying", "dead"):
        for kind in INTERNAL_ERRORS:
            set_follow_up(order, kind, status, 3)
        page = client.get(f"/orders/{order.pk}/").content.decode()
        api = client.get(f"/api/orders/{order.pk}/").content.decode()
        for error in INTERNAL_ERRORS.values():
            for fragment in (error, error.split(":")[0], error[-20:]):
                assert fragment not in page
                assert fragment not in api


@pytest.mark.parametrize("status", ["pending", "running", "retrying", "waiting", "dead"])
def test_the_customer_page_shows_no_engine_state_and_no_attempt_count(client, order, status):
    for kind in INTERNAL_ERRORS:
        set_follow_up(order, kind, status, 8)

    page = client.get(f"/orders/{order.pk}/").content.decode()

    main = page[page.index("<main>") : page.index("</main>")]
    assert not re.search(r"\battempts?\b", main, re.IGNORECASE)
    for engine_word in ("pending", "running", "retrying", "waiting", "dead", "succeeded"):
        # Not as a word the customer reads (the data-status attribute and classes are markup).
        assert not re.search(rf">[^<]*\b{engine_word}\b[^<]*<", main, re.IGNORECASE), engine_word


def test_a_step_waiting_out_its_providers_outage_reads_as_a_delay_not_an_alarm(client, order):
    set_follow_up(order, "confirmation_email", "waiting", 0, error="")

    body = progress_part(client, order)
    page = client.get(f"/orders/{order.pk}/").content.decode()

    row = body[body.index('data-kind="confirmation_email"') :]
    row = row[: row.index("</tr>")]
    assert '<span class="status delayed">Delayed</span>' in row
    assert (
        "Our email service is briefly unavailable; it goes out as soon as the service is back"
        in row
    )
    assert "Delayed" in page[page.index('id="order-state"') :]
    assert "Needs our attention" not in page and "needs_attention" not in page


@pytest.mark.parametrize(
    ("kind", "status", "words"),
    [
        ("confirmation_email", "pending", "We are sending it to ann@example.com"),
        ("warehouse_sync", "running", "We are passing your order to our warehouse"),
        ("warehouse_sync", "retrying", "Our warehouse is slow to answer; we keep trying"),
        ("invoice", "dead", "Not ready yet; our team is on it"),
        ("confirmation_email", "dead", "We could not deliver it; our team is on it"),
        ("confirmation_email", "succeeded", "Sent to ann@example.com"),
    ],
)
def test_each_step_and_state_has_its_sentence_in_the_customers_words(kind, status, words):
    follow_up = FollowUp(kind=kind, status=status, attempts=3)

    assert follow_up_progress(follow_up, email="ann@example.com") == words


def test_the_state_is_a_live_region_for_screen_readers(client, order):
    page = client.get(f"/orders/{order.pk}/").content.decode()

    region = page[page.index('id="order-state"') - 40 :]
    region = region[: region.index("</div>")]
    assert 'role="status"' in region and 'aria-live="polite"' in region
    assert "Order placed" in region
    # The live region sits outside the part that polling replaces, so it is never re-created.
    assert page.index('id="order-state"') < page.index('id="order-progress"')


def test_a_poll_replaces_the_live_regions_words_only_when_the_state_changed(client, order):
    assert 'hx-swap-oob="innerHTML"' not in progress_part(client, order, shown="placed")

    set_follow_up(order, "warehouse_sync", "retrying", 1)

    changed = progress_part(client, order, shown="placed")
    assert 'id="order-state" hx-swap-oob="innerHTML"' in changed
    assert "Delayed" in changed[changed.index('id="order-state"') :]
    assert 'hx-swap-oob="innerHTML"' not in progress_part(client, order, shown="delayed")


@pytest.mark.parametrize(
    ("statuses", "state"),
    [
        ({}, "placed"),
        ({"warehouse_sync": "retrying"}, "delayed"),
        ({"warehouse_sync": "retrying", "invoice": "dead"}, "needs_attention"),
        ({"confirmation_email": "dead"}, "needs_attention"),
        (
            {
                "confirmation_email": "succeeded",
                "warehouse_sync": "succeeded",
                "invoice": "succeeded",
            },
            "ready",
        ),
    ],
)
def test_the_api_status_is_the_pages_state_and_keeps_its_fields(client, order, statuses, state):
    for kind, status in statuses.items():
        set_follow_up(order, kind, status, 1)

    body = client.get(f"/api/orders/{order.pk}/").json()

    assert body["status"] == state
    assert set(body) == {"id", "number", "status", "total", "follow_ups"}
    assert order_progress(order).state == state


def test_the_confirmation_email_says_when_the_rest_of_the_order_needs_our_attention(
    order, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    set_follow_up(order, "warehouse_sync", "dead", 1)

    services.confirmation_email_send(order=order)

    (sent,) = mail.outbox
    assert "Your order has not reached our warehouse yet" in sent.body
    assert "Our team has been told and is on it" in sent.body
    assert "HTTP 503" not in sent.body


def test_the_confirmation_email_says_nothing_extra_while_the_order_runs_normally(order, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # The confirmation is itself running while it is sent: that is not a delay.
    set_follow_up(order, "confirmation_email", "running", 1, error="")

    services.confirmation_email_send(order=order)

    (sent,) = mail.outbox
    assert "Our team" not in sent.body and "longer than usual" not in sent.body


def test_the_confirmation_email_says_when_the_rest_of_the_order_is_delayed(order, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    set_follow_up(order, "warehouse_sync", "retrying", 2)

    services.confirmation_email_send(order=order)

    (sent,) = mail.outbox
    assert "Part of your order is taking longer than usual." in sent.body
    assert "there is nothing you need to do" in sent.body
    assert "HTTP 503" not in sent.body and "outage" not in sent.body
