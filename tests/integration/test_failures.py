"""Failures that do not heal by themselves: poison messages, providers that keep failing, replays."""

import json
import threading

import pytest
from celery import current_app
from django.core.management import call_command
from django_celery_results.models import TaskResult
from kombu import Connection, Exchange, Producer

from orders.models import FollowUp
from orders.services import TASK_NAME_BY_KIND
from tests.factories import ProductFactory, checkout_payload, place_order
from tests.processes import wait_until

pytestmark = pytest.mark.integration


def place(client, product) -> dict:
    response = client.post(
        "/api/orders/",
        data=json.dumps(checkout_payload((product.sku, 1))),
        content_type="application/json",
    )
    assert response.status_code == 201
    return response.json()


def statuses(order_id) -> dict[str, str]:
    return dict(FollowUp.objects.filter(order_id=order_id).values_list("kind", "status"))


def wait_statuses(order_id, expected, timeout=45):
    wait_until(
        lambda: statuses(order_id) == expected,
        timeout=timeout,
        interval=0.2,
        message=f"statuses {expected}",
    )


READY = {"confirmation_email": "succeeded", "warehouse_sync": "succeeded", "invoice": "succeeded"}


def job_finished_line(worker, task_id: str) -> dict | None:
    for line in worker.log().splitlines():
        if line.startswith("{") and task_id in line:
            entry = json.loads(line)
            if entry["event"] == "job.finished" and entry["task_id"] == task_id:
                return entry
    return None


def test_a_poison_message_fails_once_and_the_worker_carries_on(live_worker, client):
    poison = current_app.send_task(TASK_NAME_BY_KIND["invoice"], args=["not-a-follow-up-id"])
    missing = current_app.send_task(TASK_NAME_BY_KIND["invoice"], args=[2**31])

    wait_until(
        lambda: TaskResult.objects.filter(task_id=poison.id, status="FAILURE").exists(), timeout=30
    )
    # A follow-up task stores no result of its own (its row is the result); its job log says.
    finished = wait_until(lambda: job_finished_line(live_worker, missing.id), timeout=30)
    assert finished["outcome"] == "skipped"
    assert not TaskResult.objects.filter(task_id=missing.id).exists()

    order = place(client, ProductFactory())
    wait_statuses(order["id"], READY)
    # Not redelivered in a loop: one failure, recorded once.
    assert TaskResult.objects.filter(task_id=poison.id).count() == 1


def test_a_provider_that_keeps_failing_makes_a_dead_letter_after_the_last_attempt(
    live_worker, client, warehouse, settings
):
    warehouse.configure(outage=True)
    order = place(client, ProductFactory())

    wait_statuses(order["id"], READY | {"warehouse_sync": "dead"})
    dead = FollowUp.objects.get(order_id=order["id"], kind="warehouse_sync")
    assert dead.attempts == settings.FOLLOW_UP_MAX_ATTEMPTS
    assert dead.last_error.startswith(f"gave up after {settings.FOLLOW_UP_MAX_ATTEMPTS} attempts")
    assert "503" in dead.last_error

    # Other orders are unaffected once the provider is back.
    warehouse.configure(outage=False)
    healthy = place(client, ProductFactory())
    wait_statuses(healthy["id"], READY)
    assert client.get(f"/api/orders/{order['id']}/").json()["status"] == "placed"


def test_replaying_a_dead_letter_runs_it_once_more_and_only_once(
    live_worker, client, warehouse, smtp_server
):
    warehouse.configure(reject=True)
    order = place(client, ProductFactory())
    wait_statuses(order["id"], READY | {"warehouse_sync": "dead"})
    warehouse.configure(reject=False)

    # Two operators replay at the same time: the dead letter is reset and published once.
    threads = [
        threading.Thread(
            target=call_command, args=("replay_dead_letters",), kwargs={"order": order["number"]}
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    wait_statuses(order["id"], READY)
    assert [s["order_number"] for s in warehouse.shipments()].count(order["number"]) == 1
    assert FollowUp.objects.get(order_id=order["id"], kind="warehouse_sync").attempts == 1
    assert len(smtp_server.confirmations(order["number"])) == 1


def test_the_admin_action_replays_selected_dead_letters(
    live_worker, client, warehouse, admin_client
):
    warehouse.configure(reject=True)
    order = place(client, ProductFactory())
    wait_statuses(order["id"], READY | {"warehouse_sync": "dead"})
    warehouse.configure(reject=False)
    dead = FollowUp.objects.get(order_id=order["id"], kind="warehouse_sync")

    response = admin_client.post(
        "/admin/orders/followup/",
        {"action": "replay_dead_letters", "_selected_action": [dead.pk]},
        follow=True,
    )

    assert b"Replayed 1 dead letter(s)." in response.content
    wait_statuses(order["id"], READY)


def test_the_worker_refuses_pickled_messages(live_worker):
    order = place_order((ProductFactory(), 1)).order
    wait_statuses(order.pk, READY)
    invoice = FollowUp.objects.get(order=order, kind="invoice")
    FollowUp.objects.filter(pk=invoice.pk).update(status="pending", attempts=0)

    # A message crafted outside the app, for a real pending follow-up, with the pickle serializer.
    conf = current_app.conf
    with Connection(
        conf.broker_url,
        transport=conf.broker_transport,
        transport_options=conf.broker_transport_options,
    ) as connection:
        Producer(connection).publish(
            ([invoice.pk], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}),
            exchange=Exchange("", type="direct"),
            routing_key="bulk",
            serializer="pickle",
            headers={"lang": "py", "task": TASK_NAME_BY_KIND["invoice"], "id": "pickled-task"},
        )

    wait_until(
        lambda: "pickle" in live_worker.log(),
        timeout=30,
        message="the worker to refuse the message",
    )
    assert "Refusing to deserialize untrusted content of type pickle" in live_worker.log()
    assert FollowUp.objects.get(pk=invoice.pk).status == "pending"
    assert not TaskResult.objects.filter(task_id="pickled-task").exists()
