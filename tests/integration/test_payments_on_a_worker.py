"""A charge never outlives its order unseen, with real processes (docs/reliability.md, "Money").

The web process is a real one; the void runs on the real worker, published at commit or by the
relay. Charges and voids are counted at the gateway's ledger (``SimulatedCharge``).
"""

import contextlib
import os
import signal
import threading
import time

import httpx
import pytest

from devtools.models import SimulatedCharge
from devtools.payment_gateway import payment_faults_set
from orders.models import Order, PaymentAttempt
from tests.factories import ProductFactory, checkout_payload
from tests.processes import free_port, start_web, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def web(worker_env, process_log_dir, live_worker):
    started = []

    def start(**env):
        port = free_port()
        process = start_web(
            worker_env | {k: str(v) for k, v in env.items()}, process_log_dir, port=port
        )
        started.append(process)
        return f"http://127.0.0.1:{port}", process

    yield start
    for process in started:
        process.stop()


def test_an_answer_lost_after_charging_is_voided_on_the_worker(web):
    url, _ = web()
    product = ProductFactory(stock=5)
    payment_faults_set(lose_answers=1)

    response = httpx.post(f"{url}/api/orders/", json=checkout_payload((product.sku, 1)), timeout=30)

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "charge_voided"
    assert not Order.objects.exists()
    # Published at commit, not left to the relay (none runs here): voided within seconds.
    wait_until(
        lambda: SimulatedCharge.objects.filter(status="voided").count() == 1,
        timeout=15,
        message="the lost charge to be voided",
    )
    assert SimulatedCharge.objects.count() == 1

    again = httpx.post(f"{url}/api/orders/", json=checkout_payload((product.sku, 1)), timeout=30)
    assert again.status_code == 201
    assert SimulatedCharge.objects.filter(status="charged").count() == 1


def test_a_web_process_killed_after_the_charge_leaves_a_void_the_relay_runs(web, live_relay):
    """SIGKILL between the charge and the order's commit: no order, and the engine voids the
    charge once the attempt's wait ends. The wait is shortened to 5 s here (production: 60 s); the
    race between a late commit and the void does not depend on it
    (tests/orders/test_payment_attempts.py, test_a_void_that_won_the_race_...)."""
    url, process = web(PAYMENT_VOID_AFTER_SECONDS=5)
    product = ProductFactory(stock=5)
    payment_faults_set(answer_delay_ms=3000)

    def checkout():
        with contextlib.suppress(httpx.HTTPError):  # the server dies under the request
            httpx.post(f"{url}/api/orders/", json=checkout_payload((product.sku, 1)), timeout=30)

    client = threading.Thread(target=checkout)
    client.start()
    wait_until(lambda: SimulatedCharge.objects.exists(), timeout=10, message="the charge")
    os.killpg(process.popen.pid, signal.SIGKILL)
    client.join()
    payment_faults_set()

    assert not Order.objects.exists()
    killed_at = time.monotonic()
    wait_until(
        lambda: SimulatedCharge.objects.get().status == "voided",
        timeout=30,
        message="the relay to publish the void once it is due, and the worker to run it",
    )
    assert time.monotonic() - killed_at < 30
    assert PaymentAttempt.objects.get().status == PaymentAttempt.Status.VOIDED
    product.refresh_from_db()
    assert product.stock == 5
