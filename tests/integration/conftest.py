"""Fixtures of the integration suites: a private stack (web, a supervised worker and the relay on a
Redis server of its own, on the suite's database) that a test may break as it likes."""

import httpx
import pytest
import redis as redis_client

from tests.factories import checkout_payload
from tests.processes import (
    PrivateRedis,
    Supervised,
    free_port,
    start_relay,
    start_web,
    start_worker,
)

QUEUES = ("critical", "default", "bulk")


class PrivateStack:
    """Web, a supervised worker and the relay on a private Redis broker, on the suite's database."""

    def __init__(self, worker_env, log_dir, *, worker=True, extra_env=None):
        self.redis = PrivateRedis(log_dir).start()
        self.log_dir = log_dir
        port = free_port()
        self.web_url = f"http://127.0.0.1:{port}"
        self.env = worker_env | {
            "CELERY_BROKER_URL": self.redis.url,
            "SITE_URL": self.web_url,
            **(extra_env or {}),
        }
        self.processes = []
        self.worker = self.start_worker() if worker else None
        self.relay = start_relay(self.env, log_dir, name="private-relay")
        self.processes += [self.relay, start_web(self.env, log_dir, port=port)]

    def start_worker(self) -> Supervised:
        worker = Supervised(
            lambda: start_worker(self.env, self.log_dir, concurrency=2, name="private-worker")
        )
        self.processes.append(worker)
        return worker

    def checkout(self, sku: str) -> httpx.Response:
        return httpx.post(
            f"{self.web_url}/api/orders/", json=checkout_payload((sku, 1)), timeout=30
        )

    def queued(self) -> dict[str, int]:
        """Messages waiting in each queue, read from Redis itself."""
        client = redis_client.Redis(port=self.redis.port)
        return {queue: client.llen(queue) for queue in QUEUES}

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        if self.redis.process.popen.poll() is None:
            self.redis.process.stop()


# The private-stack cases bring their own broker (a private Redis), so the suite's broker does not
# matter to them: they run once per CI, in the PostgreSQL + RabbitMQ pass, on PostgreSQL (the
# production database; SQLite is the one-process development default).
@pytest.fixture
def private_stack(transactional_db, worker_env, process_log_dir, smtp_server, warehouse):
    smtp_server.clear()
    stacks = []

    def make(**options) -> PrivateStack:
        stacks.append(PrivateStack(worker_env, process_log_dir, **options))
        return stacks[-1]

    yield make
    for stack in stacks:
        stack.stop()
