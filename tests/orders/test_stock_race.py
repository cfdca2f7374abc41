"""Fifty buyers, ten units: the row locks in order_place sell exactly what is there."""

import threading

import pytest
from django.db import connection

from devtools.models import SimulatedCharge
from follow_ups.models import FollowUp
from orders import services
from orders.models import Order, PaymentAttempt
from tests.factories import ProductFactory, place_order

BUYERS = 50
UNITS = 10


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_buyers_for_the_last_ten_units_make_exactly_ten_orders():
    last_units = ProductFactory(stock=UNITS)
    other = ProductFactory(stock=1000)
    start = threading.Barrier(BUYERS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def buy(index: int) -> None:
        start.wait()
        try:
            # Half the carts also hold another product, listed first or second, to invite deadlocks.
            items = (
                [(last_units, 1)]
                if index % 2
                else [(other, 1), (last_units, 1)][:: 1 if index % 4 else -1]
            )
            place_order(*items, email=f"buyer{index}@example.com")
            outcome = "ordered"
        except services.OutOfStock:
            outcome = "out of stock"
        except (
            Exception
        ) as exc:  # any other error (a deadlock, "database is locked") fails the test
            outcome = f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=buy, args=(i,)) for i in range(BUYERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["ordered"] * UNITS + ["out of stock"] * (BUYERS - UNITS)
    last_units.refresh_from_db()
    assert last_units.stock == 0
    assert Order.objects.count() == UNITS
    assert FollowUp.objects.filter(subject__startswith="order:").count() == UNITS * 3
    # Buyers who passed the unlocked stock check were charged outside the locks; every charge
    # without an order has its void brought forward (due now), and none with an order does.
    charged = SimulatedCharge.objects.count()
    assert charged >= UNITS
    voids_due = FollowUp.objects.filter(
        kind=services.PAYMENT_VOID, status=FollowUp.Status.PENDING, next_attempt_at=None
    )
    assert voids_due.count() == charged - UNITS
    assert PaymentAttempt.objects.filter(status=PaymentAttempt.Status.ATTACHED).count() == UNITS
