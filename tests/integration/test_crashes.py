"""Crashes: a broker that dies mid-checkout, worker children killed mid-task.

Each test runs a stack of its own — web server, worker, beat — on a private Redis broker it can
kill, against the suite's database, so nothing here touches the machine's shared services.
"""

import os
import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from orders.models import FollowUp, Invoice, Order
from tests.factories import ProductFactory, checkout_payload
from tests.processes import (
    PrivateRedis,
    Supervised,
    free_port,
    start_beat,
    start_web,
    start_worker,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def private_stack(live_worker, worker_env, process_log_dir):
    """Web + worker + beat on a private Redis broker; ``stack["redis"]`` may be killed and restarted.

    The worker is supervised, as in production: a worker that dies is started again.
    """
    redis = PrivateRedis(process_log_dir).start()
    web_port = free_port()
    env = worker_env | {
        "CELERY_BROKER_URL": redis.url,
        "SITE_URL": f"http://127.0.0.1:{web_port}",
        # An email whose sender is killed after DATA is held as unknown before it is resent:
        # a second here, not fifteen minutes, so the test can wait for every order.
        "EMAIL_UNKNOWN_HOLD_SECONDS": "1",
    }
    processes = []
    try:
        processes.append(
            Supervised(
                lambda: start_worker(env, process_log_dir, concurrency=2, name="private-worker")
            )
        )
        processes.append(start_beat(env, process_log_dir, name="private-beat"))
        processes.append(start_web(env, process_log_dir, port=web_port))
        yield {
            "redis": redis,
            "web": f"http://127.0.0.1:{web_port}",
            "worker": processes[0],
            "processes": processes,
        }
    finally:
        for process in processes:
            process.stop()
        if redis.process.popen.poll() is None:
            redis.process.stop()


def checkout(base_url: str, sku: str) -> httpx.Response:
    return httpx.post(f"{base_url}/api/orders/", json=checkout_payload((sku, 1)), timeout=30)


def wait_all_ready(order_ids, timeout):
    def ready():
        return (
            not FollowUp.objects.filter(order_id__in=order_ids).exclude(status="succeeded").exists()
        )

    wait_until(
        ready, timeout=timeout, interval=0.5, message=f"{len(order_ids)} orders to become ready"
    )


def assert_exactly_one_effect_each(orders, smtp_server, warehouse, *, workers_were_killed=False):
    shipments = Counter(s["order_number"] for s in warehouse.shipments())
    resent = 0
    for order in orders:
        emails = smtp_server.confirmations(order.number)
        assert len({m["message_id"] for m in emails}) == 1, f"distinct emails for {order.number}"
        assert shipments[order.number] == 1, f"shipments for {order.number}"
        assert Invoice.objects.filter(order=order).count() == 1
        resent += len(emails) - 1
    if workers_were_killed:
        # SMTP has no idempotency key. A worker killed after DATA, before the server's 250 is
        # recorded, leaves the email unknown: it is resent after the hold, with the same Message-ID,
        # which mail servers and clients fold into one message. Anything more than that is a bug.
        assert resent <= max(1, len(orders) // 50), f"{resent} resends for {len(orders)} orders"
    else:
        assert resent == 0


BROKER_OUTAGE_SECONDS = 7


def test_checkout_answers_while_the_broker_is_down_and_every_order_becomes_ready(
    private_stack, smtp_server, warehouse
):
    base_url, redis = private_stack["web"], private_stack["redis"]
    sku = ProductFactory(stock=100).sku
    before = [checkout(base_url, sku) for _ in range(5)]

    redis.kill()
    outage_ends = time.monotonic() + BROKER_OUTAGE_SECONDS
    during, seconds = [], []
    for _ in range(10):
        started = time.monotonic()
        during.append(checkout(base_url, sku))
        seconds.append(time.monotonic() - started)
    # Long enough for beat to fail sending the relay at least once: beat must recover as well.
    time.sleep(max(0.0, outage_ends - time.monotonic()))

    # Bounded publish: a refused connection fails the publish at once; no retry loop in the request.
    assert max(seconds) < 10, seconds
    assert [r.status_code for r in before + during] == [201] * 15
    down_ids = [r.json()["id"] for r in during]
    assert set(
        FollowUp.objects.filter(order_id__in=down_ids).values_list("status", "published_at")
    ) == {("pending", None)}

    redis.start()  # same port, empty: whatever was queued before the crash is gone too
    all_ids = [r.json()["id"] for r in before + during]
    wait_all_ready(all_ids, timeout=90)

    assert_exactly_one_effect_each(Order.objects.filter(pk__in=all_ids), smtp_server, warehouse)
    assert set(FollowUp.objects.filter(order_id__in=all_ids).values_list("status", flat=True)) == {
        "succeeded"
    }


ORDERS_UNDER_FIRE = 200


def test_sigkilled_worker_children_lose_nothing_and_repeat_nothing(
    private_stack, smtp_server, warehouse
):
    base_url, worker = private_stack["web"], private_stack["worker"]
    warehouse.configure(latency_ms=20)  # tasks long enough that kills land mid-task
    skus = [ProductFactory(stock=1000).sku for _ in range(4)]
    kills = []
    stop = threading.Event()

    def kill_children():
        while not stop.is_set():
            time.sleep(random.uniform(0.2, 0.6))
            children = worker.children()
            if children:
                victim = random.choice(children)
                try:
                    os.kill(victim, signal.SIGKILL)
                    kills.append(victim)
                except ProcessLookupError:
                    pass

    killer = threading.Thread(target=kill_children, daemon=True)
    killer.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            responses = list(
                pool.map(lambda i: checkout(base_url, skus[i % 4]), range(ORDERS_UNDER_FIRE))
            )
        assert [r.status_code for r in responses] == [201] * ORDERS_UNDER_FIRE
        order_ids = [r.json()["id"] for r in responses]
        # Keep killing while the backlog drains, then let the survivors finish.
        wait_until(
            lambda: (
                FollowUp.objects.filter(order_id__in=order_ids, status="succeeded").count()
                >= len(order_ids) * 3 // 2
            ),
            timeout=180,
            interval=0.5,
            message="half of the follow-ups under fire",
        )
    finally:
        stop.set()
        killer.join()

    wait_all_ready(order_ids, timeout=240)

    assert len(kills) >= 10
    assert "WorkerLostError" in worker.log() or "SIGKILL" in worker.log()
    assert_exactly_one_effect_each(
        Order.objects.filter(pk__in=order_ids), smtp_server, warehouse, workers_were_killed=True
    )
