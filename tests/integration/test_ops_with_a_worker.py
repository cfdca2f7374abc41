"""Ops on a real worker: JSON job log lines carrying the web request's id, workers online."""

import json
import uuid

import pytest
from celery import current_app

from ops import selectors
from ops.models import QueueSample
from tests.factories import ProductFactory, checkout_payload
from tests.integration.test_follow_ups_on_a_worker import wait_ready
from tests.processes import wait_until

pytestmark = pytest.mark.integration


def job_lines(worker, request_id: str) -> list[dict]:
    lines = []
    for line in worker.log().splitlines():
        start = line.find("{")
        if start < 0 or request_id not in line:
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
    assert {line["job"] for line in finished} == {
        "orders.tasks.confirmation_email_task",
        "orders.tasks.warehouse_sync_task",
        "orders.tasks.invoice_render_task",
    }
    for line in finished:
        assert line["request_id"] == request_id
        assert line["order_number"] == order["number"]
        assert line["attempt"] == 1
        assert line["outcome"] == "succeeded"
        assert line["error"] is None
        assert line["duration_ms"] >= 0
        assert line["task_id"]
    started = [e for e in job_lines(live_worker, request_id) if e["event"] == "job.started"]
    assert len(started) == 3


def test_a_retry_is_logged_with_its_error_and_the_next_attempt_succeeds(
    live_worker, client, smtp_server
):
    smtp_server.refuse_next("451 4.3.0 Try again later")
    request_id = f"test-{uuid.uuid4().hex}"
    response = client.post(
        "/api/orders/",
        data=json.dumps(checkout_payload((ProductFactory().sku, 1))),
        content_type="application/json",
        headers={"X-Request-ID": request_id},
    )
    wait_ready(client, [response.json()["id"]])

    def email_lines():
        lines = [
            line
            for line in job_lines(live_worker, request_id)
            if line["event"] == "job.finished"
            and line["job"] == "orders.tasks.confirmation_email_task"
        ]
        return lines if len(lines) == 2 else None

    first, second = wait_until(email_lines, timeout=20, message="two email job lines")
    assert (first["attempt"], first["outcome"]) == (1, "retrying")
    assert "451" in first["error"]
    assert (second["attempt"], second["outcome"]) == (2, "succeeded")


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
