"""Flower, started exactly as production starts it, watching a real worker through its HTTP API.

The command line is ``Procfile.production``'s flower line, run by ``sh`` as honcho runs it;
docker-compose.yml's flower command is the same line (asserted below), so dropping
``--conf=config/flowerconfig.py`` from either makes these tests fail (``/metrics`` answers 200).
"""

import json
import os
import re
import subprocess

import httpx
import pytest

from follow_ups.models import FollowUp
from tests.factories import ProductFactory, checkout_payload
from tests.processes import BIN, REPO, Process, free_port, wait_until
from tests.test_compose import command_line, load, procfile

pytestmark = pytest.mark.integration


def wait_ready(client, order_ids, timeout=60):
    def all_ready():
        statuses = [
            client.get(f"/api/orders/{order_id}/").json()["status"] for order_id in order_ids
        ]
        return set(statuses) == {"ready"}

    wait_until(all_ready, timeout=timeout, interval=0.2, message="orders to become ready")


USER, PASSWORD = "ops", "flower-test-password"
KINDS = {"confirmation_email", "warehouse_sync", "invoice"}


def production_flower_command() -> list[str]:
    """Flower's line in Procfile.production, which compose runs too, as a shell runs it."""
    line = procfile()["flower"]
    assert command_line(load("docker-compose.yml")["services"]["flower"]) == line
    return ["sh", "-c", f"exec {line}"]


def production_flower_env(env: dict[str, str], *, port: int, **credentials: str) -> dict[str, str]:
    """The variables the production line reads: where to listen, and the credentials."""
    flower_env = {
        **env,
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "FLOWER_ADDRESS": "127.0.0.1",
        "FLOWER_PORT": str(port),
        "CELERY_FLOWER_USER": USER,
        "CELERY_FLOWER_PASSWORD": PASSWORD,
        **credentials,
    }
    return {name: value for name, value in flower_env.items() if value is not None}


@pytest.fixture(scope="module")
def flower(worker_env, process_log_dir):
    port = free_port()
    process = Process(
        "flower",
        production_flower_command(),
        production_flower_env(worker_env, port=port),
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
    order = response.json()
    wait_ready(client, [order["id"]])
    auth = (USER, PASSWORD)

    def follow_up_tasks_done():
        # One task runs every kind; its arguments, as Flower shows them, say which row and what.
        tasks = httpx.get(f"{flower}/api/tasks", auth=auth, timeout=5).json().values()
        done = {
            t["args"].split()[1]: t
            for t in tasks
            if t["name"] == "follow_ups.run"
            and t["state"] == "SUCCESS"
            and (t["args"] or "").endswith(order["number"])
        }
        return done if set(done) == KINDS else None

    tasks = wait_until(follow_up_tasks_done, timeout=30, message="Flower to see the three tasks")
    for task in tasks.values():
        assert task["uuid"]
        assert task["runtime"] is not None and task["runtime"] >= 0
        assert task["worker"].startswith("worker-")


def test_flowers_task_list_shows_which_order_and_follow_up_each_task_is(
    live_worker, flower, client
):
    """What an operator sees on /tasks: a column with each task's arguments ("[42] invoice
    CS-…": row id, kind, order number), and the search box finds an order's tasks by its number."""
    response = client.post(
        "/api/orders/",
        data=json.dumps(checkout_payload((ProductFactory().sku, 1))),
        content_type="application/json",
    )
    order = response.json()
    wait_ready(client, [order["id"]])
    auth = (USER, PASSWORD)
    rows = FollowUp.objects.filter(label=order["number"])
    expected = {f"[{row.pk}] {row.kind} {order['number']}" for row in rows}

    page = httpx.get(f"{flower}/tasks", auth=auth, timeout=5).text
    columns = re.findall(r'data-column="(\w+)"', page)
    assert columns[:2] == ["name", "args"]

    def search_by_order_number():
        # The request the page's search box makes (DataTables, server side).
        table = httpx.get(
            f"{flower}/tasks/datatable",
            params={
                "draw": 1,
                "start": 0,
                "length": 15,
                "search[value]": order["number"],
                "order[0][column]": 0,
                "order[0][dir]": "desc",
                "columns[0][data]": "received",
            },
            auth=auth,
            timeout=5,
        ).json()
        found = {task["args"] for task in table["data"] if task["state"] == "SUCCESS"}
        return found if found == expected else None

    wait_until(search_by_order_number, timeout=30, message=f"Flower to find {expected}")


def datatable_search(flower: str, search: str) -> list[dict]:
    """What the tasks page's search box (and its state buttons) ask Flower for."""
    return httpx.get(
        f"{flower}/tasks/datatable",
        params={
            "draw": 1,
            "start": 0,
            "length": 100,
            "search[value]": search,
            "order[0][column]": 0,
            "order[0][dir]": "desc",
            "columns[0][data]": "received",
        },
        auth=(USER, PASSWORD),
        timeout=5,
    ).json()["data"]


def test_flowers_retried_and_failed_buttons_find_a_retrying_and_a_dead_follow_up(
    live_worker, flower, client, smtp_server
):
    """The README's *Retried* (RETRY: an attempt that failed and waits in the database) and
    *Failed* (FAILURE: an attempt that made a dead letter), as the buttons' searches find them."""
    smtp_server.refuse_next("451 4.3.0 Try again later")
    delayed = client.post(
        "/api/orders/",
        data=json.dumps(checkout_payload((ProductFactory().sku, 1))),
        content_type="application/json",
    ).json()
    email = FollowUp.objects.filter(label=delayed["number"], kind="confirmation_email")
    wait_until(
        lambda: email.filter(attempts__gte=1).exclude(status="running").exists(),
        timeout=30,
        message="the first confirmation attempt to finish",
    )
    smtp_server.refuse_recipient("nobody@example.com", "550 5.1.1 Mailbox unavailable")
    dead = client.post(
        "/api/orders/",
        data=json.dumps(checkout_payload((ProductFactory().sku, 1), email="nobody@example.com")),
        content_type="application/json",
    ).json()
    retried_row = email.get()
    dead_row = FollowUp.objects.get(label=dead["number"], kind="confirmation_email")

    def found(state: str, args: str):
        tasks = datatable_search(flower, f"state:{state}")
        return [t for t in tasks if t["args"] == args and t["state"] == state] or None

    wait_until(
        lambda: found("RETRY", f"[{retried_row.pk}] confirmation_email {delayed['number']}"),
        timeout=30,
        message="Flower's Retried button to find the retried confirmation",
    )
    wait_until(
        lambda: found("FAILURE", f"[{dead_row.pk}] confirmation_email {dead['number']}"),
        timeout=30,
        message="Flower's Failed button to find the dead confirmation",
    )
    dead_row.refresh_from_db()
    assert dead_row.status == "dead"


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


@pytest.mark.parametrize(
    ("credentials", "refusal"),
    [
        ({"CELERY_FLOWER_PASSWORD": "change-me"}, "Flower needs a user and a password of 12"),
        ({"CELERY_FLOWER_PASSWORD": "short"}, "Flower needs a user and a password of 12"),
        ({"CELERY_FLOWER_PASSWORD": None}, "set CELERY_FLOWER_PASSWORD"),
        ({"CELERY_FLOWER_PASSWORD": ""}, "set CELERY_FLOWER_PASSWORD"),
        ({"CELERY_FLOWER_USER": None}, "set CELERY_FLOWER_USER"),
    ],
    ids=["example-password", "short-password", "no-password", "empty-password", "no-user"],
)
def test_flower_refuses_to_start_without_a_real_password(worker_env, credentials, refusal):
    result = subprocess.run(
        production_flower_command(),
        cwd=REPO,
        env=production_flower_env(worker_env, port=free_port(), **credentials),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert refusal in result.stderr
