"""The fault matrix: the promise attacked with real processes, effects counted where they land.

Each case injects one fault the shop must survive, on real processes (web, a supervised worker, the
relay; a real broker; the suite's database), and counts effects at the SMTP server, the warehouse
simulator and the invoice table, never in our own bookkeeping. Every recovery timing is the
production default (leases 15 s, relay grace 10 s, lost-message checks every 5 s); where a test sets
another knob it says why the behaviour does not depend on it.

Cases with a ``private_stack`` run on a Redis server of their own that the test may kill; the others
use the suite's worker and broker.
"""

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from kombu import Connection

from follow_ups.models import FollowUp, RelayState
from notifications.models import EmailDelivery
from orders.models import Invoice, Order
from orders.services import CHECKOUT_KINDS, CONFIRMATION_EMAIL, WAREHOUSE_SYNC, order_subject
from tests.factories import ProductFactory, place_order
from tests.processes import (
    wait_until,
)

pytestmark = pytest.mark.integration

QUEUES = ("critical", "default", "bulk")


def follow_ups_of(order_ids):
    return FollowUp.objects.filter(subject__in=[order_subject(pk) for pk in order_ids])


def not_ready(order_ids) -> int:
    return follow_ups_of(order_ids).exclude(status="succeeded").count()


def wait_all_ready(order_ids, timeout: float) -> float:
    """Wait until every order is ready; return how long it took."""
    started = time.monotonic()
    wait_until(
        lambda: not_ready(order_ids) == 0,
        timeout=timeout,
        interval=0.5,
        message=f"{len(order_ids)} orders to become ready",
    )
    return time.monotonic() - started


def held_confirmations(order_ids) -> set[str]:
    """Subjects of the orders whose confirmation waits out the hold of an email of unknown fate."""
    waiting = follow_ups_of(order_ids).filter(kind=CONFIRMATION_EMAIL, status="retrying")
    unknown = set(
        EmailDelivery.objects.filter(status=EmailDelivery.Status.UNKNOWN).values_list(
            "purpose_key", flat=True
        )
    )
    return {
        row.subject
        for row in waiting
        if f"order-{row.subject.removeprefix('order:')}-confirmation" in unknown
    }


def assert_one_effect_each(order_ids, smtp_server, warehouse, *, resends_allowed=0) -> int:
    """One shipment and one invoice per order; one email per order (one Message-ID). Returns the
    resends (same Message-ID again) seen, which must stay within ``resends_allowed``."""
    orders = list(Order.objects.filter(pk__in=order_ids))
    assert len(orders) == len(order_ids)
    shipments = Counter(s["order_number"] for s in warehouse.shipments())
    invoices = Counter(Invoice.objects.filter(order__in=orders).values_list("order_id", flat=True))
    resends = 0
    for order in orders:
        emails = smtp_server.confirmations(order.number)
        assert len({m["message_id"] for m in emails}) == 1, f"emails for {order.number}: {emails}"
        assert shipments[order.number] == 1, f"shipments for {order.number}"
        assert invoices[order.pk] == 1, f"invoices for {order.number}"
        assert follow_ups_of([order.pk]).count() == len(CHECKOUT_KINDS)
        resends += len(emails) - 1
    assert resends <= resends_allowed, f"{resends} resends for {len(orders)} orders"
    return resends


# --- 1. The worker's broker connection closed mid-email ---------------------------------------


def broker_connections() -> int:
    """Client connections of this suite's RabbitMQ vhost."""
    listed = subprocess.run(
        ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "vhost"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(line.strip() == suite_vhost() for line in listed.splitlines())


def suite_vhost() -> str:
    return Connection(settings.CELERY_BROKER_URL).virtual_host or "/"


def close_broker_connections() -> None:
    """Close every client connection of this suite's RabbitMQ vhost, as a network blip would: one
    ``rabbitmqctl`` call (each call starts an Erlang VM, a second or more on a busy machine; one
    call per connection could outlast the email it is meant to interrupt)."""
    subprocess.run(
        ["rabbitmqctl", "close_all_connections", "--vhost", suite_vhost(), "fault matrix"],
        check=True,
        capture_output=True,
    )


@pytest.mark.rabbitmq
def test_a_broker_connection_closed_mid_email_sends_one_email(live_worker, smtp_server):
    assert broker_connections() >= 1  # the worker's, at least
    smtp_server.delay_next_reply(6)  # a slow SMTP server: the email is in flight for 6 s
    order = place_order((ProductFactory(), 1)).order
    confirmation = follow_ups_of([order.pk]).get(kind=CONFIRMATION_EMAIL)
    wait_until(
        lambda: FollowUp.objects.get(pk=confirmation.pk).status == "running",
        timeout=30,
        message="the confirmation email to be in flight",
    )
    time.sleep(1)  # inside DATA, waiting for the server's reply

    close_broker_connections()
    wait_all_ready([order.pk], timeout=60)

    # RabbitMQ re-delivered the unacknowledged message while the first execution was still
    # sending; the copy found the row held under a live lease and did nothing.
    started = [
        line
        for line in live_worker.log().splitlines()
        if '"job.started"' in line and f'"follow_up_id": {confirmation.pk},' in line
    ]
    assert len(started) >= 2, "the message was not re-delivered: the fault did not happen"
    assert len(smtp_server.confirmations(order.number)) == 1
    confirmation.refresh_from_db()
    assert (confirmation.status, confirmation.attempts) == ("succeeded", 1)


# --- 2. The broker killed and restarted empty during checkouts ---------------------------------


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_the_broker_killed_and_restarted_empty_during_checkouts_loses_nothing(
    private_stack, smtp_server, warehouse
):
    stack = private_stack()
    warehouse.configure(latency_ms=300)  # a backlog builds, so messages die with the broker
    sku = ProductFactory(stock=1000).sku
    before = [stack.checkout(sku) for _ in range(20)]
    assert sum(stack.queued().values()) > 0, "nothing was queued when the broker died"

    stack.redis.kill()
    during = [stack.checkout(sku) for _ in range(10)]
    stack.redis.start()  # same port, empty: what was queued before the crash is gone
    restarted = time.monotonic()
    warehouse.configure(latency_ms=5)

    assert [r.status_code for r in before + during] == [201] * 30
    order_ids = [r.json()["id"] for r in before + during]
    wait_all_ready(order_ids, timeout=60)
    recovered_in = time.monotonic() - restarted
    print(f"every order ready {recovered_in:.1f} s after the broker restarted")

    assert_one_effect_each(order_ids, smtp_server, warehouse)
    assert RelayState.objects.get().republished > 0  # the relay, not luck, repaired it


# --- 3. Worker children SIGKILLed every half second ----------------------------------------------

ORDERS_UNDER_FIRE = 200


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_worker_children_sigkilled_every_half_second_lose_nothing_and_repeat_nothing(
    private_stack, smtp_server, warehouse
):
    stack = private_stack()
    warehouse.configure(latency_ms=20)  # effects long enough that kills land mid-task
    skus = [ProductFactory(stock=1000).sku for _ in range(4)]
    kills = []
    stop = threading.Event()

    def kill_children():
        while not stop.wait(0.5):
            children = stack.worker.children()
            if children:
                try:
                    os.kill(random.choice(children), signal.SIGKILL)
                    kills.append(time.monotonic())
                except ProcessLookupError:
                    pass

    killer = threading.Thread(target=kill_children, daemon=True)
    killer.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            responses = list(
                pool.map(lambda i: stack.checkout(skus[i % 4]), range(ORDERS_UNDER_FIRE))
            )
        assert [r.status_code for r in responses] == [201] * ORDERS_UNDER_FIRE
        order_ids = [r.json()["id"] for r in responses]
        wait_until(  # keep killing while the backlog drains
            lambda: not_ready(order_ids) <= len(order_ids) * len(CHECKOUT_KINDS) // 2,
            timeout=180,
            interval=0.5,
            message="half of the follow-ups done under fire",
        )
    finally:
        stop.set()
        killer.join()

    # A child killed after DATA leaves its email "unknown": held 15 minutes (the production hold)
    # before its one resend. Such an order is settled once its other follow-ups succeeded.
    wait_until(
        lambda: not_ready(order_ids) == len(held_confirmations(order_ids)),
        timeout=180,
        interval=0.5,
        message="every order ready, or its email held as unknown",
    )
    held = held_confirmations(order_ids)

    assert len(kills) >= 20
    assert "WorkerLostError" in stack.worker.log() or "SIGKILL" in stack.worker.log()
    ready = [pk for pk in order_ids if order_subject(pk) not in held]
    assert_one_effect_each(ready, smtp_server, warehouse)
    for order in Order.objects.filter(pk__in=[pk for pk in order_ids if pk not in ready]):
        assert len(smtp_server.confirmations(order.number)) <= 1  # held, never sent twice
        assert (
            follow_ups_of([order.pk])
            .exclude(kind=CONFIRMATION_EMAIL)
            .filter(status="succeeded")
            .count()
            == len(CHECKOUT_KINDS) - 1
        )
    print(f"{len(kills)} kills; {len(held)} emails held as unknown; no email sent twice")


# --- 4. A follow-up whose worker is killed on every attempt --------------------------------------


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_a_follow_up_whose_worker_is_killed_on_every_attempt_is_dead_after_the_limit(
    private_stack, smtp_server, warehouse
):
    # A crash limit of three instead of five, to keep the test short: every crash counts the same
    # way whatever the limit (tests/follow_ups/test_claims_and_leases.py proves it at the default).
    limit = 3
    stack = private_stack(extra_env={"FOLLOW_UP_MAX_CRASHES": str(limit)})
    warehouse.configure(latency_ms=4000)  # the warehouse call runs long enough to be killed
    response = stack.checkout(ProductFactory().sku)
    order_id = response.json()["id"]
    sync = follow_ups_of([order_id]).get(kind=WAREHOUSE_SYNC)
    killed_tokens = set()

    def kill_each_attempt():
        row = FollowUp.objects.get(pk=sync.pk)
        if row.status == "running" and row.lease_token not in killed_tokens:
            killed_tokens.add(row.lease_token)
            for child in stack.worker.children():
                os.kill(child, signal.SIGKILL)
        return row.status == "dead"

    wait_until(kill_each_attempt, timeout=150, interval=0.2, message="the follow-up to be dead")

    sync.refresh_from_db()
    assert len(killed_tokens) == limit
    assert (sync.status, sync.attempts) == ("dead", limit)
    assert sync.last_error.startswith(f"gave up after {limit} attempts")

    # Visible: a dead letter on /ops/ for its kind.
    from ops.selectors import job_metrics

    dead = {m.name: m.dead_letters for m in job_metrics()}
    assert dead[WAREHOUSE_SYNC] == 1

    # Replayable: the warehouse is healthy again and the replay ships it once (the killed calls
    # reached the warehouse with the same Idempotency-Key, so it holds one shipment at most).
    warehouse.configure(latency_ms=5)
    from follow_ups.services import follow_up_replay

    assert follow_up_replay(follow_up_ids=[sync.pk]) == 1
    wait_all_ready([order_id], timeout=60)
    assert [s["order_number"] for s in warehouse.shipments()].count(sync.label) == 1


# --- 6. A backlog older than every re-publish window ---------------------------------------------


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_a_backlog_older_than_every_window_is_not_republished(
    private_stack, smtp_server, warehouse
):
    stack = private_stack(worker=False)  # nobody consumes: the queues hold a backlog
    sku = ProductFactory(stock=1000).sku
    order_ids = [stack.checkout(sku).json()["id"] for _ in range(30)]
    assert stack.queued() == dict.fromkeys(QUEUES, 30)
    # The backlog is an hour old, older than the grace period and the lost-message window.
    long_ago = timezone.now() - timedelta(hours=1)
    follow_ups_of(order_ids).update(created_at=long_ago, published_at=long_ago)

    # Three lost-message checks at the production interval (every 5 s).
    time.sleep(3 * settings.FOLLOW_UP_LOST_CHECK_SECONDS + 1)

    assert stack.queued() == dict.fromkeys(QUEUES, 30)  # not one message more
    state = RelayState.objects.get()
    assert (state.republished, state.published) == (0, 0)

    stack.start_worker()
    wait_all_ready(order_ids, timeout=90)
    assert_one_effect_each(order_ids, smtp_server, warehouse)


# --- 7. The SMTP 250 delayed past the client's timeout -------------------------------------------


def test_an_smtp_reply_delayed_past_the_timeout_is_held_not_sent_again(
    live_worker, live_relay, smtp_server, settings
):
    # The server keeps the message, then answers 250 only after the client gave up waiting.
    smtp_server.delay_next_reply(settings.EMAIL_TIMEOUT + 5)
    order = place_order((ProductFactory(), 1)).order
    confirmation = follow_ups_of([order.pk]).get(kind=CONFIRMATION_EMAIL)

    held = wait_until(
        lambda: FollowUp.objects.filter(pk=confirmation.pk, status="retrying").first(),
        timeout=settings.EMAIL_TIMEOUT + 20,
        message="the email attempt to time out",
    )
    delivery = EmailDelivery.objects.get(purpose_key=f"order-{order.pk}-confirmation")
    assert delivery.status == EmailDelivery.Status.UNKNOWN
    # Held for the production hold (15 minutes), not retried on the engine's short backoff.
    hold = (held.next_attempt_at - timezone.now()).total_seconds()
    assert settings.EMAIL_UNKNOWN_HOLD_SECONDS - 60 < hold <= settings.EMAIL_UNKNOWN_HOLD_SECONDS
    # The relay ticks on; nothing is sent again before the hold is over.
    time.sleep(settings.FOLLOW_UP_LOST_CHECK_SECONDS * 2 + 1)
    assert [m["message_id"].strip() for m in smtp_server.confirmations(order.number)] == [
        delivery.message_id
    ]
    assert FollowUp.objects.get(pk=confirmation.pk).status == "retrying"
