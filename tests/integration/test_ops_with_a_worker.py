"""Ops on a real worker: JSON job log lines carrying the web request's id, workers online."""

import json
import uuid

import pytest
from celery import current_app

from ops import selectors
from ops.models import QueueSample
from tests.factories import ProductFactory, checkout_payload
from tests.processes import wait_until

pytestmark = pytest.mark.integration


def wait_ready(client, order_ids, timeout=60):
    def all_ready():
        statuses = [
            client.get(f"/api/orders/{order_id}/").json()["status"] for order_id in order_ids
        ]
        return set(statuses) == {"ready"}

    wait_until(all_ready, timeout=timeout, interval=0.2, message="orders to become ready")


def job_lines(worker, text: str) -> list[dict]:
    """The worker's JSON job lines that mention ``text`` (a request id, an order number)."""
    lines = []
    for line in worker.log().splitlines():
        start = line.find("{")
        if start < 0 or text not in line:
            continue
        try:
            lines.append(json.loads(line[start:]))
        except json.JSONDecodeError:
            continue
    return lines


def test_one_grep_for_the_request_id_follows_an_order_from_click_to_invoice(live_worker, client):
    request_id = f"test-{uuid.uuid4().hex}"
    response = client.post(
        "/api/orders/",
        data=json.dumps(checkout_payload((ProductFactory().sku, 1))),
        content_type="application/json",
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 201
    assert response["X-Request-ID"] == request_id
    order = response.json()
    wait_ready(client, [order["id"]])

    def three_jobs_finished():
        finished = [
            line for line in job_lines(live_worker, request_id) if line["event"] == "job.finished"
        ]
        return finished if len(finished) == 3 else None

    finished = wait_until(three_jobs_finished, timeout=20, message="three job.finished lines")
    assert {line["kind"] for line in finished} == {
        "confirmation_email",
        "warehouse_sync",
        "invoice",
    }
    for line in finished:
        assert line["job"] == "follow_ups.run"
        assert line["request_id"] == request_id
        assert line["label"] == order["number"]
        assert line["attempt"] == 1
        assert line["outcome"] == "succeeded"
        assert line["error"] is None
        assert line["duration_ms"] >= 0
        assert line["task_id"]
    started = [e for e in job_lines(live_worker, request_id) if e["event"] == "job.started"]
    assert len(started) == 3


def test_a_retry_is_logged_with_its_error_and_the_next_attempt_succeeds(
    live_worker, live_relay, client, smtp_server
):
    smtp_server.refuse_next("451 4.3.0 Try again later")
    request_id = f"test-{uuid.uuid4().hex}"
    response = client.post(
        "/api/orders/",
        data=json.dumps(checkout_payload((ProductFactory().sku, 1))),
        content_type="application/json",
        headers={"X-Request-ID": request_id},
    )
    order = response.json()
    wait_ready(client, [order["id"]])

    def email_lines():
        # The retry is published by the relay, outside the request: grep the order number.
        lines = [
            line
            for line in job_lines(live_worker, order["number"])
            if line["event"] == "job.finished" and line.get("kind") == "confirmation_email"
        ]
        return lines if len(lines) == 2 else None

    first, second = wait_until(email_lines, timeout=20, message="two email job lines")
    assert (first["attempt"], first["outcome"], first["request_id"]) == (1, "retrying", request_id)
    assert first["error"].startswith("EmailTemporaryFailure: SMTP 451")
    assert first["level"] == "info"  # a retry is expected, not an error
    assert (second["attempt"], second["outcome"]) == (2, "succeeded")
    assert second["follow_up_id"] == first["follow_up_id"]


def test_the_running_worker_answers_the_ops_ping(live_worker):
    workers = wait_until(selectors.workers_online, timeout=10, message="a worker to answer")
    assert any(name.startswith("worker-") for name in workers)


def test_the_queue_sample_task_records_a_sample_per_queue_on_the_worker(live_worker):
    current_app.send_task("ops.tasks.queue_sample_task")

    wait_until(
        lambda: (
            set(QueueSample.objects.values_list("queue", flat=True))
            == {"critical", "default", "bulk"}
        ),
        timeout=20,
        message="a sample for each queue",
    )
