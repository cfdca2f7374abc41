"""The stack the benchmark starts: a database and a RabbitMQ vhost of its own, the SMTP server, the
warehouse simulator, and on demand gunicorn, workers, the relay and a private Redis broker.

Every process comes from the harness the tests use (``tests/processes.py``); this module only
decides what the benchmark runs and with which settings: the production settings plus the
bench-only URLs (``bench.settings``), durable as in production.
"""

import os
import secrets
import sys
import threading
import urllib.parse
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg

from tests.processes import (
    BIN,
    PrivateRedis,
    Process,
    SMTPRecorder,
    free_port,
    postgres_database_drop,
    postgres_database_recreate,
    rabbitmq_vhost_create,
    rabbitmq_vhost_delete,
    start_gunicorn,
    start_relay,
    start_warehouse,
    start_worker,
)

CLIENTS = 8
SKUS = [f"BENCH-{n}" for n in range(CLIENTS)]


class Autovacuum:
    """PostgreSQL's autovacuum rule, run by the benchmark on its own database when the server has
    autovacuum turned off (as this machine's has): every ``naptime`` seconds, VACUUM
    ANALYZE each table whose dead rows exceed 50 + 20 % of its live rows (the server's defaults).

    Without it the follow-up ledger, whose every row is updated three or four times, keeps every
    dead version: after one full run and part of a second it held 1.75 million, and each relay tick's
    lapsed-lease check walked them (65 ms, changing nothing), which no production server with
    autovacuum on would show."""

    def __init__(self, database_url: str, naptime: float = 60.0):
        self.database_url = database_url
        self.naptime = naptime
        self.vacuums = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-autovacuum", daemon=True)

    @staticmethod
    def server_runs_it(database_url: str) -> bool:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return conn.execute("SHOW autovacuum").fetchone()[0] == "on"

    def start(self) -> "Autovacuum":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=120)

    def vacuum_now(self) -> int:
        """One pass of the rule; returns how many tables it vacuumed."""
        vacuumed = 0
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT relname FROM pg_stat_user_tables WHERE n_dead_tup > 50 + 0.2 * n_live_tup"
            ).fetchall()
            for (table,) in tables:
                conn.execute(f'VACUUM (ANALYZE) "{table}"')
                vacuumed += 1
        self.vacuums += vacuumed
        return vacuumed

    def _run(self) -> None:
        while not self.stopping.wait(self.naptime):
            try:
                self.vacuum_now()
            except psycopg.Error as exc:  # the database is being dropped at the end
                print(f"[bench] autovacuum stand-in: {exc}", file=sys.stderr)


class Stack:
    def __init__(self, sizes: dict, log_dir: Path):
        self.sizes = sizes
        self.log_dir = log_dir
        self.processes: list[Process] = []
        database_url = os.environ.get(
            "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        )
        broker_url = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
        if not database_url.startswith("postgres") or not broker_url.startswith("amqp"):
            sys.exit("bench needs PostgreSQL (DATABASE_URL) and RabbitMQ (CELERY_BROKER_URL)")
        name = f"{(urllib.parse.urlsplit(database_url).path.lstrip('/') or 'shop')}_bench"
        self.database_url = postgres_database_recreate(database_url, name)
        self.autovacuum = (
            None
            if Autovacuum.server_runs_it(self.database_url)
            else Autovacuum(self.database_url).start()
        )
        self.broker_url, self.vhost = rabbitmq_vhost_create(broker_url, prefix="bench")
        self.smtp = SMTPRecorder().start()
        # The production workers' sizes, from the variables docker-compose.yml reads.
        self.critical_concurrency = int(os.environ.get("CRITICAL_CONCURRENCY", "2"))
        self.default_concurrency = int(os.environ.get("DEFAULT_CONCURRENCY", "6"))
        warehouse_port = free_port()
        self.env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(self.smtp.port),
            "SITE_URL": "http://127.0.0.1",
            "PAYMENT_GATEWAY": "devtools.payment_gateway.SimulatedGateway",
            "WAREHOUSE_URL": f"http://127.0.0.1:{warehouse_port}",
            "VAR_DIR": str(log_dir / "var"),
            "LOG_LEVEL": "WARNING",
        }
        os.environ.update(self.env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", "--no-input", verbosity=0)
        self._products_create()
        self.warehouse = self.track(
            start_warehouse(
                self.env,
                log_dir,
                port=warehouse_port,
                database=log_dir / "warehouse.sqlite3",
                latency_ms=0,
            )
        )

    def _products_create(self):
        from shop.models import Category, Product

        category, _ = Category.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
        for sku in SKUS:
            Product.objects.update_or_create(
                sku=sku,
                defaults={
                    "name": sku,
                    "category": category,
                    "price": Decimal("9.99"),
                    "stock": 10**9,
                    "description": "benchmark",
                },
            )

    def track(self, process: Process) -> Process:
        """Stopped by ``close`` unless ``stop`` stopped it before."""
        self.processes.append(process)
        return process

    def stop(self, process: Process):
        process.stop(timeout=30)
        self.processes.remove(process)

    def gunicorn(self, env: dict | None = None) -> tuple[Process, str]:
        port = free_port()
        process = start_gunicorn({**self.env, **(env or {})}, self.log_dir, port=port)
        return self.track(process), f"http://127.0.0.1:{port}"

    def worker(
        self, queues: str, *, concurrency: int = 2, env: dict | None = None, task_events=False
    ) -> Process:
        return self.track(
            start_worker(
                {**self.env, **(env or {})},
                self.log_dir,
                queues=queues,
                concurrency=concurrency,
                name=f"worker-{queues.replace(',', '-')}",
                task_events=task_events,
            )
        )

    def redis(self) -> tuple[Process, str]:
        """A private redis-server (nothing on disk), and its URL as a broker."""
        redis = PrivateRedis(self.log_dir).start()
        return self.track(redis.process), redis.url

    def providers(self, latency_ms: float):
        self.provider_latency(smtp_ms=latency_ms, warehouse_ms=latency_ms)

    def provider_latency(self, *, smtp_ms: float, warehouse_ms: float):
        """How long the SMTP server waits before answering DATA, and the warehouse every call."""
        self.smtp.reply_delay = smtp_ms / 1000
        httpx.put(
            f"{self.env['WAREHOUSE_URL']}/config", json={"latency_ms": warehouse_ms}, timeout=5
        ).raise_for_status()

    def production_workers(self) -> list[Process]:
        """worker-critical and worker-default, as docker-compose.yml runs them."""
        return [
            self.worker("critical", concurrency=self.critical_concurrency),
            self.worker("default,bulk", concurrency=self.default_concurrency),
        ]

    def production_workers_described(self) -> str:
        return (
            f"worker-critical ({self.critical_concurrency}) + "
            f"worker-default ({self.default_concurrency}) + the relay"
        )

    def relay(self) -> Process:
        """The follow-up relay, once it holds its lease."""
        return self.track(start_relay(self.env, self.log_dir))

    def purge(self):
        from config.celery import app

        app.control.purge()

    def autovacuum_described(self) -> str:
        if self.autovacuum is None:
            return "on (the server's own)"
        return (
            "off on the server; the benchmark ran its rule (dead rows > 50 + 20 % of live, "
            f"checked every {self.autovacuum.naptime:.0f} s): {self.autovacuum.vacuums} vacuums"
        )

    def close(self):
        if self.autovacuum is not None:
            self.autovacuum.stop()
        for process in list(self.processes):
            process.stop(timeout=30)
        self.smtp.stop()
        from django.db import connections

        connections.close_all()
        rabbitmq_vhost_delete(self.vhost)
        postgres_database_drop(self.database_url)


def order_body(client: int) -> dict:
    return {
        "email": f"client{client}@example.com",
        "name": "Bench Client",
        "address": {
            "line1": "Kerkstraat 1",
            "city": "Amsterdam",
            "postal_code": "1017 GA",
            "country": "NL",
        },
        "items": [{"sku": SKUS[client % len(SKUS)], "quantity": 1}],
        "card_number": "4242424242424242",
    }


def order_place(client: int = 0):
    from orders import services

    body = order_body(client)
    return services.order_place(
        email=body["email"],
        name=body["name"],
        address=services.Address(**body["address"]),
        lines=[services.LineRequest(sku=SKUS[client % len(SKUS)], quantity=1)],
        card_number=body["card_number"],
    ).order


def order_subjects(orders: int) -> list[str]:
    """Place ``orders`` orders; their names in the follow-up ledger (``FollowUp.subject``)."""
    from orders.services import order_subject

    return [order_subject(order_place(n).pk) for n in range(orders)]
