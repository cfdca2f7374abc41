"""The web's readiness is the database's (docs/reliability.md, "Security, tested"): a real web
process whose broker is gone stays in rotation by compose's own health check and takes orders;
``/healthz/background`` is the one that says the broker is down."""

import subprocess

import httpx
import pytest

from follow_ups.models import FollowUp
from orders.models import Order
from tests.factories import ProductFactory, checkout_payload
from tests.processes import BIN, free_port, start_web
from tests.test_compose import load

pytestmark = pytest.mark.integration


@pytest.fixture
def web_without_a_broker(worker_env, process_log_dir, transactional_db):
    """A web process whose broker is a port nothing listens on."""
    port = free_port()
    broker = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    web = start_web(worker_env | {"CELERY_BROKER_URL": broker}, process_log_dir, port=port)
    yield port
    web.stop()


def compose_web_health_check(port: int) -> int:
    """docker-compose.yml's health check for the web, run as compose runs it, at this port."""
    test = load("docker-compose.yml")["services"]["web"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"] and "8000" in test[-1]
    command = [str(BIN / "python"), *(arg.replace("8000", str(port)) for arg in test[2:])]
    return subprocess.run(command, capture_output=True, timeout=30).returncode


def test_a_web_whose_broker_is_gone_stays_ready_and_takes_orders(web_without_a_broker):
    url = f"http://127.0.0.1:{web_without_a_broker}"
    product = ProductFactory(stock=5)

    assert compose_web_health_check(web_without_a_broker) == 0
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": True}
    background = httpx.get(f"{url}/healthz/background", timeout=30)
    assert background.status_code == 503
    assert background.json()["checks"]["broker"] is False

    placed = httpx.post(f"{url}/api/orders/", json=checkout_payload((product.sku, 1)), timeout=60)

    assert placed.status_code == 201, placed.text
    order = Order.objects.get(pk=placed.json()["id"])
    # Saved with its follow-ups, which wait in the database for the relay.
    waiting = FollowUp.objects.filter(label=order.number)
    assert waiting.count() == 3
    assert not waiting.filter(published_at__isnull=False).exists()
    assert compose_web_health_check(web_without_a_broker) == 0
