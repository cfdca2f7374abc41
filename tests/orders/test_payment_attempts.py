"""No charge without an order or a void (docs/reliability.md, "Money").

The attempt and its waiting void are committed before the charge; the charge runs outside every
transaction and lock; the order commits on its own and sets the void aside. Charges and voids are
counted at the (simulated) gateway's own ledger, ``SimulatedCharge``.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import DatabaseError, OperationalError, connection, connections, transaction
from django.utils import timezone

from devtools.models import SimulatedCharge
from devtools.payment_gateway import payment_faults_set
from follow_ups.models import FollowUp
from orders import services
from orders.models import Order, PaymentAttempt
from shop.models import Product
from tests.factories import ProductFactory, place_order
from tests.ledger import follow_ups_run
from tests.processes import wait_until


def voids() -> FollowUp:
    return FollowUp.objects.filter(kind=services.PAYMENT_VOID)


class FailingOrderInsert:
    """The database refuses the order's INSERT, as a constraint, a full disk or a failover would."""

    def __call__(self, execute, sql, params, many, context):
        if sql.lstrip().upper().startswith('INSERT INTO "ORDERS_ORDER"'):
            raise OperationalError("simulated: the database went away while saving the order")
        return execute(sql, params, many, context)


@pytest.mark.django_db
def test_an_order_commits_with_its_charge_and_its_void_is_set_aside():
    product = ProductFactory(stock=5)
    order = place_order((product, 2)).order

    attempt = PaymentAttempt.objects.get()
    assert attempt.status == PaymentAttempt.Status.ATTACHED and attempt.order == order
    assert attempt.card_last4 == "4242" and attempt.amount == order.total
    charge = SimulatedCharge.objects.get()
    assert charge.reference == order.payment_reference == attempt.reference
    assert charge.status == SimulatedCharge.Status.CHARGED
    void = voids().get()
    assert void.status == FollowUp.Status.SUCCEEDED and "not_needed" in void.result
    # Running the ledger does not void a charge whose order committed.
    follow_ups_run()
    charge.refresh_from_db()
    assert charge.status == SimulatedCharge.Status.CHARGED


@pytest.mark.django_db
def test_a_database_failure_after_the_charge_voids_it_and_saves_nothing():
    product = ProductFactory(stock=5)
    with connection.execute_wrapper(FailingOrderInsert()), pytest.raises(DatabaseError):
        place_order((product, 1))

    assert not Order.objects.exists()
    product.refresh_from_db()
    assert product.stock == 5
    assert SimulatedCharge.objects.get().status == SimulatedCharge.Status.CHARGED
    attempt = PaymentAttempt.objects.get()
    assert "database went away" in attempt.failure
    void = voids().get()
    assert void.status == FollowUp.Status.PENDING and void.next_attempt_at is None  # due now

    follow_ups_run(kind=services.PAYMENT_VOID)

    assert SimulatedCharge.objects.get().status == SimulatedCharge.Status.VOIDED
    attempt.refresh_from_db()
    assert attempt.status == PaymentAttempt.Status.VOIDED
    assert voids().get().status == FollowUp.Status.SUCCEEDED


@pytest.mark.django_db
def test_an_answer_lost_after_charging_is_voided_and_the_customer_told():
    product = ProductFactory(stock=5)
    payment_faults_set(lose_answers=1)
    with pytest.raises(services.ChargeVoided, match="Any charge has been cancelled"):
        place_order((product, 1))
    assert not Order.objects.exists()
    assert SimulatedCharge.objects.get().status == SimulatedCharge.Status.CHARGED
    follow_ups_run(kind=services.PAYMENT_VOID)
    assert SimulatedCharge.objects.get().status == SimulatedCharge.Status.VOIDED

    # The next try is a new attempt, a new charge, and an order.
    order = place_order((product, 1)).order
    assert SimulatedCharge.objects.get(reference=order.payment_reference).status == "charged"


@pytest.mark.django_db(transaction=True)
def test_stock_sold_while_the_card_was_charged_voids_the_charge():
    product = ProductFactory(stock=1)
    payment_faults_set(answer_delay_ms=300)
    rival = threading.Thread(target=lambda: (time.sleep(0.1), _sell_everything(product.pk)))
    rival.start()
    try:
        with pytest.raises(services.OutOfStock):
            place_order((product, 1))
    finally:
        rival.join()
    assert not Order.objects.exists()
    follow_ups_run(kind=services.PAYMENT_VOID)
    assert SimulatedCharge.objects.get().status == SimulatedCharge.Status.VOIDED


def _sell_everything(product_id) -> None:
    try:
        Product.objects.filter(pk=product_id).update(stock=0)
    finally:
        connection.close()


@pytest.mark.django_db
def test_the_void_waits_when_nobody_brings_it_forward():
    """A request that died after charging leaves a void that only the wait makes due."""
    product = ProductFactory(stock=5)
    attempt = services.payment_attempt_start(
        checkout_key="", amount=product.price, card_number="4242424242424242"
    )
    services.payment_charge(
        card_number="4242424242424242", amount=product.price, idempotency_key=str(attempt.pk)
    )
    void = voids().get()
    assert void.status == FollowUp.Status.PENDING
    assert void.next_attempt_at >= timezone.now() + timedelta(seconds=50)  # production: 60 s
    follow_ups_run(kind=services.PAYMENT_VOID)  # not due: the claim refuses it
    assert SimulatedCharge.objects.get().status == SimulatedCharge.Status.CHARGED

    FollowUp.objects.filter(pk=void.pk).update(next_attempt_at=timezone.now())
    follow_ups_run(kind=services.PAYMENT_VOID)
    assert SimulatedCharge.objects.get().status == SimulatedCharge.Status.VOIDED


@pytest.mark.django_db
def test_a_void_that_won_the_race_stops_the_order_from_committing():
    """The order's commit and the void are a compare-and-set on the attempt: of the two, one wins,
    whatever PAYMENT_VOID_AFTER_SECONDS is."""
    product = ProductFactory(stock=5)
    attempt = services.payment_attempt_start(
        checkout_key="", amount=product.price, card_number="4242424242424242"
    )
    reference = services.payment_charge(
        card_number="4242424242424242", amount=product.price, idempotency_key=str(attempt.pk)
    )
    assert services.payment_void(attempt_id=attempt.pk)["voided"]

    with pytest.raises(services.ChargeVoided), transaction.atomic():
        services._order_create(
            email="ann@example.com",
            name="Ann",
            address=services.Address("Kerkstraat 1", "Amsterdam", "1017 GA", "NL"),
            quantities={product.sku: 1},
            total=product.price,
            attempt=attempt,
            payment_reference=reference,
        )
    assert not Order.objects.exists()
    product.refresh_from_db()
    assert product.stock == 5


@pytest.mark.django_db
def test_a_void_after_the_order_committed_voids_nothing():
    product = ProductFactory(stock=5)
    order = place_order((product, 1)).order
    attempt = order.payment_attempt
    assert services.payment_void(attempt_id=attempt.pk) == {"voided": False, "status": "attached"}
    assert SimulatedCharge.objects.get().status == SimulatedCharge.Status.CHARGED


@pytest.mark.django_db
def test_a_void_run_twice_voids_once():
    attempt = services.payment_attempt_start(
        checkout_key="", amount=10, card_number="4242424242424242"
    )
    services.payment_charge(
        card_number="4242424242424242", amount=10, idempotency_key=str(attempt.pk)
    )
    first = services.payment_void(attempt_id=attempt.pk)
    second = services.payment_void(attempt_id=attempt.pk)
    assert first["voided"] and second["voided"] and first["reference"] == second["reference"]
    assert SimulatedCharge.objects.filter(status="voided").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_card_is_charged_while_no_product_row_is_locked():
    """While the gateway thinks (a 1 s answer), another checkout can lock the same product."""
    product = ProductFactory(stock=5)
    payment_faults_set(answer_delay_ms=1000)
    observed: list[str] = []

    def lock_the_product_during_the_charge() -> None:
        time.sleep(0.5)
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("BEGIN")
                if other.vendor == "postgresql":
                    cursor.execute(
                        "SELECT id FROM shop_product WHERE id = %s FOR UPDATE NOWAIT", [product.pk]
                    )
                else:  # SQLite locks the database: a write must get through at once
                    cursor.execute("PRAGMA busy_timeout = 0")
                    cursor.execute(
                        "UPDATE shop_product SET stock = stock WHERE id = ?", [product.pk]
                    )
                cursor.execute("ROLLBACK")
            observed.append("locked")
        except Exception as exc:
            observed.append(f"blocked: {exc}")
        finally:
            other.close()

    prober = threading.Thread(target=lock_the_product_during_the_charge)
    prober.start()
    place_order((product, 1))
    prober.join()
    assert observed == ["locked"]


@pytest.mark.django_db(transaction=True)
def test_a_charge_that_reached_the_gateway_after_its_void_ran_is_voided_too():
    """A request that hangs past the wait: the void runs first and finds no charge, then the charge
    lands at the gateway. The order must not commit (the void won), and the late charge must not
    stay: the web process that sees it hands a second void to the engine."""
    product = ProductFactory(stock=5)
    payment_faults_set(charge_delay_ms=1500)

    def the_wait_ends_and_the_void_runs() -> None:
        try:
            wait_until(voids().exists, timeout=5, message="the attempt's void")
            voids().update(next_attempt_at=timezone.now())
            follow_ups_run(kind=services.PAYMENT_VOID)
        finally:
            connection.close()

    engine = threading.Thread(target=the_wait_ends_and_the_void_runs)
    engine.start()
    try:
        with pytest.raises(services.ChargeVoided):
            place_order((product, 1))
    finally:
        engine.join()
    assert PaymentAttempt.objects.get().status == PaymentAttempt.Status.VOIDED
    assert SimulatedCharge.objects.get().status == SimulatedCharge.Status.CHARGED  # landed late
    assert not Order.objects.exists()

    follow_ups_run(kind=services.PAYMENT_VOID)

    assert SimulatedCharge.objects.get().status == SimulatedCharge.Status.VOIDED
    assert voids().count() == 2 and set(voids().values_list("status", flat=True)) == {"succeeded"}
