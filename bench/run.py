"""`make bench` (or `python -m bench.run [--smoke]`): five measures, each against a baseline run now.

This machine is shared and noisy, so no figure stands alone: each is a ratio to a baseline measured
in the same run, on the same PostgreSQL and RabbitMQ, with the production settings (quorum queues,
publisher confirms, persistent messages, acks late, prefetch 1).

1. checkout latency over HTTP, 8 concurrent clients, gunicorn (2 gthread workers x 4 threads):
   (a) bare order insert, (b) the real checkout, (c) the checkout with its follow-ups inline
   (providers answer in 200 ms); and (b) with the broker stopped (a private redis-server).
2. follow-ups per second on one worker vs Celery no-op tasks per second on the same worker.
3. commit -> email accepted by an SMTP server, workers idle.
4. a burst of orders enqueued at once, drained by the production workers: completed/s over time.
5. soak: worker memory (RSS) over many follow-ups, child recycling off so a leak would show.

Measures 3 and 4 run the production processes around the workers, the follow-up relay included
(``manage.py follow_up_relay``, as Procfile.production runs it): its ticks and lost-message checks
cost what they cost in production.

It needs PostgreSQL (DATABASE_URL: its server is used, with a database of the benchmark's own) and
RabbitMQ (CELERY_BROKER_URL: a private vhost is made with rabbitmqctl and removed afterwards).
Results: a table on stdout, JSON and a PNG plot in bench/results/.
"""

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = REPO / "bench" / "results"
CLIENTS = 8
PROVIDER_LATENCY_MS = 200
SKUS = [f"BENCH-{n}" for n in range(CLIENTS)]

SIZES = {
    "full": {
        "latency_requests": 2000,
        "inline_requests": 240,
        "broker_down_requests": 1000,
        "throughput_orders": 1000,
        "email_orders": 200,
        "burst_orders": 10_000,
        "soak_tasks": 100_000,
    },
    "smoke": {
        "latency_requests": 48,
        "inline_requests": 16,
        "broker_down_requests": 48,
        "throughput_orders": 30,
        "email_orders": 10,
        "burst_orders": 60,
        "soak_tasks": 300,
    },
}


# --- Processes and servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process in its own session, logging to a file, stopped with its whole group."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path, ready: str):
        self.name = name
        self.log_path = log_dir / f"{name}-{time.time_ns()}.log"
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while ready not in self.log():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-g", str(self.popen.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def rss_kb(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                pass
        return total

    def stop(self) -> None:
        import signal

        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        self.log_file.close()


class SMTPServer:
    """aiosmtpd in a thread: records when each message was accepted; can answer slowly."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.delay = 0.0
        self.accepted: dict[str, float] = {}  # subject -> time.time() of acceptance
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())
        self.controller.start()

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes

        if self.delay:
            await asyncio.sleep(self.delay)
        subject = message_from_bytes(envelope.content)["Subject"] or ""
        with self.lock:
            self.accepted[subject] = time.time()
        return "250 Message accepted for delivery"

    def accepted_at(self, subject: str) -> float | None:
        with self.lock:
            return self.accepted.get(subject)

    def stop(self):
        self.controller.stop()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summary_ms(latencies: list[float]) -> dict:
    return {
        "n": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
    }


# --- The stack --------------------------------------------------------------------------------------


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
        self.database_url, self.database_name = self._database_create(database_url)
        self.broker_url, self.vhost = self._vhost_create(broker_url)
        self.smtp = SMTPServer()
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
            "EMAIL_PORT": str(self.smtp.controller.port),
            "SITE_URL": "http://127.0.0.1",
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
        self.warehouse = self.start(
            "warehouse",
            [
                str(BIN / "python"),
                "-m",
                "devtools.warehouse_simulator",
                "--port",
                str(warehouse_port),
                "--database",
                str(log_dir / "warehouse.sqlite3"),
                "--latency-ms",
                "0",
            ],
            ready="warehouse simulator on",
        )

    # Infrastructure of the benchmark's own, removed at the end.
    def _database_create(self, url: str) -> tuple[str, str]:
        import psycopg

        parts = urllib.parse.urlsplit(url)
        name = f"{(parts.path.lstrip('/') or 'shop')}_bench"
        admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return urllib.parse.urlunsplit(parts._replace(path=f"/{name}")), name

    def _vhost_create(self, url: str) -> tuple[str, str]:
        parts = urllib.parse.urlsplit(url)
        vhost = f"bench-{secrets.token_hex(4)}"
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
        subprocess.run(
            [
                "rabbitmqctl",
                "-q",
                "set_permissions",
                "-p",
                vhost,
                parts.username or "guest",
                ".*",
                ".*",
                ".*",
            ],
            check=True,
        )
        return urllib.parse.urlunsplit(parts._replace(path=f"/{vhost}")), vhost

    def _products_create(self):
        from decimal import Decimal

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

    def start(self, name: str, args: list[str], *, ready: str, env: dict | None = None):
        process = Process(name, args, {**self.env, **(env or {})}, self.log_dir, ready)
        self.processes.append(process)
        return process

    def stop(self, process: Process):
        process.stop()
        self.processes.remove(process)

    def gunicorn(self, env: dict | None = None) -> tuple[Process, str]:
        port = free_port()
        process = self.start(
            "gunicorn",
            [
                str(BIN / "gunicorn"),
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--worker-class",
                "gthread",
            ],
            ready="Booting worker with pid",
            env=env,
        )
        time.sleep(1.0)  # both workers booted
        return process, f"http://127.0.0.1:{port}"

    def worker(self, queues: str, *, concurrency: int = 2, env: dict | None = None) -> Process:
        return self.start(
            f"worker-{queues.replace(',', '-')}",
            [
                str(BIN / "celery"),
                "-A",
                "config",
                "worker",
                "--queues",
                queues,
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{secrets.token_hex(3)}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            ready="ready.",
            env=env,
        )

    def providers(self, latency_ms: float):
        self.smtp.delay = latency_ms / 1000
        httpx.put(
            f"{self.env['WAREHOUSE_URL']}/config", json={"latency_ms": latency_ms}, timeout=5
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
        return self.start(
            "relay",
            [str(BIN / "python"), "manage.py", "follow_up_relay"],
            ready="holds the lease",
        )

    def purge(self):
        from config.celery import app

        app.control.purge()

    def close(self):
        for process in list(self.processes):
            process.stop()
        self.smtp.stop()
        from django.db import connections

        connections.close_all()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], check=False)
        import psycopg

        admin = urllib.parse.urlunsplit(
            urllib.parse.urlsplit(self.database_url)._replace(path="/postgres")
        )
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')


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


def http_load(url: str, requests: int, clients: int = CLIENTS) -> list[float]:
    """``requests`` POSTs from ``clients`` threads, each with its own keep-alive connection."""
    latencies: list[float] = []
    lock = threading.Lock()
    remaining = [requests]
    failures: list[str] = []

    def client(number: int):
        with httpx.Client(timeout=30) as http:
            body = order_body(number)
            while True:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                started = time.perf_counter()
                response = http.post(url, json=body)
                elapsed = time.perf_counter() - started
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text[:300]}")
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return latencies


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)


# --- 1. Checkout latency ----------------------------------------------------------------------------


def measure_checkout_latency(stack: Stack) -> dict:
    sizes = stack.sizes
    gunicorn, web = stack.gunicorn()
    urls = {
        "a_bare_insert": f"{web}/bench/orders/bare/",
        "b_checkout": f"{web}/api/orders/",
        "c_inline_follow_ups": f"{web}/bench/orders/inline/",
    }
    for url in urls.values():
        http_load(url, CLIENTS * 2)  # warm up connections, caches, both gunicorn workers
    # a and b alternate in rounds so drift on a shared machine hits both alike.
    samples: dict[str, list[float]] = {"a_bare_insert": [], "b_checkout": []}
    rounds = 4
    for _ in range(rounds):
        for name in samples:
            samples[name] += http_load(
                urls[name], max(CLIENTS, sizes["latency_requests"] // rounds)
            )
    stack.providers(PROVIDER_LATENCY_MS)
    samples["c_inline_follow_ups"] = http_load(
        urls["c_inline_follow_ups"], sizes["inline_requests"]
    )
    stack.providers(0)
    stack.stop(gunicorn)
    stack.purge()  # the checkouts' follow-ups: no worker ran during this measure
    result = {name: summary_ms(values) for name, values in samples.items()}
    result["b_p99_over_a_p99"] = round(
        result["b_checkout"]["p99_ms"] / result["a_bare_insert"]["p99_ms"], 3
    )
    result["c_p50_over_b_p50"] = round(
        result["c_inline_follow_ups"]["p50_ms"] / result["b_checkout"]["p50_ms"], 2
    )
    result["c_p99_over_b_p99"] = round(
        result["c_inline_follow_ups"]["p99_ms"] / result["b_checkout"]["p99_ms"], 2
    )
    return result


def measure_checkout_with_broker_down(stack: Stack) -> dict:
    """(b) against a private redis-server broker: up, then stopped. The relay publishes later."""
    redis_path = shutil.which("redis-server")
    if redis_path is None:
        raise RuntimeError("redis-server is needed for the broker-down measure")
    port = free_port()
    redis = stack.start(
        "redis",
        [
            redis_path,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        ready="Ready to accept connections",
    )
    gunicorn, web = stack.gunicorn(env={"CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0"})
    url = f"{web}/api/orders/"
    http_load(url, CLIENTS * 2)
    up = http_load(url, stack.sizes["broker_down_requests"])
    stack.stop(redis)
    http_load(url, CLIENTS * 2)  # the first failures open no new code path, but warm it alike
    down = http_load(url, stack.sizes["broker_down_requests"])
    stack.stop(gunicorn)
    result = {"broker_up": summary_ms(up), "broker_down": summary_ms(down)}
    result["down_p99_over_up_p99"] = round(
        result["broker_down"]["p99_ms"] / result["broker_up"]["p99_ms"], 3
    )
    from follow_ups.models import FollowUp

    result["follow_ups_left_for_the_relay"] = FollowUp.objects.filter(
        published_at__isnull=True, status="pending"
    ).count()
    return result


# --- 2. Throughput ----------------------------------------------------------------------------------


def _task_results_rate() -> tuple[int, float]:
    from django.db.models import Max, Min
    from django_celery_results.models import TaskResult

    done = TaskResult.objects.filter(status="SUCCESS")
    span = done.aggregate(first=Min("date_created"), last=Max("date_done"))
    seconds = (span["last"] - span["first"]).total_seconds()
    return done.count(), seconds


def measure_throughput(stack: Stack) -> dict:
    from celery import current_app
    from django.db.models import Max, Min
    from django_celery_results.models import TaskResult

    from follow_ups.models import FollowUp

    orders = stack.sizes["throughput_orders"]
    tasks = orders * 3
    # Follow-ups: queue them all, then let one worker drain them.
    stack.purge()
    FollowUp.objects.update(status="succeeded")  # earlier measures' rows are not part of this
    TaskResult.objects.all().delete()
    placed = FollowUp.objects.filter(subject__in=order_subjects(orders))
    worker = stack.worker("critical,default,bulk")
    wait_for(
        lambda: placed.filter(status="succeeded").count() >= tasks,
        timeout=600,
        interval=0.25,
        what="follow-ups to finish",
    )
    stack.stop(worker)
    # The follow-up tasks keep no result (their row is the result): the rows give the span.
    span = placed.aggregate(first=Min("started_at"), last=Max("finished_at"))
    follow_ups_per_second = tasks / (span["last"] - span["first"]).total_seconds()
    # No-ops: the same number of tasks, the same three queues, the same worker command.
    TaskResult.objects.all().delete()
    for number in range(tasks):
        current_app.send_task(
            "bench.tasks.noop_task",
            args=[number],
            queue=("critical", "default", "bulk")[number % 3],
        )
    worker = stack.worker("critical,default,bulk")
    wait_for(
        lambda: TaskResult.objects.filter(status="SUCCESS").count() >= tasks,
        timeout=600,
        interval=0.25,
        what="no-op tasks to finish",
    )
    stack.stop(worker)
    noops, noop_seconds = _task_results_rate()
    noops_per_second = noops / noop_seconds
    return {
        "tasks": tasks,
        "worker": "one worker, prefork --concurrency 2, queues critical,default,bulk",
        "follow_ups_per_second": round(follow_ups_per_second, 1),
        "noops_per_second": round(noops_per_second, 1),
        "ratio": round(follow_ups_per_second / noops_per_second, 3),
    }


# --- 3. Commit -> email -----------------------------------------------------------------------------


def measure_email_latency(stack: Stack) -> dict:
    from django.db import transaction

    from follow_ups.models import FollowUp

    stack.purge()
    FollowUp.objects.update(status="succeeded")  # nothing earlier measures left for the relay
    workers = [*stack.production_workers(), stack.relay()]
    latencies = []
    for number in range(stack.sizes["email_orders"] + 3):
        committed: list[float] = []
        with transaction.atomic():
            # Registered first, so it runs first after COMMIT, before the publishes.
            transaction.on_commit(lambda: committed.append(time.time()))  # noqa: B023
            order = order_place(number)
        subject = f"Order {order.number} confirmed"
        accepted = wait_for(
            lambda: stack.smtp.accepted_at(subject),  # noqa: B023
            timeout=30,
            interval=0.001,
            what="the confirmation email",
        )
        if number >= 3:  # the first few warm the worker's connections
            latencies.append(accepted - committed[0])
        time.sleep(0.3)  # idle workers: the next order arrives after this one is done
    for worker in workers:
        stack.stop(worker)
    return {"workers": f"{stack.production_workers_described()}, idle", **summary_ms(latencies)}


# --- 4. Burst ---------------------------------------------------------------------------------------


def queue_depths() -> dict[str, int]:
    from config.celery import app

    depths = {}
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        for name in ("critical", "default", "bulk"):
            try:
                depths[name] = channel.queue_declare(queue=name, passive=True).message_count
            except connection.channel_errors:  # not declared yet; the broker closed the channel
                depths[name] = -1
                channel = connection.channel()
    return depths


def relay_counters() -> dict[str, int]:
    from follow_ups.models import RelayState

    state = RelayState.objects.filter(pk=1).first()
    names = ("published", "recovered", "republished", "failed")
    return {name: getattr(state, name) if state else 0 for name in names}


def measure_burst(stack: Stack) -> dict:
    from django.db.models import Min
    from django.utils import timezone

    from follow_ups.models import FollowUp

    stack.purge()
    FollowUp.objects.update(status="succeeded")
    orders = stack.sizes["burst_orders"]
    enqueue_started = time.time()
    follow_ups = FollowUp.objects.filter(subject__in=order_subjects(orders))
    enqueue_seconds = time.time() - enqueue_started
    total = orders * 3
    samples = []
    started = time.time()
    relay_before = relay_counters()
    workers = [*stack.production_workers(), stack.relay()]
    while True:
        done = follow_ups.filter(status="succeeded").count()
        oldest = follow_ups.exclude(status="succeeded").aggregate(oldest=Min("created_at"))[
            "oldest"
        ]
        samples.append(
            {
                "t": round(time.time() - started, 2),
                "completed": done,
                "queue_depth": queue_depths(),
                "oldest_job_age_s": round((timezone.now() - oldest).total_seconds(), 1)
                if oldest
                else 0,
            }
        )
        if done >= total or time.time() - started > 3600:
            break
        time.sleep(0.5 if stack.sizes is SIZES["smoke"] else 1.0)
    for worker in workers:
        stack.stop(worker)
    finished = sorted(
        t.timestamp() for t in follow_ups.values_list("finished_at", flat=True) if t is not None
    )
    tenth = max(1, len(finished) // 10)
    first_rate = tenth / max(1e-6, finished[tenth - 1] - finished[0])
    last_rate = tenth / max(1e-6, finished[-1] - finished[-tenth])
    return {
        "orders": orders,
        "follow_ups": total,
        "workers": stack.production_workers_described(),
        "enqueue_seconds": round(enqueue_seconds, 1),
        "drain_seconds": round(finished[-1] - finished[0], 1),
        "first_tenth_per_second": round(first_rate, 1),
        "last_tenth_per_second": round(last_rate, 1),
        "last_over_first": round(last_rate / first_rate, 3),
        # What the relay did during the drain: re-published as lost should stay 0 (nothing is lost).
        "relay": {
            name: count - relay_before.get(name, 0) for name, count in relay_counters().items()
        },
        "samples": samples,
    }


# --- 5. Soak ----------------------------------------------------------------------------------------


def measure_soak(stack: Stack) -> dict:
    from celery import current_app

    from follow_ups.models import FollowUp
    from follow_ups.services import follow_up_send, follow_ups_mark_published
    from notifications.models import EmailDelivery
    from orders.services import order_subject

    stack.purge()
    FollowUp.objects.update(status="succeeded")
    total = stack.sizes["soak_tasks"]
    batch = min(1000, total)
    orders = [order_place(n) for n in range(batch)]
    emails = FollowUp.objects.filter(
        subject__in=[order_subject(order.pk) for order in orders], kind="confirmation_email"
    )
    ids = list(emails.values_list("pk", flat=True))
    purpose_keys = [f"order-{order.pk}-confirmation" for order in orders]
    # Recycling off: the point is to see whether memory grows, not to hide it.
    worker = stack.worker(
        "critical",
        env={"WORKER_MAX_TASKS_PER_CHILD": "0", "WORKER_MAX_MEMORY_PER_CHILD": "0"},
    )
    samples = []
    done = 0
    started = time.time()
    for round_number in range(-(-total // batch)):
        if round_number:
            # The same follow-ups again, whole: a new claim, a new email, a new delivery row.
            EmailDelivery.objects.filter(purpose_key__in=purpose_keys).delete()
            emails.update(status="pending", attempts=0, finished_at=None, published_at=None)
            with current_app.producer_or_acquire() as producer:
                for follow_up in emails.only("pk", "kind", "label"):
                    follow_up_send(follow_up, producer=producer)
            follow_ups_mark_published(ids)
        wait_for(
            lambda: not emails.exclude(status="succeeded").exists(),
            timeout=600,
            interval=0.1,
            what="a soak round",
        )
        done += batch
        samples.append(
            {"tasks": done, "rss_kb": worker.rss_kb(), "t": round(time.time() - started, 1)}
        )
    stack.stop(worker)
    warm = [s for s in samples if s["tasks"] >= total * 0.1] or samples
    baseline = warm[0]["rss_kb"]
    peak = max(s["rss_kb"] for s in warm)
    return {
        "tasks": done,
        "worker": "worker-critical, prefork --concurrency 2, max-tasks-per-child off",
        "rss_after_warm_up_kb": baseline,
        "rss_peak_after_warm_up_kb": peak,
        "peak_over_warm_up": round(peak / baseline, 3),
        "samples": samples,
    }


# --- Report -----------------------------------------------------------------------------------------

TARGETS = [
    ("1 checkout: b p99 / a p99", lambda r: r["latency"]["b_p99_over_a_p99"], "<=", 1.3),
    ("1 checkout: c p50 / b p50", lambda r: r["latency"]["c_p50_over_b_p50"], ">=", 20),
    (
        "1 checkout: broker down p99 / up p99",
        lambda r: r["broker_down"]["down_p99_over_up_p99"],
        "<=",
        1.1,
    ),
    ("2 follow-ups/s / no-ops/s (1 worker)", lambda r: r["throughput"]["ratio"], ">=", 0.5),
    ("3 commit -> email p50 (ms)", lambda r: r["email"]["p50_ms"], "<=", 50),
    ("3 commit -> email p99 (ms)", lambda r: r["email"]["p99_ms"], "<=", 250),
    ("4 burst: last tenth rate / first tenth", lambda r: r["burst"]["last_over_first"], ">=", 1.0),
    ("5 soak: peak RSS / RSS after warm-up", lambda r: r["soak"]["peak_over_warm_up"], "<=", 1.2),
]


def verdicts(results: dict) -> list[dict]:
    rows = []
    for name, value_of, op, target in TARGETS:
        try:
            value = value_of(results)
        except KeyError:
            continue
        met = value <= target if op == "<=" else value >= target
        rows.append({"measure": name, "value": value, "target": f"{op} {target}", "met": met})
    return rows


def table(results: dict) -> str:
    lines = []
    latency = results.get("latency")
    if latency:
        lines.append(f"Checkout latency, {CLIENTS} concurrent clients, HTTP to gunicorn (ms):")
        lines.append(f"  {'variant':<28}{'n':>6}{'p50':>9}{'p95':>9}{'p99':>9}")
        for name in ("a_bare_insert", "b_checkout", "c_inline_follow_ups"):
            row = latency[name]
            lines.append(
                f"  {name:<28}{row['n']:>6}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['p99_ms']:>9}"
            )
    down = results.get("broker_down")
    if down:
        for name in ("broker_up", "broker_down"):
            row = down[name]
            lines.append(
                f"  {'b, redis ' + name.split('_')[1]:<28}{row['n']:>6}{row['p50_ms']:>9}"
                f"{row['p95_ms']:>9}{row['p99_ms']:>9}"
            )
    if "throughput" in results:
        t = results["throughput"]
        lines.append(
            f"Throughput, {t['worker']}: follow-ups {t['follow_ups_per_second']}/s, "
            f"no-ops {t['noops_per_second']}/s"
        )
    if "email" in results:
        e = results["email"]
        lines.append(
            f"Commit -> email accepted ({e['n']} orders, {e['workers']}): p50 {e['p50_ms']} ms, "
            f"p95 {e['p95_ms']} ms, p99 {e['p99_ms']} ms"
        )
    if "burst" in results:
        b = results["burst"]
        lines.append(
            f"Burst: {b['orders']} orders ({b['follow_ups']} follow-ups) enqueued in "
            f"{b['enqueue_seconds']} s, drained in {b['drain_seconds']} s by {b['workers']}; "
            f"first tenth {b['first_tenth_per_second']}/s, last tenth {b['last_tenth_per_second']}/s"
        )
        if "relay" in b:
            lines.append(
                f"  the relay meanwhile: published {b['relay']['published']}, re-published as lost "
                f"{b['relay']['republished']}, recovered {b['relay']['recovered']}"
            )
    if "soak" in results:
        s = results["soak"]
        lines.append(
            f"Soak: {s['tasks']} tasks, {s['worker']}: RSS {s['rss_after_warm_up_kb']} kB after "
            f"warm-up, peak {s['rss_peak_after_warm_up_kb']} kB"
        )
    lines.append("")
    lines.append(f"  {'measure':<42}{'value':>10}  {'target':<10}")
    for row in results["verdicts"]:
        lines.append(
            f"  {row['measure']:<42}{row['value']:>10}  {row['target']:<10}"
            f"{'met' if row['met'] else 'MISSED'}"
        )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(12, 8))
    latency = results.get("latency")
    if latency:
        names = ["a_bare_insert", "b_checkout", "c_inline_follow_ups"]
        for offset, key in enumerate(("p50_ms", "p95_ms", "p99_ms")):
            axes[0][0].bar(
                [i + offset * 0.27 for i in range(3)],
                [latency[n][key] for n in names],
                0.27,
                label=key.replace("_ms", ""),
            )
        axes[0][0].set_xticks(
            [i + 0.27 for i in range(3)], ["(a) bare", "(b) checkout", "(c) inline"]
        )
        axes[0][0].set_yscale("log")
        axes[0][0].set_ylabel("ms (log)")
        axes[0][0].set_title(f"Checkout latency, {CLIENTS} clients")
        axes[0][0].legend()
    burst = results.get("burst")
    if burst and len(burst["samples"]) > 1:
        samples = burst["samples"]
        times = [s["t"] for s in samples[1:]]
        rates = [
            (b["completed"] - a["completed"]) / max(1e-6, b["t"] - a["t"])
            for a, b in zip(samples, samples[1:], strict=False)
        ]
        axes[0][1].plot(times, rates)
        axes[0][1].set_title(f"Burst of {burst['orders']} orders: follow-ups completed/s")
        axes[0][1].set_xlabel("s")
        depth = axes[1][0]
        for name in ("critical", "default", "bulk"):
            depth.plot(
                [s["t"] for s in samples], [s["queue_depth"][name] for s in samples], label=name
            )
        depth.plot(
            [s["t"] for s in samples],
            [s["oldest_job_age_s"] for s in samples],
            "k--",
            label="oldest job age (s)",
        )
        depth.set_title("Burst: queue depth (messages) and oldest job age")
        depth.set_xlabel("s")
        depth.legend()
    soak = results.get("soak")
    if soak:
        axes[1][1].plot(
            [s["tasks"] for s in soak["samples"]], [s["rss_kb"] / 1024 for s in soak["samples"]]
        )
        axes[1][1].set_title("Soak: worker RSS (MB) over tasks")
        axes[1][1].set_xlabel("tasks")
        # From zero, with headroom: a flat line must not hide under the frame.
        axes[1][1].set_ylim(0, max(s["rss_kb"] for s in soak["samples"]) / 1024 * 1.25)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


MEASURES = {
    "latency": measure_checkout_latency,
    "broker_down": measure_checkout_with_broker_down,
    "throughput": measure_throughput,
    "email": measure_email_latency,
    "burst": measure_burst,
    "soak": measure_soak,
}


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        ),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the shop against bare baselines.")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves it runs (seconds)")
    parser.add_argument("--only", nargs="*", choices=sorted(MEASURES), help="run only these")
    for name in SIZES["full"]:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"override {name}")
    args = parser.parse_args()
    mode = "smoke" if args.smoke else "full"
    sizes = dict(SIZES[mode])
    for name in sizes:
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-"))
    results: dict = {"mode": mode, "sizes": sizes, "machine": machine(), "logs": str(log_dir)}
    stack = Stack(sizes, log_dir)
    try:
        for name in args.only or MEASURES:
            began = time.time()
            print(f"[bench] {name} ...", flush=True)
            results[name] = MEASURES[name](stack)
            print(f"[bench] {name} done in {time.time() - began:.0f} s", flush=True)
    finally:
        stack.close()
    results["verdicts"] = verdicts(results)
    # Only a complete run may replace full.json / full.png (the figures docs/performance.md quotes).
    stamp = "smoke" if args.smoke else ("partial" if args.only else "full")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(results, indent=2))
    plot(results, RESULTS / f"{stamp}.png")
    print(table(results))
    print(f"\nSaved {RESULTS / f'{stamp}.json'} and {RESULTS / f'{stamp}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
