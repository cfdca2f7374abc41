"""Flower, started the way the Procfile starts it, watching a real worker through its HTTP API."""

import json

import httpx
import pytest

from tests.factories import ProductFactory, checkout_payload
from tests.integration.test_follow_ups_on_a_worker import wait_ready
from tests.processes import BIN, Process, free_port, wait_until

pytestmark = pytest.mark.integration

USER, PASSWORD = "ops", "flower-test-password"
FOLLOW_UP_TASKS = {
    "orders.tasks.confirmation_email_task",
    "orders.tasks.warehouse_sync_task",
    "orders.tasks.invoice_render_task",
}


@pytest.fixture(scope="module")
def flower(worker_env, process_log_dir):
    port = free_port()
    process = Process(
        "flower",
        [
            str(BIN / "celery"),
            "-A",
            "config",
            "flower",
            "--conf=config/flowerconfig.py",
            "--address=127.0.0.1",
            f"--port={port}",
            f"--basic-auth={USER}:{PASSWORD}",
            "--max_tasks=1000",
        ],
        worker_env,
        process_log_dir,
    )
    process.wait_for_log("Visit me at", timeout=30)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _healthy(url), timeout=15, message="Flower to answer its health check")
    yield url
    process.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthcheck", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_flower_lists_each_follow_up_task_with_its_state_and_runtime(live_worker, flower, client):
    response = client.post(
        "/api/orders/",
        data=json.dumps(checkout_payload((ProductFactory().sku, 1))),
        content_type="application/json",
    )
    order_id = response.json()["id"]
    wait_ready(client, [order_id])
    auth = (USER, PASSWORD)

    def follow_up_tasks_done():
        tasks = httpx.get(f"{flower}/api/tasks", auth=auth, timeout=5).json().values()
        done = [t for t in tasks if t["name"] in FOLLOW_UP_TASKS and t["state"] == "SUCCESS"]
        return done if {t["name"] for t in done} >= FOLLOW_UP_TASKS else None

    tasks = wait_until(follow_up_tasks_done, timeout=30, message="Flower to see the three tasks")
    for task in tasks:
        assert task["uuid"]
        assert task["runtime"] is not None and task["runtime"] >= 0
        assert task["worker"].startswith("worker-")


def test_flower_and_its_api_refuse_requests_without_credentials(flower):
    for path in ("/", "/api/tasks", "/api/workers", "/tasks"):
        assert httpx.get(f"{flower}{path}", timeout=5).status_code == 401, path
    wrong = httpx.get(f"{flower}/api/tasks", auth=(USER, "wrong"), timeout=5)
    assert wrong.status_code == 401


def test_flowers_prometheus_metrics_are_not_public(flower):
    assert httpx.get(f"{flower}/metrics", timeout=5).status_code == 401
    authorised = httpx.get(f"{flower}/metrics", auth=(USER, PASSWORD), timeout=5)
    assert authorised.status_code == 200
    assert "flower_" in authorised.text
