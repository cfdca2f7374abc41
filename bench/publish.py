"""`python -m bench.publish [--rounds N]`: what handing an order's follow-ups to the broker costs the
web process, by design, measured on the production broker settings (RabbitMQ quorum queues,
publisher confirms, persistent messages).

Per order (three follow-ups: confirmation email, warehouse sync, invoice), after the commit:

- ``three_confirms``: three ``follow_up_send`` calls, each waiting for its own confirm (the default,
  ``FOLLOW_UP_PUBLISH=commit``).
- ``three_one_confirm_wait``: the same three messages published on a channel of this process's own
  in confirm mode, then one wait until the broker has confirmed all three.
- ``one_message``: one ``follow_up_send``: the web's share if an order cost one message that a
  worker fanned out into its three follow-ups.
- ``notify``: one ``pg_notify`` on the database connection: the web's share when publication is
  left to the relay woken by the commit (``FOLLOW_UP_PUBLISH=relay``).

Each variant runs ``rounds`` times, interleaved, timed in wall-clock and in this thread's CPU; the
medians are printed with the machine and the broker, and saved to ``bench/results/publish.json``.
What each design then does to commit → email latency is end-to-end work: ``make bench`` measures
the default and the relay variants (measures 6 and 8).
"""

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "publish.json"


def environment() -> tuple[str, str]:
    """The production settings (bench.settings) on a vhost of this run's own."""
    from tests.processes import rabbitmq_vhost_create

    database_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    broker_url = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    if not database_url.startswith("postgres") or not broker_url.startswith("amqp"):
        sys.exit("bench.publish needs PostgreSQL (DATABASE_URL) and RabbitMQ (CELERY_BROKER_URL)")
    broker_url, vhost = rabbitmq_vhost_create(broker_url, prefix="bench-publish")
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "EMAIL_HOST": "127.0.0.1",
            "SITE_URL": "http://127.0.0.1",
        }
    )
    return broker_url, vhost


class ConfirmBatch:
    """Publishes on a channel of its own in confirm mode without waiting per message, then waits
    once for the broker to confirm everything published since the last wait.

    The channel is used by nothing else, so its delivery tags (1, 2, 3, … from ``confirm.select``)
    are counted here, and an ack with ``multiple`` set is read exactly.
    """

    def __init__(self, app):
        from kombu import Producer

        self.app = app
        self.connection = app.connection_for_write()
        self.connection.ensure_connection(max_retries=3)
        self.channel = self.connection.channel()
        self.channel.confirm_select()
        self.channel._confirm_selected = True
        # py-amqp makes every publish wait for its confirm when the transport asks for confirms;
        # on this channel the publish only sends, and wait() collects the confirms.
        self.channel.basic_publish = self.channel._basic_publish
        self.producer = Producer(self.channel)
        self.published = 0
        self.confirmed = 0

    def send(self, follow_up, queue: str) -> None:
        """Publish the follow-up's message as ``follow_up_send`` does, without waiting."""
        from follow_ups.services import RUN_TASK_NAME

        self.app.send_task(
            RUN_TASK_NAME,
            args=[follow_up.pk],
            queue=queue,
            producer=self.producer,
            argsrepr=f"[{follow_up.pk}] {follow_up.kind} {follow_up.label}",
        )
        self.published += 1

    def wait(self, timeout: float = 5.0) -> None:
        from amqp import spec
        from amqp.exceptions import MessageNacked

        def on_confirm(method, delivery_tag, multiple):
            if method == spec.Basic.Nack:
                raise MessageNacked(f"the broker refused message {delivery_tag}")
            self.confirmed = delivery_tag if multiple else max(self.confirmed, delivery_tag)

        while self.confirmed < self.published:
            self.channel.wait(
                [spec.Basic.Ack, spec.Basic.Nack], callback=on_confirm, timeout=timeout
            )

    def close(self) -> None:
        self.connection.release()


def measure(rounds: int) -> dict:
    import django

    django.setup()
    from celery import current_app
    from django.db import connection

    from follow_ups.models import FollowUp
    from follow_ups.services import RELAY_CHANNEL, follow_up_send

    kinds = [
        ("confirmation_email", "critical"),
        ("warehouse_sync", "default"),
        ("invoice", "default"),
    ]
    rows = [
        FollowUp(pk=10**9 + n, kind=kind, label="CS-BENCH") for n, (kind, _) in enumerate(kinds)
    ]
    batch = ConfirmBatch(current_app)

    def three_confirms():
        for row in rows:
            follow_up_send(row)

    def three_one_confirm_wait():
        for row, (_, queue) in zip(rows, kinds, strict=True):
            batch.send(row, queue)
        batch.wait()

    def one_message():
        follow_up_send(rows[0])

    def notify():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [RELAY_CHANNEL, "[1, 2, 3]"])

    variants = {
        "three_confirms": three_confirms,
        "three_one_confirm_wait": three_one_confirm_wait,
        "one_message": one_message,
        "notify": notify,
    }
    for action in variants.values():  # connections, channels and queue declarations first
        for _ in range(20):
            action()
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, action in variants.items():
            started, started_cpu = time.perf_counter(), time.thread_time()
            action()
            cpu[name].append((time.thread_time() - started_cpu) * 1000)
            wall[name].append((time.perf_counter() - started) * 1000)
    batch.close()
    return {
        name: {
            "wall_ms_median": round(statistics.median(wall[name]), 3),
            "wall_ms_p99": round(sorted(wall[name])[int(len(wall[name]) * 0.99) - 1], 3),
            "cpu_ms_median": round(statistics.median(cpu[name]), 3),
        }
        for name in variants
    }


def summarize(runs: list[dict]) -> dict:
    """Each variant's figures: the median of the runs, their range, and every run."""
    return {
        name: {
            figure: {
                "median": round(statistics.median(run[name][figure] for run in runs), 3),
                "runs": [run[name][figure] for run in runs],
            }
            for figure in runs[0][name]
        }
        for name in runs[0]
    }


def table(designs: dict) -> list[str]:
    def cell(spread: dict) -> str:
        low, high = min(spread["runs"]), max(spread["runs"])
        return f"{spread['median']:.3f} [{low:.3f}-{high:.3f}]"

    lines = [f"  {'per order':<24}{'wall median ms':>24}{'wall p99 ms':>24}{'CPU median ms':>24}"]
    for name, figures in designs.items():
        lines.append(
            f"  {name:<24}{cell(figures['wall_ms_median']):>24}{cell(figures['wall_ms_p99']):>24}"
            f"{cell(figures['cpu_ms_median']):>24}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000, help="orders per variant and run")
    parser.add_argument("--runs", type=int, default=3, help="repeated runs (median and range)")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    from tests.processes import rabbitmq_vhost_delete

    _, vhost = environment()
    try:
        runs = [measure(args.rounds) for _ in range(args.runs)]
    finally:
        rabbitmq_vhost_delete(vhost)
    from bench.report import machine

    result = {
        "machine": machine(),
        "rounds_per_run": args.rounds,
        "designs": summarize(runs),
    }
    print(f"machine: {result['machine']['cpu']}, {result['machine']['cpus']} CPUs")
    print("Publishing an order's three follow-ups, by design: medians, [min-max] of the runs")
    print("\n".join(table(result["designs"])))
    if not args.no_save:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
