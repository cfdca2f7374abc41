"""Failed checkouts are limited per client address (docs/reliability.md, "Security"): card testing
and typing strangers' addresses stop at CHECKOUT_FAILURES_PER_CLIENT (10) per 15 minutes, with the
production values; a placed order never counts."""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.utils import timezone

from devtools.models import SimulatedCharge
from devtools.payment_gateway import payment_faults_set
from orders.models import CheckoutFailures, Order
from tests.factories import DECLINED_CARD, GOOD_CARD, ProductFactory, checkout_payload

pytestmark = pytest.mark.django_db


def post_order(client, sku, card, address="203.0.113.7"):
    return client.post(
        "/api/orders/",
        checkout_payload((sku, 1), card_number=card),
        content_type="application/json",
        REMOTE_ADDR=address,
    )


def test_the_eleventh_refused_card_from_one_address_gets_429_and_others_go_on(client, settings):
    assert settings.CHECKOUT_FAILURES_PER_CLIENT == 10  # the production value
    product = ProductFactory(stock=100)
    start = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    with time_machine.travel(start, tick=False):
        codes = [post_order(client, product.sku, DECLINED_CARD).status_code for _ in range(10)]
        assert codes == [402] * 10
        blocked = post_order(client, product.sku, GOOD_CARD)
        assert blocked.status_code == 429
        assert blocked.json()["code"] == "too_many_failures"
        assert 0 < int(blocked["Retry-After"]) <= 900
        # Another address is not affected.
        assert post_order(client, product.sku, GOOD_CARD, address="198.51.100.2").status_code == 201
    with time_machine.travel(start + timedelta(minutes=15), tick=False):
        assert post_order(client, product.sku, GOOD_CARD).status_code == 201
    assert Order.objects.count() == 2


def test_placed_orders_never_count(client):
    product = ProductFactory(stock=100)
    codes = {post_order(client, product.sku, GOOD_CARD).status_code for _ in range(15)}
    assert codes == {201}


def test_the_checkout_form_is_limited_too_and_says_so(client):
    product = ProductFactory(stock=100)
    client.post(f"/cart/add/{product.sku}/", {"quantity": 1})
    start = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)

    def submit(card):
        token = client.get("/checkout/").context["form"].initial["token"]
        return client.post(
            "/checkout/",
            {
                "email": "ann@example.com",
                "name": "Ann",
                "line1": "Kerkstraat 1",
                "city": "Amsterdam",
                "postal_code": "1017 GA",
                "country": "NL",
                "card_number": card,
                "token": token,
            },
        )

    with time_machine.travel(start, tick=False):
        assert {submit(DECLINED_CARD).status_code for _ in range(10)} == {200}
        blocked = submit(GOOD_CARD)
    assert blocked.status_code == 429
    assert b"Too many checkouts from your connection failed" in blocked.content
    assert blocked["Retry-After"] == "900"
    assert not Order.objects.exists()


def test_the_checkout_page_warns_that_declined_test_cards_count_and_says_how_many_are_left(
    client,
):
    product = ProductFactory(stock=100)
    client.post(f"/cart/add/{product.sku}/", {"quantity": 1})

    fresh = client.get("/checkout/").content.decode()
    for _ in range(3):
        post_order(client, product.sku, DECLINED_CARD, address="127.0.0.1")
    after_three = client.get("/checkout/").content.decode()

    notice = 'id="checkout-limit"'
    assert notice in fresh and "left." not in fresh  # nothing counted yet: no count shown
    assert "A declined card counts as a failed checkout: after 10 failed checkouts" in fresh
    assert "within 15 minutes" in fresh
    assert "7 of 10 left." in after_three
    # The notice sits with the test cards, where an explorer picks the declined ones.
    assert after_three.index("Test cards") < after_three.index(notice)


def test_the_failure_lab_clears_the_limit_so_a_locked_out_explorer_checks_out_at_once(
    client, admin_client
):
    product = ProductFactory(stock=100)
    for _ in range(10):
        post_order(client, product.sku, DECLINED_CARD)
    assert post_order(client, product.sku, GOOD_CARD).status_code == 429

    cleared = admin_client.post("/ops/lab/", {"action": "checkout_limit"}, follow=True)

    assert "Failed checkouts forgotten" in cleared.content.decode()
    assert not CheckoutFailures.objects.exists()
    assert post_order(client, product.sku, GOOD_CARD).status_code == 201


def post_via_proxy(client, sku, card, *, forwarded_for):
    """Through the TLS proxy in front (10.0.0.2), which appends the address it saw."""
    return client.post(
        "/api/orders/",
        checkout_payload((sku, 1), card_number=card),
        content_type="application/json",
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR=forwarded_for,
    )


def test_behind_the_proxy_each_client_is_counted_and_one_card_tester_blocks_nobody_else(
    client, settings
):
    """Every connection comes from the proxy: counted by REMOTE_ADDR, one card tester would make
    checkout answer 429 to every customer. With TRUSTED_PROXY_HOPS=1 the proxy's entry names the
    client, and what the client writes left of it does not help it escape."""
    settings.TRUSTED_PROXY_HOPS = 1
    product = ProductFactory(stock=100)
    start = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    with time_machine.travel(start, tick=False):
        codes = [
            post_via_proxy(
                client, product.sku, DECLINED_CARD, forwarded_for=f"198.18.0.{n}, 203.0.113.7"
            ).status_code
            for n in range(10)
        ]
        assert codes == [402] * 10
        tester = post_via_proxy(client, product.sku, GOOD_CARD, forwarded_for="203.0.113.7")
        assert tester.status_code == 429
        customer = post_via_proxy(client, product.sku, GOOD_CARD, forwarded_for="198.51.100.2")
        assert customer.status_code == 201
        # A proxy that wrote garbage: counted by the connection, never a 500.
        garbage = post_via_proxy(client, product.sku, GOOD_CARD, forwarded_for="x\x00y")
        assert garbage.status_code == 201
    assert Order.objects.count() == 2


def test_without_a_trusted_proxy_a_forwarded_for_header_changes_nothing(client, settings):
    assert settings.TRUSTED_PROXY_HOPS == 0  # the default: the header is the client's own words
    product = ProductFactory(stock=100)
    start = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    with time_machine.travel(start, tick=False):
        for n in range(10):
            post_via_proxy(client, product.sku, DECLINED_CARD, forwarded_for=f"198.18.0.{n}")
        blocked = post_via_proxy(client, product.sku, GOOD_CARD, forwarded_for="198.18.0.99")
    assert blocked.status_code == 429


# 100 declined checkouts, 50 in flight at a time: the shared PostgreSQL server of a developer
# machine allows 100 connections, and each request in flight holds one.
DECLINED_CHECKOUTS = 100
IN_FLIGHT = 50


@pytest.mark.django_db(transaction=True)
def test_a_hundred_concurrent_declined_checkouts_from_one_client_reach_the_gateway_ten_times():
    """The limit is taken before the card is tried (a conditional increment), not checked before
    and counted after: however many arrive at once, ten refusals reach the gateway."""
    product = ProductFactory(stock=100)
    payment_faults_set(answer_delay_ms=300)  # a refusal takes its time: the requests overlap
    start = threading.Barrier(IN_FLIGHT)
    codes: list[int] = []
    lock = threading.Lock()

    def card_tester() -> None:
        start.wait()
        try:
            for _ in range(DECLINED_CHECKOUTS // IN_FLIGHT):
                code = post_order(Client(), product.sku, DECLINED_CARD).status_code
                with lock:
                    codes.append(code)
        finally:
            connection.close()

    threads = [threading.Thread(target=card_tester) for _ in range(IN_FLIGHT)]
    with time_machine.travel(window_start(), tick=True):  # all in one window
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(codes) == [402] * 10 + [429] * 90
    assert SimulatedCharge.objects.filter(status="declined").count() == 10  # at the gateway
    assert CheckoutFailures.objects.get().failures == 10


def window_start():
    return timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def test_a_placed_order_gives_its_slot_back(client):
    product = ProductFactory(stock=100)
    with time_machine.travel(window_start(), tick=False):
        for _ in range(9):
            post_order(client, product.sku, DECLINED_CARD)
        assert post_order(client, product.sku, GOOD_CARD).status_code == 201
        assert post_order(client, product.sku, DECLINED_CARD).status_code == 402  # the tenth
        assert post_order(client, product.sku, GOOD_CARD).status_code == 429
    assert CheckoutFailures.objects.get().failures == 10


@pytest.mark.django_db(transaction=True)
def test_good_checkouts_from_one_client_at_once_are_never_refused_while_its_window_opens():
    """The first checkouts of a window race to open it: one opens it, the others take a slot in
    it. None is told it has failed too often (the fault matrix met that once: a 429 for the
    first of four concurrent orders)."""
    product = ProductFactory(stock=100)
    in_flight = 8
    start = threading.Barrier(in_flight)
    codes: list[int] = []
    lock = threading.Lock()

    def shopper() -> None:
        start.wait()
        try:
            for _ in range(3):
                code = post_order(Client(), product.sku, GOOD_CARD).status_code
                with lock:
                    codes.append(code)
        finally:
            connection.close()

    for _ in range(3):  # a fresh window each round: the race is at its opening
        CheckoutFailures.objects.all().delete()
        threads = [threading.Thread(target=shopper) for _ in range(in_flight)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert codes == [201] * (3 * in_flight * 3)
    assert CheckoutFailures.objects.get().failures == 0
