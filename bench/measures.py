"""The benchmark's measures, each against a baseline measured in the same run (docs/performance.md).

1. checkout latency over HTTP, 8 concurrent clients, gunicorn (2 gthread workers x 4 threads):
   (a) bare order insert, (b) the real checkout, (c) the checkout with its follow-ups inline
   (providers answer in 200 ms); and (b) with the broker stopped (a private redis-server).
2. (replaced by 7: follow-ups per second against Celery no-ops mixed three kinds of work.)
3. commit -> email accepted by an SMTP server, workers idle.
4. a burst of orders enqueued at once, drained by the production workers: completed/s over time.
5. soak: worker memory (RSS) over many follow-ups of all three kinds, child recycling off so a
   leak would show.
6. checkout latency open-loop (a fixed arrival rate), with CPU per order per tier; and the same
   with the web and the workers pinned to a vCPU each (``open_loop_pinned``). Against a′ (nothing
   published): b, the default; at 50 %, b with publishing left to the relay, and b publishing with
   one confirm wait for the order's messages (a design the shop does not ship; bench/api.py).
7. per follow-up kind: follow-ups/s against the same provider calls made bare, same concurrency.
8. commit -> email accepted at 70 % of the emails' capacity, by publishing design (the default,
   the relay, one message per order fanned out by a worker: bench/tasks.py, not shipped).
9. the relay re-publishing a backlog left by a broker outage: follow-ups per second.
10. what handing an order's three follow-ups to the broker costs the web, by publishing design
    (bench/publish.py; also ``python -m bench.publish`` alone).

Measures 3 and 4 run the production processes around the workers, the follow-up relay included
(``manage.py follow_up_relay``, as Procfile.production runs it): its ticks and lost-message checks
cost what they cost in production. Each takes the ``Stack`` (bench/stack.py) and returns the
figures the report (bench/report.py) prints and saves.
"""

import functools
import os
import random
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx

from bench.stack import CLIENTS, Stack, order_body, order_place, order_subjects
from tests.processes import wait_until

PROVIDER_LATENCY_MS = 200

SIZES = {
    "full": {
        "latency_requests": 2000,
        "inline_requests": 240,
        "broker_down_requests": 1000,
        "email_orders": 200,
        "burst_orders": 10_000,
        "soak_tasks": 30_000,
        "capacity_requests": 1000,
        "open_loop_seconds": 15,
        "open_loop_rounds": 3,
        "open_loop_turns_seconds": 60,
        "kind_orders": 300,
        "kind_rounds": 3,
        "email_load_seconds": 60,
        "capacity_orders": 200,
        "catch_up_orders": 1000,
        "publish_orders": 1000,
        "publish_runs": 3,
    },
    "smoke": {
        "latency_requests": 48,
        "inline_requests": 16,
        "broker_down_requests": 48,
        "email_orders": 10,
        "burst_orders": 60,
        "soak_tasks": 300,
        "capacity_requests": 48,
        "open_loop_seconds": 2,
        "open_loop_rounds": 1,
        "open_loop_turns_seconds": 3,
        "kind_orders": 12,
        "kind_rounds": 1,
        "email_load_seconds": 3,
        "capacity_orders": 10,
        "catch_up_orders": 20,
        "publish_orders": 20,
        "publish_runs": 1,
    },
}


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
    redis, redis_url = stack.redis()
    gunicorn, web = stack.gunicorn(env={"CELERY_BROKER_URL": redis_url})
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
        accepted = wait_until(
            lambda: stack.smtp.accepted_at(subject),  # noqa: B023
            timeout=30,
            interval=0.001,
            message="the confirmation email",
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
    """One worker runs the same orders' three follow-ups again and again, each time whole: a new
    claim, email and delivery row, warehouse call, PDF and invoice row. Recycling off, so a leak
    would show; every sample is kept and plotted, the first tenth (the warm-up) included."""
    from celery import current_app

    from follow_ups.models import FollowUp
    from follow_ups.services import follow_up_send, follow_ups_mark_published
    from notifications.models import EmailDelivery
    from orders.models import Invoice, Order
    from orders.services import order_subject

    stack.purge()
    FollowUp.objects.update(status="succeeded")
    total = stack.sizes["soak_tasks"]
    batch = min(999, total - total % 3 or 3)  # the three follow-ups of batch / 3 orders
    orders = [order_place(n) for n in range(batch // 3)]
    follow_ups = FollowUp.objects.filter(subject__in=[order_subject(order.pk) for order in orders])
    order_ids = [order.pk for order in orders]
    purpose_keys = [f"order-{order.pk}-confirmation" for order in orders]
    # Recycling off: the point is to see whether memory grows, not to hide it.
    worker = stack.worker(
        "critical,default,bulk",
        env={"WORKER_MAX_TASKS_PER_CHILD": "0", "WORKER_MAX_MEMORY_PER_CHILD": "0"},
    )
    samples = []
    done = 0
    started = time.time()
    for round_number in range(-(-total // batch)):
        if round_number:
            EmailDelivery.objects.filter(purpose_key__in=purpose_keys).delete()
            Invoice.objects.filter(order__in=order_ids).delete()
            Order.objects.filter(pk__in=order_ids).update(shipment_reference="")
            follow_ups.update(status="pending", attempts=0, finished_at=None, published_at=None)
            with current_app.producer_or_acquire() as producer:
                for follow_up in follow_ups.only("pk", "kind", "label"):
                    follow_up_send(follow_up, producer=producer)
            follow_ups_mark_published(list(follow_ups.only("pk", "attempts")))
        wait_until(
            lambda: not follow_ups.exclude(status="succeeded").exists(),
            timeout=600,
            interval=0.1,
            message="a soak round",
        )
        done += batch
        stack.smtp.clear()  # the server keeps every message: a soak's worth would fill the memory
        samples.append(
            {"tasks": done, "rss_kb": worker.rss_kb(), "t": round(time.time() - started, 1)}
        )
    stack.stop(worker)
    warm = [s for s in samples if s["tasks"] >= total * 0.1] or samples
    baseline = warm[0]["rss_kb"]
    peak = max(s["rss_kb"] for s in warm)
    return {
        "tasks": done,
        "worker": "one worker, queues critical,default,bulk, prefork --concurrency 2, "
        "max-tasks-per-child off",
        "kinds": "confirmation email, warehouse sync, invoice, one third each",
        "rss_first_sample_kb": samples[0]["rss_kb"],
        "rss_after_warm_up_kb": baseline,
        "rss_peak_after_warm_up_kb": peak,
        "peak_over_warm_up": round(peak / baseline, 3),
        "peak_over_first_sample": round(
            max(s["rss_kb"] for s in samples) / samples[0]["rss_kb"], 3
        ),
        "samples": samples,
    }


# --- 6. Checkout, open loop: latency at a fixed arrival rate, and CPU per order per tier ----------
# Closed-loop clients on two vCPUs saturate the box, so their latency ratio is a CPU ratio. Here
# requests arrive at a fixed rate (a share of the whole pipeline's capacity, measured first), each
# timed from when it was due, not from when a client got round to it (no coordinated omission).
# The production workers and the relay run meanwhile, as they would. Each run's CPU is read from
# its first request until its orders' follow-ups are all done, counting what each tier's parents
# reaped (exited backends, recycled children), so it is those orders' whole cost per tier.


def open_loop(url: str | list[str], rate: float, seconds: float, senders: int = 48) -> dict:
    """POST ``rate`` requests per second for ``seconds``; latency from each request's due time.

    With several URLs each request goes to one of them at random (seeded), independently of the
    one before: each sees the same load, drift and stalls, and each is as likely as any other to
    follow a request whose follow-ups the workers are running just then. ``by_url`` holds each
    one's latencies."""
    urls = [url] if isinstance(url, str) else list(url)
    count = max(1, int(rate * seconds))
    shuffle = random.Random(14)
    turns = [shuffle.choice(urls) for _ in range(count)]
    start = time.perf_counter() + 0.1
    latencies: list[float] = []
    by_url: dict[str, list[float]] = {u: [] for u in urls}
    failures: list[str] = []
    lock = threading.Lock()
    next_index = [0]
    abandoned = [0]
    give_up = start + seconds * 3 + 10

    def sender(number: int):
        # Idle connections are dropped after 1 s, before gunicorn's 2 s keep-alive closes them: a
        # request sent on a connection the server is closing would fail without an answer.
        with httpx.Client(timeout=30, limits=httpx.Limits(keepalive_expiry=1.0)) as http:
            body = order_body(number)
            while True:
                with lock:
                    index = next_index[0]
                    next_index[0] += 1
                if index >= count:
                    return
                if time.perf_counter() > give_up:  # the box cannot keep up: stop adding to it
                    with lock:
                        abandoned[0] += 1
                    continue
                due = start + index / rate
                target = turns[index]
                time.sleep(max(0.0, due - time.perf_counter()))
                try:
                    response = http.post(target, json=body)
                except httpx.HTTPError as exc:  # counted, so the run fails instead of losing it
                    with lock:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                done = time.perf_counter()
                with lock:
                    latencies.append(done - due)
                    by_url[target].append(done - due)
                    if response.status_code != 201:
                        failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return {
        "latencies": latencies,
        "by_url": by_url,
        "orders": count - abandoned[0],
        "abandoned": abandoned[0],
    }


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int], *, reaped: bool = False) -> float:
    """utime + stime of each process from /proc; with ``reaped``, plus what it has reaped (cutime +
    cstime), so a PostgreSQL backend or a recycled pool child that exited is still counted, through
    its parent."""
    fields_counted = slice(11, 15) if reaped else slice(11, 13)
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += sum(int(value) for value in fields[fields_counted])
    return total / TICKS


def _group(process) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-g", str(process.popen.pid)], capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in out.split()]


def _named(name: str) -> list[int]:
    """Every process whose name is exactly ``name``: for ``postgres``, the postmaster and all its
    backends (a backend that exited is counted in the postmaster's reaped time)."""
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def tier_cpu(web, background) -> dict[str, float]:
    """CPU seconds so far of each tier, counting what each tier's parents have reaped (exited
    PostgreSQL backends, recycled pool children). PostgreSQL and RabbitMQ are the machine's
    servers, so anything else using them at the same time counts too: run on a quiet machine."""
    return {
        "web": cpu_seconds(_group(web), reaped=True),
        "postgresql": cpu_seconds(_named("postgres"), reaped=True),
        "rabbitmq": cpu_seconds(_named("beam.smp"), reaped=True),
        "workers_and_relay": cpu_seconds(
            [pid for p in background for pid in _group(p)], reaped=True
        ),
        "load_generator": sum(os.times()[:2]),
    }


def _pipeline_capacity(web: str, requests: int) -> float:
    """Orders per second from the first checkout to the last of their follow-ups finished."""
    from django.db.models import Max
    from django.utils import timezone

    from follow_ups.models import FollowUp
    from orders.services import CONFIRMATION_EMAIL, INVOICE, WAREHOUSE_SYNC

    since = timezone.now()
    began = time.time()
    done = len(http_load(f"{web}/api/orders/", requests))
    rows = FollowUp.objects.filter(
        created_at__gte=since, kind__in=[CONFIRMATION_EMAIL, WAREHOUSE_SYNC, INVOICE]
    )
    wait_until(
        lambda: not rows.exclude(status="succeeded").exists(),
        timeout=900,
        interval=0.5,
        message="the capacity run's follow-ups",
    )
    return done / (rows.aggregate(last=Max("finished_at"))["last"].timestamp() - began)


def _pin(processes, cpus: set[int]) -> None:
    """Keep these processes (and the children they fork later) on ``cpus``."""
    for process in processes:
        for pid in _group(process):
            try:
                os.sched_setaffinity(pid, cpus)
            except ProcessLookupError:  # exited meanwhile
                continue


def measure_checkout_open_loop(stack: Stack, *, pinned: bool = False) -> dict:
    """Measure 6. With ``pinned`` (``open_loop_pinned``): the web on the first vCPU and the workers
    and relay on the second, PostgreSQL, RabbitMQ and the load generator free on both, as near as
    one box comes to the web and the workers on hosts of their own."""
    from django.utils import timezone

    from follow_ups.models import FollowUp

    sizes = stack.sizes
    stack.purge()
    FollowUp.objects.update(status="succeeded")
    background = [*stack.production_workers(), stack.relay()]
    variants = {"a_prime_rows_no_publish": "/bench/orders/rows/", "b_checkout": "/api/orders/"}
    gunicorn, web = stack.gunicorn(env={"BENCH_PUBLISH_TIMES": "1"})
    relay_gunicorn, relay_web = stack.gunicorn(env={"FOLLOW_UP_PUBLISH": "relay"})
    # A design measured, not shipped: the three messages, then one wait for their confirms.
    batch_gunicorn, batch_web = stack.gunicorn(env={"BENCH_PUBLISH_DESIGN": "one_confirm_wait"})
    at_half_load = {  # the designs set against b at 50 % only: (their gunicorn, its URL)
        "b_publish_left_to_the_relay": (relay_gunicorn, relay_web),
        "b_one_confirm_wait": (batch_gunicorn, batch_web),
    }
    publish_times = Path(stack.env["VAR_DIR"])
    if pinned:
        _pin([gunicorn, relay_gunicorn, batch_gunicorn], {0})
        _pin(background, {1})
    for url in (*variants.values(), "/bench/orders/bare/"):
        http_load(f"{web}{url}", CLIENTS * 2)
    for _, base in at_half_load.values():
        http_load(f"{base}/api/orders/", CLIENTS * 2)
    # Capacity: the bare insert, closed loop, as many clients as it takes to saturate the box.
    began = time.perf_counter()
    done = len(http_load(f"{web}/bench/orders/bare/", sizes["capacity_requests"]))
    bare_capacity = done / (time.perf_counter() - began)
    # And the whole pipeline's: real checkouts, closed loop, until their follow-ups are all done.
    # On a box where the workers share the web's cores, this is what an arrival rate can sustain.
    capacity = _pipeline_capacity(web, sizes["capacity_requests"])
    result: dict = {
        "pinned": "web on vCPU 0, workers and relay on vCPU 1" if pinned else "nothing pinned",
        "capacity_bare_insert_per_second": round(bare_capacity, 1),
        "capacity_pipeline_orders_per_second": round(capacity, 1),
        "rates_are_shares_of": "the pipeline's capacity (checkout and its follow-ups)",
        "loads": {},
    }
    for load in (0.5, 0.8):
        rate = capacity * load
        names = [*variants, *(at_half_load if load == 0.5 else [])]
        rounds: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(sizes["open_loop_rounds"]):  # interleaved, so drift hits every variant
            for name in names:
                server, base = at_half_load.get(name, (gunicorn, web))
                path = variants.get(name, "/api/orders/")
                since = timezone.now()
                for stale in publish_times.glob("publish-seconds-*.txt"):
                    stale.unlink()
                before = tier_cpu(server, background)
                run = open_loop(f"{base}{path}", rate, sizes["open_loop_seconds"])
                # b's after-commit publishing inside each request, as its web timed it (bench/api.py)
                publishing = [
                    float(line)
                    for times in publish_times.glob("publish-seconds-*.txt")
                    for line in times.read_text().split()
                ]
                # Until the run's follow-ups are done (a′'s after the relay's grace), so each
                # tier's CPU is this run's orders' whole cost and nothing spills into the next.
                _follow_ups_done_since(since, f"the {name} run")
                after = tier_cpu(server, background)
                rounds[name].append(
                    {
                        **summary_ms(run["latencies"]),
                        # Requests never sent because the box fell too far behind.
                        "abandoned": run["abandoned"],
                        "cpu_ms_per_order": {
                            tier: round((after[tier] - before[tier]) * 1000 / run["orders"], 2)
                            for tier in before
                        },
                        **(
                            {"publishing_in_the_request": summary_ms(publishing)}
                            if publishing and name == "b_checkout"
                            else {}
                        ),
                    }
                )
        block = _open_loop_block(rate, rounds)
        # The targets' figure: the variants share one stream, each request to one at random, so
        # drift, stalls and the follow-ups' work hit them alike; every round's latencies are
        # pooled, so a p99 rests on a thousand requests, not on a round's few worst.
        turns = {name: f"{web}{path}" for name, path in variants.items()}
        if load == 0.5:
            turns.update({name: f"{base}/api/orders/" for name, (_, base) in at_half_load.items()})
        taken: list[dict[str, list[float]]] = []
        for _ in range(sizes["open_loop_rounds"]):
            since = timezone.now()
            run = open_loop(list(turns.values()), rate, sizes["open_loop_turns_seconds"])
            _follow_ups_done_since(since, "the shared-stream run")
            taken.append({name: run["by_url"][url] for name, url in turns.items()})
        block["shared_stream"] = _shared_stream_block(taken)
        result["loads"][f"{int(load * 100)}%"] = block
    for process in (gunicorn, relay_gunicorn, batch_gunicorn, *background):
        stack.stop(process)
    stack.purge()
    return result


def _follow_ups_done_since(since, what: str) -> None:
    from follow_ups.models import FollowUp

    wait_until(
        lambda: (
            not FollowUp.objects.filter(created_at__gte=since).exclude(status="succeeded").exists()
        ),
        timeout=600,
        interval=0.5,
        message=f"the follow-ups of {what}",
    )


# How each variant's p99 over a′'s is named in the results.
GAP_LABELS = {
    "b_checkout": "b",
    "b_publish_left_to_the_relay": "relay",
    "b_one_confirm_wait": "one_confirm_wait",
}


def _p99_gap_interval(b: list[float], a: list[float], resamples: int = 2000) -> list[float]:
    """A 90 % bootstrap interval of p99(b) − p99(a) in ms: how far the pooled figure could move
    if the run were repeated."""
    import numpy

    rng = numpy.random.default_rng(14)
    b_values, a_values = numpy.array(b), numpy.array(a)
    gaps = [
        numpy.percentile(rng.choice(b_values, len(b_values)), 99, method="nearest")
        - numpy.percentile(rng.choice(a_values, len(a_values)), 99, method="nearest")
        for _ in range(resamples)
    ]
    low, high = numpy.percentile(gaps, [5, 95]) * 1000
    return [round(float(low), 1), round(float(high), 1)]


def _shared_stream_block(taken: list[dict[str, list[float]]]) -> dict:
    """The variants that shared one stream: each one's latencies pooled over the rounds, and b's
    (and the relay's) p99 over a′'s, pooled, with its bootstrap interval and per round."""
    base = "a_prime_rows_no_publish"
    names = list(taken[0])
    pooled = {name: [v for run in taken for v in run[name]] for name in names}
    block: dict = {name: summary_ms(pooled[name]) for name in names}
    for name in names:
        if name == base:
            continue
        label = GAP_LABELS[name]
        block[f"{label}_p99_minus_a_prime_p99_ms"] = round(
            block[name]["p99_ms"] - block[base]["p99_ms"], 2
        )
        block[f"{label}_p99_minus_a_prime_p99_ms_interval_90"] = _p99_gap_interval(
            pooled[name], pooled[base]
        )
        block[f"{label}_p99_minus_a_prime_p99_ms_rounds"] = [
            round((percentile(run[name], 0.99) - percentile(run[base], 0.99)) * 1000, 2)
            for run in taken
        ]
    block["rounds_p99_ms"] = [
        {name: round(percentile(run[name], 0.99) * 1000, 2) for name in names} for run in taken
    ]
    return block


def _open_loop_block(rate: float, rounds: dict[str, list[dict]]) -> dict:
    """Each variant's figures as the median of its rounds, every round kept; the two targets'
    figures paired round by round (b against the a′ of the same round)."""
    block: dict = {"rate_per_second": round(rate, 1)}
    for name, runs in rounds.items():
        tiers = runs[0]["cpu_ms_per_order"]
        block[name] = {
            **{
                figure: round(statistics.median(run[figure] for run in runs), 2)
                for figure in ("n", "p50_ms", "p95_ms", "p99_ms", "mean_ms")
            },
            "abandoned": sum(run["abandoned"] for run in runs),
            "cpu_ms_per_order": {
                tier: round(statistics.median(run["cpu_ms_per_order"][tier] for run in runs), 2)
                for tier in tiers
            },
            "rounds": runs,
        }
    timed = [
        run["publishing_in_the_request"]
        for run in rounds["b_checkout"]
        if "publishing_in_the_request" in run
    ]
    if timed:
        block["b_checkout"]["publishing_in_the_request_ms"] = {
            figure: round(statistics.median(t[figure] for t in timed), 2)
            for figure in ("p50_ms", "p99_ms", "mean_ms")
        }
    pairs = list(zip(rounds["b_checkout"], rounds["a_prime_rows_no_publish"], strict=True))
    gaps = [b["p99_ms"] - a["p99_ms"] for b, a in pairs]
    web = [b["cpu_ms_per_order"]["web"] - a["cpu_ms_per_order"]["web"] for b, a in pairs]
    block["b_p99_minus_a_prime_p99_ms"] = round(statistics.median(gaps), 2)
    block["b_p99_minus_a_prime_p99_ms_rounds"] = [round(v, 2) for v in gaps]
    block["publish_web_cpu_ms_per_order"] = round(statistics.median(web), 2)
    block["publish_web_cpu_ms_per_order_rounds"] = [round(v, 2) for v in web]
    for name in rounds.keys() & {"b_publish_left_to_the_relay", "b_one_confirm_wait"}:
        label = GAP_LABELS[name]
        block[f"{label}_p99_minus_a_prime_p99_ms"] = round(
            statistics.median(
                r["p99_ms"] - a["p99_ms"] for r, (_, a) in zip(rounds[name], pairs, strict=True)
            ),
            2,
        )
        block[f"{label}_web_cpu_ms_per_order_over_a_prime"] = round(
            statistics.median(
                r["cpu_ms_per_order"]["web"] - a["cpu_ms_per_order"]["web"]
                for r, (_, a) in zip(rounds[name], pairs, strict=True)
            ),
            2,
        )
    return block


# --- 7. Follow-ups per kind against the bare provider calls -----------------------------------------

SMTP_LATENCY_MS = 100
WAREHOUSE_LATENCY_MS = 50


def _spread(values: list[float]) -> dict:
    """The median of the runs, and every run (the range is their min and max)."""
    return {"median": round(statistics.median(values), 3), "runs": [round(v, 3) for v in values]}


def _follow_ups_drained(stack: Stack, kind: str, queue: str, children: int, subjects) -> dict:
    """Start the production worker for ``queue`` (task events on, as in production) and let it
    drain the ``kind`` rows of ``subjects``; their rate (first claim to last finish) and its CPU."""
    from django.db.models import Max, Min

    from follow_ups.models import FollowUp

    rows = FollowUp.objects.filter(subject__in=subjects, kind=kind)
    worker = stack.worker(queue, concurrency=children, task_events=True)
    cpu = cpu_seconds(_group(worker), reaped=True)
    wait_until(
        lambda: rows.filter(status="succeeded").count() >= len(subjects),
        timeout=600,
        interval=0.25,
        message=f"{kind} follow-ups to finish",
    )
    cpu = cpu_seconds(_group(worker), reaped=True) - cpu
    stack.stop(worker)
    span = rows.aggregate(first=Min("started_at"), last=Max("finished_at"))
    return {
        "per_second": len(subjects) / (span["last"] - span["first"]).total_seconds(),
        "worker_cpu_ms_per_follow_up": cpu * 1000 / len(subjects),
    }


def measure_follow_ups_per_kind(stack: Stack) -> dict:
    """Per kind: follow-ups/s on the production worker that serves it ÷ the same provider calls/s
    made bare (bench/providers.py) at the same concurrency, the providers answering in
    SMTP_LATENCY_MS / WAREHOUSE_LATENCY_MS. Each round places fresh orders (their messages wait in
    the queues), then for each kind runs the bare calls and the follow-ups, alternating which goes
    first, and reads the worker's CPU from /proc."""

    from bench.providers import KINDS, calls_per_second
    from follow_ups.models import FollowUp
    from orders.services import order_subject

    concurrency = {
        "confirmation_email": ("critical", stack.critical_concurrency),
        "warehouse_sync": ("default", stack.default_concurrency),
        "invoice": ("bulk", stack.default_concurrency),
    }
    stack.purge()
    FollowUp.objects.update(status="succeeded")
    stack.provider_latency(smtp_ms=SMTP_LATENCY_MS, warehouse_ms=WAREHOUSE_LATENCY_MS)
    runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for round_number in range(stack.sizes["kind_rounds"]):
        orders = [order_place(n) for n in range(stack.sizes["kind_orders"])]
        order_ids = [str(order.pk) for order in orders]
        subjects = [order_subject(order.pk) for order in orders]
        for kind in KINDS:
            queue, children = concurrency[kind]
            steps = {
                "bare": functools.partial(calls_per_second, kind, order_ids, children),
                "follow_ups": functools.partial(
                    _follow_ups_drained, stack, kind, queue, children, subjects
                ),
            }
            order = ("bare", "follow_ups") if round_number % 2 == 0 else ("follow_ups", "bare")
            results = {name: steps[name]() for name in order}
            runs[kind].append(
                {
                    "follow_ups_per_second": results["follow_ups"]["per_second"],
                    "bare_calls_per_second": results["bare"]["per_second"],
                    "ratio": results["follow_ups"]["per_second"] / results["bare"]["per_second"],
                    "worker_cpu_ms_per_follow_up": results["follow_ups"][
                        "worker_cpu_ms_per_follow_up"
                    ],
                    "bare_cpu_ms_per_call": results["bare"]["cpu_ms_per_call"],
                }
            )
    stack.provider_latency(smtp_ms=0, warehouse_ms=0)
    kinds = {}
    for kind, kind_runs in runs.items():
        queue, children = concurrency[kind]
        kinds[kind] = {
            "queue": queue,
            "concurrency": children,
            **{name: _spread([run[name] for run in kind_runs]) for name in kind_runs[0]},
        }
        # At saturation one vCPU would run 1000 / (worker CPU ms per follow-up) of them a second.
        kinds[kind]["follow_ups_per_worker_vcpu_second"] = _spread(
            [1000 / run["worker_cpu_ms_per_follow_up"] for run in kind_runs]
        )
    return {
        "orders_per_round": stack.sizes["kind_orders"],
        "rounds": stack.sizes["kind_rounds"],
        "smtp_latency_ms": SMTP_LATENCY_MS,
        "warehouse_latency_ms": WAREHOUSE_LATENCY_MS,
        "kinds": kinds,
    }


# --- 8. Commit -> email under load -------------------------------------------------------------------


def measure_email_under_load(stack: Stack) -> dict:
    """Commit -> email accepted while orders arrive at 70 % of what the production workers drain,
    the providers answering in SMTP_LATENCY_MS / WAREHOUSE_LATENCY_MS. The capacity is measured
    first: a backlog of orders, drained by the same workers (their emails' rate)."""
    from django.conf import settings
    from django.db import transaction
    from django.db.models import Max, Min

    from follow_ups.models import FollowUp

    stack.purge()
    FollowUp.objects.update(status="succeeded")
    stack.provider_latency(smtp_ms=SMTP_LATENCY_MS, warehouse_ms=WAREHOUSE_LATENCY_MS)
    backlog = order_subjects(stack.sizes["capacity_orders"])
    emails = FollowUp.objects.filter(subject__in=backlog, kind="confirmation_email")
    background = [*stack.production_workers(), stack.relay()]
    wait_until(
        lambda: (
            not FollowUp.objects.filter(subject__in=backlog).exclude(status="succeeded").exists()
        ),
        timeout=600,
        interval=0.25,
        message="the backlog to drain",
    )
    span = emails.aggregate(first=Min("started_at"), last=Max("finished_at"))
    capacity = len(backlog) / (span["last"] - span["first"]).total_seconds()
    rate = capacity * 0.7
    # The publishing designs take turns, order by order, under the same load: publish after
    # commit (the default), leave it to the relay woken by the commit (FOLLOW_UP_PUBLISH=relay),
    # or one message per order that a worker fans out (bench/tasks.py; not shipped).
    from bench.tasks import fan_out_after_commit
    from follow_ups import services as follow_up_services

    default_publish = follow_up_services.follow_ups_publish_after_commit
    designs = ("commit", "relay", "fan_out")
    committed: dict[str, tuple[str, float]] = {}
    began = time.time()
    number = 0
    try:
        while time.time() - began < stack.sizes["email_load_seconds"]:
            due = began + number / rate
            time.sleep(max(0.0, due - time.time()))
            design = designs[number % len(designs)]
            settings.FOLLOW_UP_PUBLISH = "relay" if design == "relay" else "commit"
            follow_up_services.follow_ups_publish_after_commit = (
                fan_out_after_commit if design == "fan_out" else default_publish
            )
            stamp: list[float] = []
            with transaction.atomic():
                # Registered first, so it runs first after COMMIT, before the publishes.
                transaction.on_commit(lambda stamp=stamp: stamp.append(time.time()))
                order = order_place(number)
            committed[f"Order {order.number} confirmed"] = (design, stamp[0])
            number += 1
    finally:
        settings.FOLLOW_UP_PUBLISH = "commit"
        follow_up_services.follow_ups_publish_after_commit = default_publish
    late = time.time()
    wait_until(
        lambda: all(stack.smtp.accepted_at(subject) for subject in committed),
        timeout=600,
        interval=0.1,
        message="every confirmation email",
    )
    for process in background:
        stack.stop(process)
    stack.provider_latency(smtp_ms=0, warehouse_ms=0)
    latencies = {
        design: [
            stack.smtp.accepted_at(subject) - at
            for subject, (made_by, at) in committed.items()
            if made_by == design
        ]
        for design in designs
    }
    return {
        "workers": stack.production_workers_described(),
        "smtp_latency_ms": SMTP_LATENCY_MS,
        "warehouse_latency_ms": WAREHOUSE_LATENCY_MS,
        "email_capacity_per_second": round(capacity, 1),
        "rate_per_second": round(rate, 1),
        "achieved_rate_per_second": round(len(committed) / (late - began), 1),
        # The default design's figures at the top level, as before; both designs below.
        **summary_ms(latencies["commit"]),
        "by_design": {
            "publish_after_commit": summary_ms(latencies["commit"]),
            "relay_woken_by_the_commit": summary_ms(latencies["relay"]),
            "one_message_fanned_out_by_a_worker": summary_ms(latencies["fan_out"]),
        },
    }


# --- 9. The relay catching up after a broker outage --------------------------------------------------


def measure_relay_catch_up(stack: Stack) -> dict:
    """Orders saved while nothing could be published (as during a broker outage: their rows are
    owed to the broker), older than the relay's grace; then the relay starts, as when the broker
    is back. Its rate: follow-ups re-published per second, from holding its lease to the last one
    marked published. No worker runs, so the rate is the relay's alone."""
    from django.conf import settings
    from django.db.models import Max
    from django.utils import timezone

    from bench.api import nothing_published
    from follow_ups.models import FollowUp

    stack.purge()
    FollowUp.objects.update(status="succeeded", published_at=timezone.now())
    with nothing_published():
        subjects = order_subjects(stack.sizes["catch_up_orders"])
    owed = FollowUp.objects.filter(subject__in=subjects)
    total = owed.count()
    assert not owed.filter(published_at__isnull=False).exists(), "the backlog was published"
    time.sleep(settings.FOLLOW_UP_RELAY_GRACE_SECONDS)  # an outage at least as long as the grace
    began = time.time()
    relay = stack.relay()
    held = time.time()
    wait_until(
        lambda: not owed.filter(published_at__isnull=True).exists(),
        timeout=600,
        interval=0.05,
        message="the relay to publish the backlog",
    )
    last = owed.aggregate(last=Max("published_at"))["last"].timestamp()
    stack.stop(relay)
    depths = queue_depths()
    stack.purge()
    return {
        "follow_ups": total,
        "relay_start_seconds": round(held - began, 2),
        "seconds": round(last - held, 2),
        "per_second": round(total / max(1e-6, last - held), 1),
        "queued_after": depths,
    }


# --- 10. Publishing designs: the web's share -------------------------------------------------------


def measure_publish_designs(stack: Stack) -> dict:
    """bench/publish.py's micro-measure on the stack's broker; then what publishing adds to a whole
    checkout (``order_place`` in this process, no HTTP): the same checkout with and without its
    after-commit publish, interleaved, in wall-clock and this thread's CPU. Nothing consumes what
    either publishes, so the queues are purged after."""
    from bench import publish
    from bench.api import nothing_published

    orders, runs = stack.sizes["publish_orders"], stack.sizes["publish_runs"]
    designs = publish.summarize([publish.measure(orders) for _ in range(runs)])

    def checkout(number: int, published: bool) -> tuple[float, float]:
        started, started_cpu = time.perf_counter(), time.thread_time()
        if published:
            order_place(number)
        else:
            with nothing_published():
                order_place(number)
        return (time.perf_counter() - started) * 1000, (time.thread_time() - started_cpu) * 1000

    checkouts = []
    for _ in range(runs):
        timings: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for number in range(orders // 4):
            for published in (True, False):
                timings[published].append(checkout(number, published))
        wall = {k: statistics.median(t[0] for t in v) for k, v in timings.items()}
        cpu = {k: statistics.median(t[1] for t in v) for k, v in timings.items()}
        checkouts.append(
            {
                "wall_ms_median": {"published": wall[True], "not_published": wall[False]},
                "cpu_ms_median": {"published": cpu[True], "not_published": cpu[False]},
                "publish_adds_wall_ms": round(wall[True] - wall[False], 3),
                "publish_adds_cpu_ms": round(cpu[True] - cpu[False], 3),
            }
        )
    stack.purge()
    return {
        "orders_per_run": orders,
        "designs": designs,
        "checkout_in_process": {
            "orders_per_run": orders // 4,
            "publish_adds_wall_ms": _spread([run["publish_adds_wall_ms"] for run in checkouts]),
            "publish_adds_cpu_ms": _spread([run["publish_adds_cpu_ms"] for run in checkouts]),
            "runs": checkouts,
        },
    }


# Measures that already run three interleaved rounds (sizes ``open_loop_rounds``, ``kind_rounds``,
# ``publish_runs``) and report each figure as the median of them: ``--runs`` does not repeat them.
SELF_REPEATING = {"open_loop", "open_loop_pinned", "per_kind", "publish"}

MEASURES = {
    "latency": measure_checkout_latency,
    "broker_down": measure_checkout_with_broker_down,
    "email": measure_email_latency,
    "burst": measure_burst,
    "soak": measure_soak,
    "open_loop": measure_checkout_open_loop,
    "open_loop_pinned": functools.partial(measure_checkout_open_loop, pinned=True),
    "per_kind": measure_follow_ups_per_kind,
    "email_load": measure_email_under_load,
    "catch_up": measure_relay_catch_up,
    "publish": measure_publish_designs,
}
