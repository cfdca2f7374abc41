"""order_place: the synchronous part of checkout."""

from decimal import Decimal

import pytest

from devtools.models import SimulatedCharge
from follow_ups.models import FollowUp
from orders import services
from orders.models import CheckoutRequest, Order, OrderLine, PaymentAttempt
from orders.payments import PaymentRefused
from orders.selectors import order_follow_ups
from tests.factories import DECLINED_CARD, INSUFFICIENT_FUNDS_CARD, ProductFactory, place_order

pytestmark = pytest.mark.django_db


def test_order_is_saved_with_lines_total_and_three_pending_follow_ups():
    seeds = ProductFactory(price=Decimal("3.50"), stock=10)
    trowel = ProductFactory(price=Decimal("18.00"), stock=5)

    order = place_order((seeds, 2), (trowel, 1)).order

    assert order.total == Decimal("25.00")
    assert order.number.startswith("CS-") and len(order.number) == 11
    assert [
        (line.sku, line.unit_price, line.quantity) for line in order.lines.order_by("sku")
    ] == sorted([(seeds.sku, Decimal("3.50"), 2), (trowel.sku, Decimal("18.00"), 1)])
    follow_ups = {f.kind: (f.status, f.attempts) for f in order_follow_ups(order)}
    assert follow_ups == {
        "confirmation_email": ("pending", 0),
        "warehouse_sync": ("pending", 0),
        "invoice": ("pending", 0),
    }


def test_stock_is_decremented():
    product = ProductFactory(stock=10)
    place_order((product, 3))
    product.refresh_from_db()
    assert product.stock == 7


def test_price_comes_from_the_catalog_at_checkout_time():
    product = ProductFactory(price=Decimal("10.00"))
    order = place_order((product, 1)).order
    product.price = Decimal("99.00")
    product.save()
    line = order.lines.get()
    assert line.unit_price == Decimal("10.00")
    assert order.total == Decimal("10.00")


def test_the_same_sku_twice_is_one_line_with_the_summed_quantity():
    product = ProductFactory(stock=10)
    order = services.order_place(
        email="ann@example.com",
        name="Ann",
        address=services.Address(line1="a", city="b", postal_code="c", country="NL"),
        lines=[services.LineRequest(product.sku, 2), services.LineRequest(product.sku, 3)],
        card_number="4242424242424242",
    ).order
    assert order.lines.get().quantity == 5


def test_more_than_in_stock_is_refused_and_nothing_is_written():
    product = ProductFactory(stock=2)
    with pytest.raises(services.OutOfStock) as refused:
        place_order((product, 3))
    assert refused.value.shortages[0].available == 2
    product.refresh_from_db()
    assert product.stock == 2
    assert not Order.objects.exists() and not FollowUp.objects.exists()


def test_unknown_sku_is_refused():
    with pytest.raises(services.UnknownProducts) as refused:
        services.order_place(
            email="ann@example.com",
            name="Ann",
            address=services.Address(line1="a", city="b", postal_code="c", country="NL"),
            lines=[services.LineRequest("NO-SUCH", 1)],
            card_number="4242424242424242",
        )
    assert refused.value.skus == ["NO-SUCH"]


@pytest.mark.parametrize(
    ("card", "code"),
    [(DECLINED_CARD, "card_declined"), (INSUFFICIENT_FUNDS_CARD, "insufficient_funds")],
)
def test_a_refused_payment_writes_nothing(card, code):
    product = ProductFactory(stock=5)
    with pytest.raises(PaymentRefused) as refused:
        place_order((product, 1), card_number=card)
    assert refused.value.code == code
    product.refresh_from_db()
    assert product.stock == 5
    assert not Order.objects.exists()
    assert not OrderLine.objects.exists()
    assert not SimulatedCharge.objects.exclude(status="declined").exists()  # no money moved
    assert PaymentAttempt.objects.get().status == PaymentAttempt.Status.DECLINED
    # The attempt's void was set aside: nothing will run for it.
    assert FollowUp.objects.get().status == FollowUp.Status.SUCCEEDED


def test_same_idempotency_key_and_request_returns_the_first_order():
    product = ProductFactory(stock=5)
    first = place_order((product, 1), idempotency_key="key-1")
    again = place_order((product, 1), idempotency_key="key-1")
    assert first.created and not again.created
    assert again.order.pk == first.order.pk
    assert Order.objects.count() == 1
    product.refresh_from_db()
    assert product.stock == 4


def test_same_idempotency_key_with_a_different_request_is_refused():
    product = ProductFactory(stock=5)
    place_order((product, 1), idempotency_key="key-1")
    with pytest.raises(services.IdempotencyKeyReused):
        place_order((product, 2), idempotency_key="key-1")
    assert Order.objects.count() == 1
    assert CheckoutRequest.objects.count() == 1
