"""Failures that do not heal by themselves: poison messages, providers that keep failing, replays."""

import json
import threading
from datetime import timedelta

import pytest
from celery import current_app
from django.core.management import call_command
from django.utils import timezone
from kombu import Connection, Exchange, Producer

from follow_ups.models import FollowUp
from follow_ups.services import RUN_TASK_NAME
from orders.services import order_subject
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


def follow_ups_of(order_id):
    return FollowUp.objects.filter(subject=order_subject(order_id))


def statuses(order_id) -> dict[str, str]:
    return dict(follow_ups_of(order_id).values_list("kind", "status"))


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


def dead_message(task_id: str) -> FollowUp | None:
    return FollowUp.objects.filter(key=f"message:{task_id}", status="dead").first()


def test_messages_no_task_can_run_become_dead_letters_and_the_worker_carries_on(
    live_worker, client
):
    bad_arguments = current_app.send_task(RUN_TASK_NAME, args=["not-a-follow-up-id"])
    unknown_task = current_app.send_task("orders.tasks.no_such_task", args=[1], queue="default")
    missing_row = current_app.send_task(RUN_TASK_NAME, args=[2**31])

    for task_id in (bad_arguments.id, unknown_task.id):
        wait_until(lambda t=task_id: dead_message(t), timeout=30, message=f"dead letter {task_id}")
    kept = dead_message(unknown_task.id)
    assert (kept.kind, kept.label) == ("dead_message", "orders.tasks.no_such_task")
    assert kept.payload == {
        "task": "orders.tasks.no_such_task",
        "args": [1],
        "kwargs": {},
        "queue": "default",
    }
    assert "unknown task" in kept.last_error
    assert dead_message(bad_arguments.id).payload["args"] == ["not-a-follow-up-id"]
    # A row that no longer exists is nothing to do, not a dead letter: its job log says skipped.
    finished = wait_until(lambda: job_finished_line(live_worker, missing_row.id), timeout=30)
    assert finished["outcome"] == "skipped"
    assert dead_message(missing_row.id) is None

    order = place(client, ProductFactory())
    wait_statuses(order["id"], READY)
    # Each kept once, counted with the other dead letters on /ops/.
    from ops.selectors import job_metrics

    assert {m.name: m.dead_letters for m in job_metrics()}["dead_message"] == 2


def test_replaying_a_dead_message_publishes_the_original_again(live_worker, client):
    order = place(client, ProductFactory())
    wait_statuses(order["id"], READY)
    invoice = follow_ups_of(order["id"]).get(kind="invoice")
    # A message sent under a name this worker did not know yet (a deploy not rolled out).
    lost = current_app.send_task("orders.tasks.no_such_task", args=[invoice.pk], queue="bulk")
    kept = wait_until(lambda: dead_message(lost.id), timeout=30, message="the dead letter")
    FollowUp.objects.filter(pk=kept.pk).update(
        payload={"task": RUN_TASK_NAME, "args": [invoice.pk], "kwargs": {}, "queue": "bulk"}
    )  # the fix: the task it should have named

    call_command("replay_dead_letters", kind="dead_message")

    wait_until(
        lambda: FollowUp.objects.get(pk=kept.pk).status == "succeeded",
        timeout=30,
        message="the replay to publish the message",
    )
    assert "republished_as" in FollowUp.objects.get(pk=kept.pk).result


def test_a_provider_down_past_the_deadline_makes_a_dead_letter_and_spares_the_rest(
    live_worker, live_relay, client, warehouse, settings
):
    # The warehouse stays down: its breaker opens and the sync waits, spending no attempts.
    warehouse.configure(outage=True)
    order = place(client, ProductFactory())
    wait_statuses(order["id"], READY | {"warehouse_sync": "waiting"})
    waiting = follow_ups_of(order["id"]).get(kind="warehouse_sync")
    assert waiting.attempts == settings.FOLLOW_UP_BREAKER_THRESHOLD
    assert "503" in waiting.last_error
    assert client.get(f"/api/orders/{order['id']}/").json()["status"] == "delayed"

    # Its deadline (72 h) passes while it waits: the relay buries it.
    FollowUp.objects.filter(pk=waiting.pk).update(
        retrying_since=timezone.now() - timedelta(hours=settings.FOLLOW_UP_RETRY_FOR_HOURS)
    )
    wait_statuses(order["id"], READY | {"warehouse_sync": "dead"})
    dead = FollowUp.objects.get(pk=waiting.pk)
    assert dead.last_error == "gave up after 72 h: its provider did not answer"
    assert client.get(f"/api/orders/{order['id']}/").json()["status"] == "needs_attention"

    # Other orders are unaffected once the provider is back: the next probe (within 30 s)
    # closes the breaker.
    warehouse.configure(outage=False)
    healthy = place(client, ProductFactory())
    wait_statuses(healthy["id"], READY, timeout=75)
    assert client.get(f"/api/orders/{order['id']}/").json()["status"] == "needs_attention"


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
            target=call_command, args=("replay_dead_letters",), kwargs={"label": order["number"]}
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    wait_statuses(order["id"], READY)
    assert [s["order_number"] for s in warehouse.shipments()].count(order["number"]) == 1
    assert follow_ups_of(order["id"]).get(kind="warehouse_sync").attempts == 1
    assert len(smtp_server.confirmations(order["number"])) == 1


def test_the_admin_action_replays_selected_dead_letters(
    live_worker, client, warehouse, admin_client
):
    warehouse.configure(reject=True)
    order = place(client, ProductFactory())
    wait_statuses(order["id"], READY | {"warehouse_sync": "dead"})
    warehouse.configure(reject=False)
    dead = follow_ups_of(order["id"]).get(kind="warehouse_sync")

    response = admin_client.post(
        "/admin/follow_ups/followup/",
        {"action": "replay_dead_letters", "_selected_action": [dead.pk]},
        follow=True,
    )

    assert b"Replayed 1 dead letter(s)." in response.content
    wait_statuses(order["id"], READY)


def test_the_worker_refuses_pickled_messages(live_worker):
    order = place_order((ProductFactory(), 1)).order
    wait_statuses(order.pk, READY)
    invoice = follow_ups_of(order.pk).get(kind="invoice")
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
            headers={"lang": "py", "task": RUN_TASK_NAME, "id": "pickled-task"},
        )

    wait_until(
        lambda: "pickle" in live_worker.log(),
        timeout=30,
        message="the worker to refuse the message",
    )
    assert "Refusing to deserialize untrusted content of type pickle" in live_worker.log()
    assert FollowUp.objects.get(pk=invoice.pk).status == "pending"
    # Kept as a dead letter, not run: the decoder never handed it to a task.
    kept = wait_until(lambda: dead_message("pickled-task"), timeout=10, message="the dead letter")
    assert "pickle" in kept.last_error
