"""The embedded default (SQLite + the filesystem broker) holds up under concurrent checkouts.

This starts the stack `make run` starts with nothing configured — web server, worker, beat, the
follow-up relay, warehouse simulator — in a fresh folder, whatever database and broker the rest of
the suite uses, and places orders from several threads at once. Every order must become ready with exactly one email and one
shipment: no message lost to a half-written broker file, no "database is locked".
"""

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.factories import checkout_payload
from tests.processes import (
    BIN,
    REPO,
    free_port,
    start_beat,
    start_relay,
    start_warehouse,
    start_web,
    start_worker,
    wait_until,
)

# It builds the embedded stack whatever DATABASE_URL and CELERY_BROKER_URL say.
pytestmark = [pytest.mark.integration, pytest.mark.once]

ORDERS = 40
CLIENTS = 8


@pytest.fixture
def embedded_stack(tmp_path, smtp_server, process_log_dir):
    warehouse_port, web_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "VAR_DIR": str(tmp_path / "var"),
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
        "WAREHOUSE_URL": f"http://127.0.0.1:{warehouse_port}",
        "SITE_URL": f"http://127.0.0.1:{web_port}",
    }
    for command in (["migrate", "--no-input"], ["seed_catalog"]):
        subprocess.run(
            [str(BIN / "python"), "manage.py", *command],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
    processes = [
        start_warehouse(
            env, process_log_dir, port=warehouse_port, database=tmp_path / "warehouse.sqlite3"
        ),
        start_worker(env, process_log_dir, concurrency=2, name="embedded-worker"),
    ]
    processes.append(start_beat(env, process_log_dir, name="embedded-beat"))
    processes.append(start_relay(env, process_log_dir, name="embedded-relay"))
    processes.append(start_web(env, process_log_dir, port=web_port))
    smtp_server.clear()
    yield {
        "web": f"http://127.0.0.1:{web_port}",
        "warehouse": f"http://127.0.0.1:{warehouse_port}",
        "processes": processes,
        "broker_folder": tmp_path / "var" / "broker" / "queue",
    }
    for process in processes:
        process.stop()


def test_concurrent_checkouts_on_the_embedded_stack_lose_nothing(embedded_stack, smtp_server):
    base_url = embedded_stack["web"]
    skus = [item["sku"] for item in httpx.get(f"{base_url}/api/products/").json()["items"]][:4]

    def checkout(index: int) -> httpx.Response:
        payload = checkout_payload((skus[index % len(skus)], 1), (skus[(index + 1) % len(skus)], 2))
        return httpx.post(f"{base_url}/api/orders/", json=payload, timeout=30)

    with ThreadPoolExecutor(CLIENTS) as pool:
        responses = list(pool.map(checkout, range(ORDERS)))

    assert [r.status_code for r in responses] == [201] * ORDERS
    orders = [r.json() for r in responses]

    def all_ready():
        return all(
            httpx.get(f"{base_url}/api/orders/{o['id']}/").json()["status"] == "ready"
            for o in orders
        )

    wait_until(
        all_ready,
        timeout=120,
        interval=0.5,
        message="every order on the embedded stack to be ready",
    )
    for order in orders:
        assert len(smtp_server.confirmations(order["number"])) == 1
    shipments = httpx.get(f"{embedded_stack['warehouse']}/shipments").json()["shipments"]
    assert sorted(s["order_number"] for s in shipments) == sorted(o["number"] for o in orders)
    logs = "\n".join(process.log() for process in embedded_stack["processes"])
    assert "database is locked" not in logs
    assert "JSONDecodeError" not in logs and "Traceback" not in logs
    # Every message taken, and nothing half-written left in any queue's folder.
    left = [path.name for path in embedded_stack["broker_folder"].rglob("*") if ".msg" in path.name]
    assert left == []
