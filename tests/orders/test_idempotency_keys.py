"""One Idempotency-Key, at most one charge (docs/reliability.md, "Money").

The key is claimed in its own committed row before the card is charged (Stripe's semantics): a
concurrent request with the same key is told the first is in progress (409), a later one gets the
first one's order, and a claim whose request died lapses without letting a second charge stand.
Charges are counted at the (simulated) gateway's own ledger, ``SimulatedCharge``.
"""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from devtools.models import SimulatedCharge
from devtools.payment_gateway import payment_faults_set
from orders import services
from orders.models import CheckoutRequest, Order, PaymentAttempt
from tests.factories import DECLINED_CARD, GOOD_CARD, ProductFactory, checkout_payload, place_order
from tests.ledger import follow_ups_run

REQUESTS = 20


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_with_one_key_make_one_charge_and_one_order():
    product = ProductFactory(stock=100)
    # The gateway answers slowly, so every request arrives while the first one is paying.
    payment_faults_set(answer_delay_ms=500)
    body = checkout_payload((product.sku, 1))
    start = threading.Barrier(REQUESTS)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def send() -> None:
        start.wait()
        try:
            response = Client().post(
                "/api/orders/",
                body,
                content_type="application/json",
                headers={"Idempotency-Key": "order-from-a-flaky-network"},
            )
            answer = (response.status_code, response.json())
        except Exception as exc:  # any 500 or "database is locked" fails the test below
            answer = (0, {"detail": f"{type(exc).__name__}: {exc}"})
        finally:
            connection.close()
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    codes = sorted(code for code, _ in answers)
    assert codes.count(201) == 1, answers
    assert set(codes) <= {200, 201, 409}, answers
    assert 409 in codes  # the requests did overlap
    order = Order.objects.get()
    for code, answer in answers:
        if code == 409:
            assert answer["code"] == "idempotency_key_in_progress"
            assert "still in progress" in answer["detail"]
        else:
            assert answer["id"] == str(order.pk)
    assert SimulatedCharge.objects.count() == 1
    assert SimulatedCharge.objects.get().reference == order.payment_reference
    assert PaymentAttempt.objects.count() == 1

    # Once the first has finished, the same request gets its order, and nothing is charged.
    again = Client().post(
        "/api/orders/",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": "order-from-a-flaky-network"},
    )
    assert again.status_code == 200 and again.json()["id"] == str(order.pk)
    assert SimulatedCharge.objects.count() == 1


@pytest.mark.django_db
def test_a_key_held_by_a_request_in_progress_is_a_409_with_a_message(client):
    product = ProductFactory(stock=5)
    body = checkout_payload((product.sku, 1))
    first = client.post(
        "/api/orders/", body, content_type="application/json", headers={"Idempotency-Key": "k"}
    )
    assert first.status_code == 201
    # As if the first were still paying: its claim holds the key and no order is saved yet.
    CheckoutRequest.objects.filter(key="k").update(
        order=None, owner="another-request", claimed_until=timezone.now() + timedelta(seconds=60)
    )

    response = client.post(
        "/api/orders/", body, content_type="application/json", headers={"Idempotency-Key": "k"}
    )

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_progress"
    assert SimulatedCharge.objects.count() == 1


@pytest.mark.django_db
def test_a_key_whose_request_died_before_charging_lapses_and_the_retry_places_the_order():
    product = ProductFactory(stock=5)
    claim = services.checkout_key_claim(key="died", request_hash="0" * 64)
    with pytest.raises(services.IdempotencyKeyInProgress):
        place_order((product, 1), idempotency_key="died")

    CheckoutRequest.objects.filter(pk=claim.pk).update(claimed_until=timezone.now())  # lapsed

    placed = place_order((product, 1), idempotency_key="died")
    assert placed.created
    # The dead request, had it woken up, can no longer start a charge under the key.
    with pytest.raises(services.IdempotencyKeyInProgress):
        services.payment_attempt_start(
            checkout_key="died", amount=product.price, card_number=GOOD_CARD, claim=claim
        )
    assert SimulatedCharge.objects.count() == 1


@pytest.mark.django_db
def test_a_lapsed_key_whose_charge_is_open_waits_for_the_void_so_two_charges_never_stand():
    """A request that charged and died: its key is not taken over while that charge stands; once
    the engine voided it, the retry charges anew and places the order."""
    product = ProductFactory(stock=5)
    # The dead request, step by step: it claimed the key, committed its attempt, charged ...
    claim = services.checkout_key_claim(key="crashed", request_hash="0" * 64)
    attempt = services.payment_attempt_start(
        checkout_key="crashed", amount=product.price, card_number=GOOD_CARD, claim=claim
    )
    services.payment_charge(
        card_number=GOOD_CARD, amount=product.price, idempotency_key=str(attempt.pk)
    )
    # ... and died. Past its claim, the retry is still told to wait:
    CheckoutRequest.objects.filter(pk=claim.pk).update(claimed_until=timezone.now())
    with pytest.raises(services.IdempotencyKeyInProgress):
        place_order((product, 1), idempotency_key="crashed")
    assert SimulatedCharge.objects.filter(status="charged").count() == 1

    services.payment_void(attempt_id=attempt.pk)  # the void's follow-up, when its wait ends
    placed = place_order((product, 1), idempotency_key="crashed")

    assert placed.created
    assert SimulatedCharge.objects.filter(status="charged").count() == 1
    assert SimulatedCharge.objects.filter(status="voided").count() == 1
    assert placed.order.payment_reference != SimulatedCharge.objects.get(status="voided").reference


@pytest.mark.django_db
def test_a_refused_card_frees_its_key_for_another_card():
    """The checkout page keeps its form's key when a card is refused; the shopper's next card
    goes through under it."""
    product = ProductFactory(stock=5)
    with pytest.raises(services.PaymentRefused):
        place_order((product, 1), idempotency_key="form-token", card_number=DECLINED_CARD)

    placed = place_order((product, 1), idempotency_key="form-token", card_number=GOOD_CARD)

    assert placed.created
    assert CheckoutRequest.objects.get(key="form-token").order == placed.order


@pytest.mark.django_db
def test_a_voided_charge_frees_its_key_once_the_void_ran():
    product = ProductFactory(stock=5)
    payment_faults_set(lose_answers=1)
    with pytest.raises(services.ChargeVoided):
        place_order((product, 1), idempotency_key="lost-answer")
    with pytest.raises(services.IdempotencyKeyInProgress):  # its charge is being voided
        place_order((product, 1), idempotency_key="lost-answer")

    follow_ups_run(kind=services.PAYMENT_VOID)

    placed = place_order((product, 1), idempotency_key="lost-answer")
    assert placed.created
    assert SimulatedCharge.objects.filter(status="charged").count() == 1
