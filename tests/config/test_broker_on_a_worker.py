"""The embedded broker with a real worker: what a consumer that died leaves behind goes away.

A worker sends events (heartbeats every 2 s, task events) to every queue bound to Celery's event
exchange, and remote-control broadcasts to every worker's queue. Here consumers are killed with
SIGKILL, as a crash or ``kill -9`` of Flower does; the worker, still polling, removes their queues
once they are past their expiry. The broker is a fresh embedded folder whatever the suite runs on.
"""

import contextlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.processes import BIN, REPO, Process, start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.once]

# An event consumer as Flower is one (celery.events.Receiver), with the event queue expiry given.
EVENT_CONSUMER = """
import sys
from config.celery import app

app.conf.event_queue_expires = float(sys.argv[1])
with app.connection() as connection:
    receiver = app.events.Receiver(
        connection, handlers={"*": lambda event: print(event["type"], flush=True)}
    )
    print("consuming", receiver.queue.name, flush=True)
    receiver.capture(limit=None, timeout=None, wakeup=False)
"""


@pytest.fixture
def embedded_env(worker_env, tmp_path) -> dict[str, str]:
    env = {key: value for key, value in worker_env.items() if key != "CELERY_BROKER_URL"}
    return env | {"VAR_DIR": str(tmp_path / "var")}


def broker_folder(env: dict[str, str]) -> Path:
    return Path(env["VAR_DIR"]) / "broker"


def bound_queues(env: dict[str, str], exchange: str) -> list[str]:
    path = broker_folder(env) / "control" / f"{exchange}.exchange"
    return [queue for _, _, queue in json.loads(path.read_text())] if path.exists() else []


def event_consumer(env, log_dir, *, expires: float, name: str) -> tuple[Process, str]:
    consumer = Process(
        name, [str(BIN / "python"), "-c", EVENT_CONSUMER, str(expires)], env, log_dir
    )
    consumer.wait_for_log("worker-heartbeat", timeout=30)
    queue = consumer.log().split("consuming ", 1)[1].split()[0]
    return consumer, queue


def test_a_killed_event_consumers_queue_expires_while_a_live_ones_stays(
    embedded_env, process_log_dir
):
    with contextlib.ExitStack() as running:
        worker = start_worker(embedded_env, process_log_dir, name="events-worker")
        running.callback(worker.stop)
        # A short expiry, so the test is short: the production value (60 s) takes the same path,
        # tests/config/test_broker.py::test_a_departed_consumers_event_queue_expires_after_celerys_event_queue_expires.
        live, live_queue = event_consumer(embedded_env, process_log_dir, expires=6, name="live")
        running.callback(live.stop)
        dead, dead_queue = event_consumer(embedded_env, process_log_dir, expires=6, name="dead")
        running.callback(dead.stop)
        assert sorted(bound_queues(embedded_env, "celeryev")) == sorted([live_queue, dead_queue])
        dead.kill()
        dead_folder = broker_folder(embedded_env) / "queue" / dead_queue
        piled_up = 0

        def expired() -> bool:
            nonlocal piled_up
            piled_up = max(piled_up, len(list(dead_folder.glob("*.msg"))))
            return not dead_folder.exists()

        wait_until(
            expired,
            timeout=6 + 5 + 10,  # its expiry, a sweep, and margin
            message="the dead consumer's queue to expire",
        )
        assert piled_up >= 1  # the worker's heartbeats went on landing there until then
        assert bound_queues(embedded_env, "celeryev") == [live_queue]
        heartbeats_seen = live.log().count("worker-heartbeat")
        wait_until(
            lambda: live.log().count("worker-heartbeat") > heartbeats_seen + 1,
            timeout=10,
            message="the live consumer to keep getting heartbeats",
        )
        assert (broker_folder(embedded_env) / "queue" / live_queue / ".queue").exists()


def test_a_killed_workers_remote_control_queue_expires_with_celerys_default(
    embedded_env, process_log_dir
):
    survivor = start_worker(embedded_env, process_log_dir, name="survivor")
    killed = start_worker(embedded_env, process_log_dir, name="killed")
    try:
        pidbox = [q for q in bound_queues(embedded_env, "celery.pidbox") if q.startswith("killed-")]
        assert len(pidbox) == 1
        killed.kill()
        pidbox_folder = broker_folder(embedded_env) / "queue" / pidbox[0]
        assert pidbox_folder.exists()
        # A broadcast (the relay asks the workers what they hold every 5 s) reaches the dead queue.
        subprocess.run(
            [str(BIN / "celery"), "-A", "config", "inspect", "ping", "--timeout", "1"],
            cwd=REPO,
            env=embedded_env,
            capture_output=True,
        )
        wait_until(
            lambda: not pidbox_folder.exists(),
            timeout=10 + 5 + 10,  # control_queue_expires (Celery's 10 s), a sweep, and margin
            message="the killed worker's remote-control queue to expire",
        )
        assert [q for q in bound_queues(embedded_env, "celery.pidbox") if "killed-" in q] == []
        assert [q for q in bound_queues(embedded_env, "celery.pidbox") if "survivor-" in q]
        # The survivor still answers broadcasts, and no reply queue is left behind.
        pong = subprocess.run(
            [str(BIN / "celery"), "-A", "config", "inspect", "ping", "--timeout", "2"],
            cwd=REPO,
            env=embedded_env,
            capture_output=True,
            text=True,
        )
        assert "pong" in pong.stdout and "survivor-" in pong.stdout
        assert bound_queues(embedded_env, "reply.celery.pidbox") == []
        leftovers = os.listdir(broker_folder(embedded_env) / "queue")
        assert [name for name in leftovers if "reply.celery.pidbox" in name] == []
    finally:
        killed.stop()
        survivor.stop()
