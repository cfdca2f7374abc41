"""The warehouse's shipped feed, read with a cursor (the simulator and our client): in shipping
order, a page at a time, never past a shipment that has not shipped yet."""

import pytest

from devtools.warehouse_simulator import Warehouse
from orders import warehouse as warehouse_client


@pytest.fixture
def simulated(tmp_path):
    return Warehouse(str(tmp_path / "warehouse.sqlite3"), latency_ms=0, failure_rate=0)


def ship(simulated: Warehouse, count: int) -> list[str]:
    return [
        simulated.ship(f"key-{n}", {"order_number": f"CS-{n}", "lines": [1]})[0]["reference"]
        for n in range(count)
    ]


def end_of_feed(client_after: str = "") -> str:
    """The cursor after everything the shared simulator has shipped so far."""
    page = warehouse_client.shipments_shipped(after=client_after, limit=1000)
    return page.next_after if not page.shipments else end_of_feed(page.next_after)


def test_the_feed_is_paged_by_a_cursor_that_only_moves_forward(simulated):
    simulated.config["ship_after_seconds"] = 0
    references = ship(simulated, 5)

    first = simulated.shipped(after=0, limit=2)
    second = simulated.shipped(after=first[-1]["sequence"], limit=2)
    rest = simulated.shipped(after=second[-1]["sequence"], limit=2)

    assert [s["reference"] for s in first + second + rest] == references
    assert [s["order_number"] for s in first] == ["CS-0", "CS-1"]
    assert simulated.shipped(after=rest[-1]["sequence"], limit=2) == []


def test_the_feed_stops_at_the_first_shipment_not_shipped_yet(simulated):
    simulated.config["ship_after_seconds"] = 3600
    ship(simulated, 2)

    assert simulated.shipped(after=0, limit=10) == []


def test_the_client_reads_the_feed_page_by_page_from_where_it_left_off(warehouse):
    warehouse.configure(ship_after_seconds=0)
    start = end_of_feed()
    for n in range(3):
        key = f"feed-test-{start}-{n}"
        warehouse_client.shipment_request(
            idempotency_key=key, payload={"order_number": key, "lines": [{"sku": "X"}]}
        )

    first = warehouse_client.shipments_shipped(after=start, limit=2)
    second = warehouse_client.shipments_shipped(after=first.next_after, limit=2)
    third = warehouse_client.shipments_shipped(after=second.next_after, limit=2)

    assert [len(first.shipments), len(second.shipments), len(third.shipments)] == [2, 1, 0]
    assert [s["order_number"] for s in first.shipments + second.shipments] == [
        f"feed-test-{start}-{n}" for n in range(3)
    ]
    assert third.next_after == second.next_after  # nothing new: the cursor stays
    warehouse.configure(ship_after_seconds=60)
