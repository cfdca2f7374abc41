"""Fixtures shared by the whole suite.

Unit tests use pytest-django's ``db``. Tests that need the real thing ask for ``live_worker``: a real
Celery worker process on the configured broker (RabbitMQ, Redis, or the embedded filesystem broker)
and database (PostgreSQL or SQLite), a real SMTP server and the warehouse simulator. Tests whose
follow-ups retry, or whose messages must be repaired, ask for ``live_relay`` too: retries wait in
the database and only the relay publishes them. Eager mode is never used: it runs tasks inside the
caller and proves nothing about a worker.
"""

import contextlib
import os
from dataclasses import dataclass

import httpx
import pytest
from celery.signals import before_task_publish
from django.db import connection

from tests.processes import (
    SMTPRecorder,
    free_port,
    start_relay,
    start_warehouse,
    start_worker,
    wait_until,
)


@pytest.fixture(scope="session")
def process_log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("process-logs")


@pytest.fixture(scope="session")
def smtp_server():
    server = SMTPRecorder().start()
    yield server
    server.stop()


@dataclass
class WarehouseHandle:
    url: str
    process: object

    def shipments(self) -> list[dict]:
        return httpx.get(f"{self.url}/shipments", timeout=5).json()["shipments"]

    def shipment_requests(self) -> int:
        """Every shipment request the warehouse was sent, answered or refused."""
        return httpx.get(f"{self.url}/stats", timeout=5).json()["shipment_requests"]

    def configure(self, **config) -> None:
        httpx.put(f"{self.url}/config", json=config, timeout=5).raise_for_status()


@pytest.fixture(scope="session")
def warehouse_process(process_log_dir, tmp_path_factory):
    port = free_port()
    database = tmp_path_factory.mktemp("warehouse") / "warehouse.sqlite3"
    process = start_warehouse(dict(os.environ), process_log_dir, port=port, database=database)
    yield WarehouseHandle(url=f"http://127.0.0.1:{port}", process=process)
    process.stop()


@pytest.fixture
def warehouse(warehouse_process, settings):
    """The warehouse simulator, healthy and fast; this process's settings point at it too."""
    warehouse_process.configure(latency_ms=5, failure_rate=0, outage=False, reject=False)
    settings.WAREHOUSE_URL = warehouse_process.url
    yield warehouse_process
    warehouse_process.configure(latency_ms=5, failure_rate=0, outage=False, reject=False)


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the test database, so worker processes open the same one."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    return (
        f"postgresql://{credentials}{settings_dict.get('HOST') or 'localhost'}:"
        f"{settings_dict.get('PORT') or 5432}/{settings_dict['NAME']}"
    )


@pytest.fixture(scope="session")
def worker_env(
    django_db_setup, django_db_blocker, smtp_server, warehouse_process
) -> dict[str, str]:
    with django_db_blocker.unblock():
        url = database_url(connection.settings_dict)
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": url,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
        "WAREHOUSE_URL": warehouse_process.url,
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="session")
def celery_worker_process(worker_env, process_log_dir):
    from config.celery import app

    app.control.purge()  # messages left by an earlier run would only be skipped, but cost time
    worker = start_worker(worker_env, process_log_dir)
    yield worker
    worker.stop()


@pytest.fixture
def live_worker(transactional_db, celery_worker_process, smtp_server, warehouse, settings):
    """A running worker, committed data it can see, and mail going to the test SMTP server."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    smtp_server.clear()
    yield celery_worker_process
    # Let the worker finish what it is doing before the tables are truncated under it.
    from follow_ups.models import FollowUp

    with contextlib.suppress(AssertionError):
        wait_until(
            lambda: not FollowUp.objects.filter(status=FollowUp.Status.RUNNING).exists(),
            timeout=10,
        )


@pytest.fixture
def live_relay(live_worker, worker_env, process_log_dir):
    """The relay process, on the session's database and broker, for one test.

    One per test, not per session: a relay left running would hold the lease, and publish to the
    session's broker, while a test runs a stack of its own on another broker. Stopped gracefully,
    it releases the lease, so the next test's relay takes it at once.
    """
    relay = start_relay(worker_env, process_log_dir)
    yield relay
    relay.stop()


@pytest.fixture
def smtp(smtp_server, settings):
    """Mail from this process goes to the suite's real SMTP server (which may refuse on cue)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    smtp_server.clear()
    yield smtp_server
    smtp_server.clear()


@pytest.fixture
def published_tasks():
    """Every task this process hands to the broker, recorded by Celery's own publish signal."""
    published: list[tuple[str, list]] = []

    def record(sender=None, body=None, **kwargs):
        args = body[0] if isinstance(body, (list, tuple)) else []
        published.append((sender, list(args)))

    before_task_publish.connect(record, weak=False)
    yield published
    before_task_publish.disconnect(record)


# --- PostgreSQL- and RabbitMQ-only tests --------------------------------------------------------------
def pytest_collection_modifyitems(config, items):
    """Deselect (never skip) tests marked ``postgres`` when the database is not PostgreSQL, and
    ``rabbitmq`` when the broker is not RabbitMQ."""
    markers = set()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        markers.add("postgres")
    # Tests marked rabbitmq need an amqp:// broker and rabbitmqctl.
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("amqp://"):
        markers.add("rabbitmq")
    # The cluster brings its own brokers and database, so the suite's do not matter to it: it runs
    # once per CI, in the RabbitMQ pass, or when asked for (make test-cluster, test-cluster-full).
    suite = os.environ.get("CLUSTER_SUITE", "")
    wants_cluster = any(item.get_closest_marker("cluster") for item in items)
    if wants_cluster and ((not suite and "rabbitmq" in markers) or cluster_unavailable()):
        markers.add("cluster")
    if suite != "full":
        markers.add("cluster_full")
    if not os.environ.get("LONG_TESTS"):
        markers.add("long")
    deselected = [item for item in items if any(item.get_closest_marker(m) for m in markers)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]
    # Tests that run the session's worker go last. Earlier tests publish real messages when their
    # transactions commit; with no worker consuming them yet, nothing touches their rows while
    # pytest-django truncates the tables after each test (the worker's purge drops them later).
    items.sort(key=lambda item: "celery_worker_process" in item.fixturenames)


def cluster_unavailable() -> str | None:
    from tests.cluster import available

    return available()
