"""Fault case: PostgreSQL restarted during 100 checkouts.

A stack of the test's own (web, a supervised worker, the relay) runs on a private PostgreSQL server
(``initdb``, its own port) and a private Redis broker, so stopping the database touches nobody
else. Checkouts keep coming while PostgreSQL is stopped, held down and started again. While it is
down they answer 503 with a message and ``Retry-After``, never a 500 or a dropped connection; once
it is back, every order that was saved becomes ready with each effect landed exactly once, under
the production timings (leases, relay grace, lost-message checks, time limits).

Results are read from the private database with the test's own connection, and effects where they
land: the SMTP server, the warehouse simulator, the invoice table.
"""

import subprocess
import threading
import time
import warnings
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from orders.services import CHECKOUT_KINDS
from tests.factories import checkout_payload
from tests.processes import (
    BIN,
    REPO,
    PrivatePostgres,
    PrivateRedis,
    Process,
    Supervised,
    free_port,
    start_web,
    start_worker,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CHECKOUTS = 100
CLIENTS = 4
# Checkouts start on a steady clock, so some come before the restart, some while the database is
# down and some after it is back (a 503 is instant: unpaced, the rest would all land in the gap).
CHECKOUT_INTERVAL_SECONDS = 0.15
RESTART_AFTER_ANSWERS = CHECKOUTS // 3
DOWN_SECONDS = 4
WORKER_CONCURRENCY = 2
# The slowest repair is an execution that claimed its row just before the database went: its lease
# (15 s) lapses, then the relay recovers and publishes it; a message consumed while the database was
# down is found by two lost-message checks (10 s + 2 x 5 s). Both are well inside this.
READY_WITHIN_SECONDS = 120
SKU = "RESTART-1"
STOCK = 1000

SEED = f"""
from shop.models import Category, Product
category = Category.objects.create(slug="restart", name="Restart")
Product.objects.create(
    sku="{SKU}", name="Restart tee", category=category, description="x", price="10.00", stock={STOCK}
)
"""


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [str(BIN / "python"), "manage.py", *args],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )


@dataclass
class Stack:
    web: str
    database_url: str
    postgres: PrivatePostgres
    web_process: Process
    worker: Supervised
    relay: Process


@pytest.fixture
def stack(worker_env, smtp_server, warehouse, process_log_dir):
    postgres = PrivatePostgres().start()
    redis = PrivateRedis(process_log_dir).start()
    processes = []
    try:
        web_port = free_port()
        env = worker_env | {
            "DATABASE_URL": postgres.create_database("shop"),
            "CELERY_BROKER_URL": redis.url,
            "SITE_URL": f"http://127.0.0.1:{web_port}",
        }
        manage(env, "migrate", "--no-input")
        manage(env, "shell", "-c", SEED)
        smtp_server.clear()
        worker = Supervised(
            lambda: start_worker(
                env, process_log_dir, concurrency=WORKER_CONCURRENCY, name="pg-restart-worker"
            )
        )
        processes.append(worker)
        relay = Process(
            "pg-restart-relay", [str(BIN / "python"), "manage.py", "follow_up_relay"], env,
            process_log_dir,
        )  # fmt: skip
        processes.append(relay)
        relay.wait_for_log("holds the lease")
        web = start_web(env, process_log_dir, port=web_port)
        processes.append(web)
        yield Stack(
            web=f"http://127.0.0.1:{web_port}",
            database_url=env["DATABASE_URL"],
            postgres=postgres,
            web_process=web,
            worker=worker,
            relay=relay,
        )
    finally:
        for process in reversed(processes):
            process.stop()
        redis.process.stop()
        postgres.remove()


@dataclass(frozen=True)
class Answer:
    started_at: float
    answered_at: float
    status: int | str  # the HTTP status, or the name of the error when there was no answer
    body: dict | None = None
    retry_after: str | None = None


def checkout(base_url: str) -> Answer:
    started_at = time.monotonic()
    try:
        response = httpx.post(
            f"{base_url}/api/orders/", json=checkout_payload((SKU, 1)), timeout=30
        )
    except httpx.HTTPError as exc:
        return Answer(started_at, time.monotonic(), type(exc).__name__)
    is_json = response.headers.get("content-type", "").startswith("application/json")
    return Answer(
        started_at,
        time.monotonic(),
        response.status_code,
        response.json() if is_json else None,
        response.headers.get("Retry-After"),
    )


@dataclass
class Restart:
    stopping_at: float = 0.0
    down_at: float = 0.0
    up_at: float = 0.0


@dataclass
class Ledger:
    orders: dict[str, str]  # id -> number
    follow_ups: dict[str, list[tuple[str, str]]]  # subject -> [(kind, status)]
    invoices: Counter
    stock: int


def ledger_read(database_url: str) -> Ledger:
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        orders = dict(connection.execute("SELECT id::text, number FROM orders_order").fetchall())
        follow_ups = defaultdict(list)
        for subject, kind, status in connection.execute(
            "SELECT subject, kind, status FROM follow_ups_followup"
        ):
            follow_ups[subject].append((kind, status))
        invoices = Counter(
            order_id
            for (order_id,) in connection.execute("SELECT order_id::text FROM orders_invoice")
        )
        (stock,) = connection.execute(
            "SELECT stock FROM shop_product WHERE sku = %s", [SKU]
        ).fetchone()
    return Ledger(orders, dict(follow_ups), invoices, stock)


def all_ready(ledger: Ledger) -> bool:
    return all(
        [status for _, status in ledger.follow_ups.get(f"order:{order_id}", [])]
        == ["succeeded"] * len(CHECKOUT_KINDS)
        for order_id in ledger.orders
    )


def test_checkouts_answer_503_while_postgres_restarts_and_every_saved_order_becomes_ready_once(
    stack, smtp_server, warehouse
):
    answers: list[Answer] = []
    restart = Restart()
    begin = time.monotonic()

    def paced_checkout(index: int) -> None:
        time.sleep(max(0.0, begin + index * CHECKOUT_INTERVAL_SECONDS - time.monotonic()))
        answers.append(checkout(stack.web))

    def restart_postgres() -> None:
        wait_until(lambda: len(answers) >= RESTART_AFTER_ANSWERS, timeout=60, interval=0.01)
        restart.stopping_at = time.monotonic()
        stack.postgres.stop()
        restart.down_at = time.monotonic()
        time.sleep(DOWN_SECONDS)
        stack.postgres.start()
        restart.up_at = time.monotonic()

    restarter = threading.Thread(target=restart_postgres)
    restarter.start()
    with ThreadPoolExecutor(CLIENTS) as clients:
        list(clients.map(paced_checkout, range(CHECKOUTS)))
    restarter.join()

    # --- While it was down: 503 with a message, never a 500 or no answer --------------------------
    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) <= {201, 503}, statuses
    unavailable = [answer for answer in answers if answer.status == 503]
    assert any(
        restart.down_at <= a.started_at and a.answered_at <= restart.up_at for a in unavailable
    )
    for answer in unavailable:
        assert answer.retry_after == "5"
        assert answer.body["code"] == "database_unavailable"
        assert "database" in answer.body["detail"]
    # The web reconnects by itself: a checkout started once the server was back is placed.
    after = [answer for answer in answers if answer.started_at > restart.up_at]
    assert after and {answer.status for answer in after} == {201}, Counter(a.status for a in after)

    # --- After: every saved order becomes ready, under production timings ------------------------
    def ready() -> Ledger | None:
        ledger = ledger_read(stack.database_url)
        return ledger if all_ready(ledger) else None

    try:
        ledger = wait_until(ready, timeout=READY_WITHIN_SECONDS, interval=0.5, message="all ready")
    except AssertionError:
        ledger = ledger_read(stack.database_url)
        waiting = Counter(
            s for rows in ledger.follow_ups.values() for s in rows if s[1] != "succeeded"
        )
        raise AssertionError(
            f"not ready after {READY_WITHIN_SECONDS} s: {waiting}\n"
            f"relay log:\n{stack.relay.log()[-3000:]}"
        ) from None
    ready_at = time.monotonic()

    # --- Nothing lost, nothing doubled ------------------------------------------------------------
    placed = [answer.body["id"] for answer in answers if answer.status == 201]
    assert len(set(placed)) == len(placed)
    assert set(placed) <= set(ledger.orders), "a 201 for an order that was not saved"
    # A 503 may still have been saved: its commit reached the server, the answer did not come back.
    # Only a checkout in flight when the server stopped can be one, so at most one per client.
    saved_despite_503 = set(ledger.orders) - set(placed)
    assert len(saved_despite_503) <= CLIENTS, saved_despite_503
    assert ledger.stock == STOCK - len(ledger.orders)
    order_subjects = {subject for subject in ledger.follow_ups if subject.startswith("order:")}
    assert order_subjects == {f"order:{order_id}" for order_id in ledger.orders}
    for order_id in ledger.orders:
        kinds = sorted(kind for kind, _ in ledger.follow_ups[f"order:{order_id}"])
        assert kinds == sorted(CHECKOUT_KINDS), (order_id, kinds)
    assert ledger.invoices == Counter(dict.fromkeys(ledger.orders, 1))

    shipments = Counter(shipment["order_number"] for shipment in warehouse.shipments())
    resent = {}
    for number in ledger.orders.values():
        assert shipments[number] == 1, f"shipments for {number}"
        emails = smtp_server.confirmations(number)
        assert len({email["message_id"] for email in emails}) == 1, f"emails for {number}"
        if len(emails) > 1:
            resent[number] = len(emails) - 1
    if resent:
        # SMTP has no idempotency key: an execution cut off between the server's "250 OK" and the
        # delivery log's update sends again, with the same Message-ID (receivers fold those).
        # Only an execution running when the server stopped can, so at most one per worker child.
        warnings.warn(f"confirmation resent with the same Message-ID: {resent}", stacklevel=1)
    assert sum(resent.values()) <= WORKER_CONCURRENCY, resent

    # --- Money: every charge at the gateway has its order, or is voided --------------------------
    # A checkout cut off between the charge and the order's commit could not even record its
    # failure while the database was away: its void waits PAYMENT_VOID_AFTER_SECONDS (production:
    # 60 s) after its attempt, then the relay publishes it.
    def charges_settled() -> Counter | None:
        with psycopg.connect(stack.database_url, connect_timeout=5) as connection:
            outcomes = Counter(
                "ordered" if order_id else status
                for status, order_id in connection.execute(
                    "SELECT charge.status, attempt.order_id FROM devtools_simulatedcharge charge "
                    "JOIN orders_paymentattempt attempt "
                    "ON attempt.id::text = charge.idempotency_key"
                )
            )
        return outcomes if set(outcomes) <= {"ordered", "voided"} else None

    charges = wait_until(
        charges_settled, timeout=90, interval=1, message="every charge without an order voided"
    )
    assert charges["ordered"] == len(ledger.orders), charges

    # The relay and the web reconnected by themselves; neither was restarted.
    assert stack.relay.popen.poll() is None
    assert stack.web_process.popen.poll() is None

    answered_503 = [a.answered_at for a in unavailable]
    print(
        f"\n{len(answers)} checkouts: {dict(statuses)}; {len(ledger.orders)} orders saved "
        f"({len(saved_despite_503)} despite a 503); postgres down "
        f"{restart.up_at - restart.stopping_at:.1f} s (stop took "
        f"{restart.down_at - restart.stopping_at:.1f} s); 503s answered from "
        f"{min(answered_503) - restart.stopping_at:+.1f} s to "
        f"{max(answered_503) - restart.stopping_at:+.1f} s after the stop began; "
        f"every order ready {ready_at - restart.up_at:.1f} s after postgres was back; "
        f"worker started {len(stack.worker.started)} time(s); resent emails: {resent or 'none'}"
    )
