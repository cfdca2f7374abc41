"""`make run`'s processes, started the way it starts them (``python -m devtools.run``: the Procfile
under honcho, each line under ``devtools.restart_on_exit``), on the test database and broker.

The warehouse is the suite's simulator (it changes nothing tested here); every other line of the
Procfile runs, beat included: "everything is up" waits for its lease (``/healthz/background``). A private var/ folder holds Flower's kept password and, on
the embedded stack, the broker these processes share.
"""

import contextlib
import os
import re
import signal
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from follow_ups.models import FollowUp
from orders.services import WAREHOUSE_SYNC, order_subject
from tests.factories import ProductFactory, checkout_payload
from tests.processes import BIN, Process, free_port, wait_until

# The processes share the test database: pytest-django sets one up only for tests that ask for it.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PROCESSES = ["web", "worker-critical", "worker-default", "beat", "relay", "flower", "ready"]


@dataclass
class Shop:
    process: Process
    web: str
    flower: str
    var_dir: Path

    def log(self) -> str:
        return self.process.log()

    def started_pids(self, name: str) -> list[int]:
        pattern = rf"^\S+ {re.escape(name)}\.1\s+\| restart_on_exit: started `[^`]+` \(pid (\d+)\)"
        return [int(pid) for pid in re.findall(pattern, self.log(), re.MULTILINE)]


@pytest.fixture(scope="module")
def shop(worker_env, process_log_dir, tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("make-run-var")
    web_port, flower_port = free_port(), free_port()
    env = {
        **worker_env,
        "VAR_DIR": str(var_dir),
        "WEB_ADDRESS": f"127.0.0.1:{web_port}",
        "FLOWER_PORT": str(flower_port),
        # The stop test's warehouse answers in 8 s: wait for it (the default gives up at 5 s).
        "WAREHOUSE_TIMEOUT_SECONDS": "20",
    }
    env.pop("CELERY_FLOWER_USER", None)
    env.pop("CELERY_FLOWER_PASSWORD", None)
    process = Process(
        "make-run", [str(BIN / "python"), "-m", "devtools.run", *PROCESSES], env, process_log_dir
    )
    shop = Shop(
        process=process,
        web=f"http://127.0.0.1:{web_port}",
        flower=f"http://127.0.0.1:{flower_port}",
        var_dir=var_dir,
    )
    try:
        process.wait_for_log("Everything is up", timeout=120)
        yield shop
    finally:
        process.stop(timeout=30)
        # honcho starts each line in a session of its own: make sure none outlives the test.
        for name in PROCESSES:
            for pid in shop.started_pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


# What a clean start may print at WARNING or as a traceback, each for a reason outside the shop:
UNAVOIDABLE_AT_START = [
    # runserver says so on every start; production runs gunicorn (Procfile.production).
    "WARNING: This is a development server.",
    # Celery warns when a worker runs as root, as this suite does in CI's container; a developer's
    # `make run` is not root. Its two lines: the warning and the line of code that raised it.
    "SecurityWarning: You're running the worker with superuser privileges",
    "_warn_or_raise_security_error(",
]
NOISE = re.compile(r"WARNING|Warning|Traceback|ERROR|CRITICAL|exited with signal")


def test_a_clean_start_logs_no_warning_and_no_traceback(shop):
    start = shop.log()[: shop.log().index("Everything is up")]
    noisy = [
        line
        for line in start.splitlines()
        if NOISE.search(line) and not any(allowed in line for allowed in UNAVOIDABLE_AT_START)
    ]

    assert noisy == []


def flower_password_line(block: str) -> str:
    return re.search(r"Flower\s+http://\S+\s+user (\S+), password (\S+)", block).groups()


def test_the_addresses_are_printed_again_once_everything_is_up_with_the_kept_password(shop):
    log = shop.log()
    first, everything_up = log.index("Starting the shop:"), log.index("Everything is up")
    kept = shop.var_dir / "flower-password"

    user, password = flower_password_line(log[first:])
    assert flower_password_line(log[everything_up:]) == (user, password)
    assert (user, password) == ("admin", kept.read_text().strip())
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    # Below the start-up logs: the workers said they were ready before the block came again.
    workers_ready = [m.start() for m in re.finditer(r"(critical|default)@\S+ ready\.", log)]
    assert len(workers_ready) == 2 and max(workers_ready) < everything_up
    assert "-------------- " not in log  # no Celery banners
    assert "Registered tasks" not in log  # Flower's start-up list
    assert httpx.get(f"{shop.flower}/api/workers", auth=(user, password)).status_code == 200
    assert httpx.get(f"{shop.flower}/api/workers").status_code == 401


def test_one_worker_per_queue_class_as_in_production(shop):
    password = (shop.var_dir / "flower-password").read_text().strip()

    def queues_by_worker_class():
        workers = httpx.get(
            f"{shop.flower}/api/workers", params={"refresh": 1}, auth=("admin", password)
        ).json()
        queues = {
            name.split("@")[0]: sorted(queue["name"] for queue in info.get("active_queues") or [])
            for name, info in workers.items()
            if name.startswith(("critical@", "default@"))
        }
        return queues if len(queues) == 2 and all(queues.values()) else None

    queues = wait_until(queues_by_worker_class, timeout=30, message="Flower to list both workers")
    assert queues == {"critical": ["critical"], "default": ["bulk", "default"]}


def test_a_worker_that_exits_is_started_again_and_the_web_keeps_answering(shop):
    # A worker can exit for good on its own (before config/broker.py replaced the embedded
    # broker's exchange tables whole, one that read a table mid-write did). The supervisor is what
    # carries make run through that.
    earlier = shop.started_pids("worker-critical")
    worker = earlier[-1]
    ready_before = _ready_lines(shop.log())
    answers: list[int] = []
    stop = threading.Event()

    def keep_asking():
        while not stop.is_set():
            try:
                answers.append(httpx.get(f"{shop.web}/healthz", timeout=2).status_code)
            except httpx.HTTPError as exc:
                answers.append(repr(exc))
            time.sleep(0.2)

    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    try:
        # The worker exits for good, as when a pool child is killed while it starts.
        os.kill(worker, signal.SIGKILL)
        wait_until(
            lambda: len(shop.started_pids("worker-critical")) == len(earlier) + 1,
            timeout=30,
            message="the worker to be started again",
        )
        wait_until(
            lambda: _ready_lines(shop.log()) > ready_before,
            timeout=60,
            message="the new worker to be ready",
        )
    finally:
        stop.set()
        asker.join()

    assert shop.process.popen.poll() is None  # honcho did not stop the shop
    assert re.search(
        r"worker-critical\.1\s+\| restart_on_exit: `celery -A config --quiet worker` exited with "
        r"signal SIGKILL after \d+ s; starting it again in \d+ s \(restart \d+\)",
        shop.log(),
    )
    assert len(answers) > 5 and set(answers) == {200}, answers
    assert len(shop.started_pids("web")) == 1  # nothing else was restarted


def _ready_lines(log: str) -> int:
    return len(re.findall(r"worker-critical\.1\s+\| .*critical@\S+ ready\.", log))


def test_ctrl_c_lets_a_running_task_finish_and_stops_every_process_without_sigkill(
    shop, warehouse_process, smtp_server
):
    # The warehouse answers in 8 s: the order's warehouse_sync is running when Ctrl-C comes.
    product = ProductFactory(stock=5)
    warehouse_process.configure(latency_ms=8000, failure_rate=0, outage=False, reject=False)
    try:
        requests_before = warehouse_process.shipment_requests()
        created = httpx.post(
            f"{shop.web}/api/orders/", json=checkout_payload((product.sku, 1)), timeout=30
        )
        assert created.status_code == 201, created.text
        order_id, number = created.json()["id"], created.json()["number"]
        wait_until(
            lambda: warehouse_process.shipment_requests() > requests_before,
            timeout=30,
            message="the warehouse sync to be under way",
        )
        children = [pid for name in PROCESSES for pid in shop.started_pids(name)[-1:]]
        log_before_stop = len(shop.log())
        shop.process.popen.send_signal(signal.SIGINT)  # what Ctrl-C does

        assert shop.process.popen.wait(60) is not None
    finally:
        warehouse_process.configure(latency_ms=5)
    for pid in children:
        wait_until(lambda pid=pid: not _alive(pid), timeout=15, message=f"{pid} to exit")
    stop_log = shop.log()[log_before_stop:]
    sync = FollowUp.objects.get(subject=order_subject(order_id), kind=WAREHOUSE_SYNC)
    assert sync.status == FollowUp.Status.SUCCEEDED and sync.attempts == 1
    shipped = [s for s in warehouse_process.shipments() if s["order_number"] == number]
    assert len(shipped) == 1
    assert len(smtp_server.confirmations(number)) == 1
    assert "SIGKILL" not in stop_log
    assert "exited with signal" not in stop_log  # no pool child was signalled mid-task
    assert "Traceback" not in stop_log
    for worker in ("worker-critical", "worker-default"):
        warm = re.findall(rf"^\S+ {worker}\.1\s+\| worker: Warm shutdown", stop_log, re.MULTILINE)
        assert len(warm) == 1, stop_log
    assert "starting it again" not in stop_log


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
