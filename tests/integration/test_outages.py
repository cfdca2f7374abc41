"""Provider outages are waited out: orders arrive through an outage, nothing is buried, every order
is ready soon after the provider returns, and each effect lands once, counted at the warehouse and
the SMTP server.

Every timing is the production default (retries from 2 s capped at 300 s, a 72-hour deadline, the
breaker opening after 5 failures and probing every 30 s, leases 15 s); the stack runs on a Redis
server of its own. The CI-length cases use outages of about a minute and a half, and show why the
outcome does not depend on the length: once the breaker is open the provider sees one probe per
30 s whatever arrives, and the waiting rows spend nothing but time, against a deadline of days.
The 10-minute case (marked ``long``) is run by hand: ``LONG_TESTS=1 pytest -m long``.
"""

import time

import httpx
import pytest

from follow_ups.models import Breaker, FollowUp, RelayState
from orders.services import CONFIRMATION_EMAIL, WAREHOUSE_SYNC, order_subject
from tests.factories import ProductFactory
from tests.processes import wait_until

# Their broker is a private Redis and they mostly wait: CI runs them once, beside the several-hosts
# suite (.ci/run).
pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.once, pytest.mark.waits]

PRODUCTION_RETRIES = {"FOLLOW_UP_RETRY_BASE_SECONDS": "2", "FOLLOW_UP_RETRY_CAP_SECONDS": "300"}
PROBE_SECONDS = 30  # FOLLOW_UP_BREAKER_OPEN_SECONDS' default
RECOVERY_LIMIT_SECONDS = 180  # every order ready within 3 minutes of the provider's return


def rows_of(order_ids, kind: str):
    return FollowUp.objects.filter(subject__in=[order_subject(pk) for pk in order_ids], kind=kind)


def order_status(stack, order_id) -> str:
    return httpx.get(f"{stack.web_url}/api/orders/{order_id}/", timeout=10).json()["status"]


def place_through(stack, *, seconds: float, orders: int) -> list[str]:
    """Place ``orders`` orders evenly over ``seconds``."""
    product = ProductFactory(stock=10_000)
    ids: list[str] = []
    started = time.monotonic()
    for number in range(orders):
        time.sleep(max(0.0, started + number * seconds / orders - time.monotonic()))
        response = stack.checkout(product.sku)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    time.sleep(max(0.0, started + seconds - time.monotonic()))
    return ids


def provider_outage_is_waited_out(
    stack, *, kind: str, provider: str, outage_seconds: float, orders: int, calls, stop, start
) -> dict:
    """The shared script: an outage with orders arriving through it, then the return."""
    stop()
    statuses_seen: set[str] = set()
    ids: list[str] = []

    ids += place_through(stack, seconds=outage_seconds, orders=orders)
    for pk in ids[:: max(1, len(ids) // 5)]:
        statuses_seen.add(order_status(stack, pk))

    # Stationary once the breaker is open: over two probe intervals the provider sees at most
    # the probes, however many rows wait, and no row has been buried.
    breaker = Breaker.objects.get(provider=provider)
    assert breaker.state in ("open", "half_open"), breaker.state
    before = calls()
    time.sleep(2 * PROBE_SECONDS)
    during_quiet = calls() - before
    waiting = rows_of(ids, kind).filter(status="waiting").count()
    assert during_quiet <= 3, (
        f"{during_quiet} calls in {2 * PROBE_SECONDS} s with {waiting} waiting"
    )
    assert waiting >= orders // 2
    assert not rows_of(ids, kind).filter(status="dead").exists()
    assert order_status(stack, ids[0]) == "delayed"  # "Delayed", never "Needs our attention"
    statuses_seen.add(order_status(stack, ids[0]))

    returned_at = time.monotonic()
    start()
    wait_until(
        lambda: (
            not FollowUp.objects.filter(subject__in=[order_subject(pk) for pk in ids])
            .exclude(status="succeeded")
            .exists()
        ),
        timeout=RECOVERY_LIMIT_SECONDS + 30,
        interval=1,
        message="every order to be ready after the provider's return",
    )
    recovery = time.monotonic() - returned_at
    assert recovery <= RECOVERY_LIMIT_SECONDS
    assert all(order_status(stack, pk) == "ready" for pk in ids)
    assert "needs_attention" not in statuses_seen
    # The lost-message repair never fired: the broker lost nothing, and no retry was mistaken for
    # a lost message.
    assert RelayState.objects.get().republished == 0
    return {"ids": ids, "recovery_seconds": recovery, "quiet_calls": during_quiet}


@pytest.fixture
def outage_stack(private_stack, warehouse, smtp_server):
    stack = private_stack(extra_env=PRODUCTION_RETRIES)
    yield stack
    warehouse.configure(outage=False)
    smtp_server.outage(None)


def one_confirmation_each(smtp_server, order_ids) -> None:
    for number in rows_of(order_ids, CONFIRMATION_EMAIL).values_list("label", flat=True):
        assert len(smtp_server.confirmations(number)) == 1, number


def warehouse_outage(stack, warehouse, smtp_server, *, outage_seconds: float, orders: int) -> None:
    result = provider_outage_is_waited_out(
        stack,
        kind=WAREHOUSE_SYNC,
        provider="warehouse",
        outage_seconds=outage_seconds,
        orders=orders,
        calls=warehouse.shipment_requests,
        stop=lambda: warehouse.configure(outage=True),
        start=lambda: warehouse.configure(outage=False),
    )
    numbers = set(
        rows_of(result["ids"], WAREHOUSE_SYNC).values_list("label", flat=True)
    )  # the order numbers
    shipped = [s["order_number"] for s in warehouse.shipments() if s["order_number"] in numbers]
    assert sorted(shipped) == sorted(numbers)  # one shipment each, none twice
    one_confirmation_each(smtp_server, result["ids"])
    print(
        f"warehouse outage {outage_seconds:.0f} s, {orders} orders:",
        {k: v for k, v in result.items() if k != "ids"},
    )


def test_a_warehouse_outage_is_waited_out_and_every_order_ships_once(
    outage_stack, warehouse, smtp_server
):
    warehouse_outage(outage_stack, warehouse, smtp_server, outage_seconds=60, orders=20)


def test_an_smtp_outage_is_waited_out_and_every_confirmation_is_sent_once(
    outage_stack, smtp_server
):
    def calls():
        return smtp_server.data_commands

    result = provider_outage_is_waited_out(
        outage_stack,
        kind=CONFIRMATION_EMAIL,
        provider="smtp",
        outage_seconds=60,
        orders=20,
        calls=calls,
        stop=lambda: smtp_server.outage("451 4.3.0 Try again later"),
        start=lambda: smtp_server.outage(None),
    )
    one_confirmation_each(smtp_server, result["ids"])
    print("smtp outage:", {k: v for k, v in result.items() if k != "ids"})


@pytest.mark.long
def test_a_ten_minute_warehouse_outage_is_waited_out(outage_stack, warehouse, smtp_server):
    warehouse_outage(outage_stack, warehouse, smtp_server, outage_seconds=600, orders=150)
