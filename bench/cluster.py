"""What a second worker host adds, measured on the cluster (tests/cluster.py): `make bench-cluster`.

A backlog of orders is placed through the web host while every worker is stopped, so each order's
three follow-ups wait in the quorum queues. Then the workers of one host (round A: worker-a's
worker-critical and worker-default) or of two hosts (round B: worker-a's and worker-b's) start and
drain it. From the moment every started worker is ready to the last follow-up finished, it
measures follow-ups per second overall and per kind (the ledger's ``finished_at``), the time to
drain, how long one follow-up took (``finished_at - started_at``), and the CPU seconds of each tier
(/proc: the worker hosts' processes, PostgreSQL, the three RabbitMQ nodes, beat and the relay, the
simulators). Rounds alternate A B A B A B so the machine's drift hits both alike; the summary
gives each figure's median and range.

The providers answer as real ones do (SMTP DATA in 100 ms, the warehouse in 50 ms), so a worker
spends much of a follow-up waiting. This is a same-box measurement: every "host" is a network
namespace on this machine and all of them share its vCPUs, so a second worker host adds worker
concurrency (its waits overlap the first host's) but no CPU. On separate machines it would add
both. Needs root, as the cluster does; writes bench/results/cluster.json after every run.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from bench import measures
from bench.measures import SMTP_LATENCY_MS, WAREHOUSE_LATENCY_MS, summary_ms
from bench.providers import KINDS
from bench.report import machine
from tests.cluster import READY_LINE, WORKER_HOSTS, Cluster, available
from tests.processes import wait_until

RESULTS = Path(__file__).resolve().parent / "results" / "cluster.json"
ROUNDS = {"A": WORKER_HOSTS[:1], "B": WORKER_HOSTS}
WORKER_LINES = ("worker-critical", "worker-default")
CLIENTS = 4  # threads placing the backlog; the web host runs WEB_CONCURRENCY=2 gunicorn workers
ORDER = {
    "email": "bench@example.com",
    "name": "Bench Client",
    "address": {"line1": "Kerkstraat 1", "city": "Amsterdam", "postal_code": "1017 GA",
                "country": "NL"},
    "items": [{"sku": "SEED-CEL", "quantity": 1}],  # the seed catalog's; the release stocked it
    "card_number": "4242424242424242",
}  # fmt: skip
REMOVE_SECONDS = 45  # what --budget keeps back for removing the cluster
SAME_BOX = (
    "Same-box measurement: both worker hosts are network namespaces on one machine and share its "
    "{cpus} vCPUs with PostgreSQL, the three RabbitMQ nodes and the simulators. A second host adds "
    "worker concurrency (I/O waits overlap) but no CPU."
)


# --- CPU, from /proc ------------------------------------------------------------------------------
def cpu_seconds(pids: list[int]) -> float:
    return measures.cpu_seconds(pids, reaped=True)


def postgres_pids(cluster: Cluster) -> list[int]:
    postmaster = (cluster.postgres.data / "postmaster.pid").read_text().split()[0]
    children = subprocess.run(["pgrep", "-P", postmaster], capture_output=True, text=True).stdout
    return [int(postmaster), *map(int, children.split())]


def tier_cpu(cluster: Cluster, hosts: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds so far of each tier: only the cluster's own processes, never the machine's own
    PostgreSQL or RabbitMQ."""

    def groups(*names: str) -> float:
        return cpu_seconds([pid for name in names for pid in cluster.processes[name].group()])

    return {
        **{line: groups(*(f"{host}/{line}" for host in hosts)) for line in WORKER_LINES},
        "postgresql": cpu_seconds(postgres_pids(cluster)),
        "rabbitmq (3 nodes)": cpu_seconds([p for n in cluster.rabbits for p in n.process.group()]),
        "ops (beat, relay)": groups("ops/beat", "ops/relay"),
        "web": groups("web/web"),
        "warehouse simulator": cpu_seconds(cluster.warehouse.group()),
        "this process (SMTP recorder)": sum(os.times()[:2]),
    }


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU, from /proc/stat: busy is all but idle and iowait. The
    first eight fields only: guest time is already counted in user time."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


# --- One round ------------------------------------------------------------------------------------
def backlog_place(cluster: Cluster, orders: int) -> float:
    """``orders`` checkouts through the web host's API; their orders per second."""
    remaining = iter(range(orders))
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                response = http.post(f"{cluster.web_url}/api/orders/", json=ORDER)
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    began = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} checkouts failed, e.g. {failures[0]}")
    return orders / (time.monotonic() - began)


def relay_counters(cluster: Cluster) -> dict[str, int]:
    rows = cluster.sql(
        "SELECT published, recovered, republished, failed FROM follow_ups_relaystate WHERE id = 1"
    )
    names = ("published", "recovered", "republished", "failed")
    return dict(zip(names, rows[0], strict=True)) if rows else {}


def workers_stop(cluster: Cluster, hosts: tuple[str, ...]) -> None:
    """Warm shutdown (SIGTERM) of these hosts' workers, all at once."""
    running = [cluster.processes[f"{host}/{line}"] for host in hosts for line in WORKER_LINES]
    with ThreadPoolExecutor(len(running)) as pool:
        list(pool.map(lambda process: process.stop(timeout=60), running))


# The round's follow-ups: the rows written after ``watermark`` (the largest id before it).
UNFINISHED = (
    "SELECT 1 FROM follow_ups_followup WHERE id > %s AND kind = ANY(%s) "
    "AND status NOT IN ('succeeded', 'dead') LIMIT 1"
)
LEDGER = (
    "SELECT kind, status, attempts, extract(epoch FROM started_at), "
    "extract(epoch FROM finished_at) FROM follow_ups_followup WHERE id > %s AND kind = ANY(%s)"
)


def round_run(cluster: Cluster, name: str, orders: int) -> dict:
    hosts = ROUNDS[name]
    began = time.monotonic()
    cluster.smtp.clear()
    watermark = cluster.sql("SELECT coalesce(max(id), 0) FROM follow_ups_followup")[0][0]
    placed_per_second = backlog_place(cluster, orders)
    relay_before = relay_counters(cluster)
    starting = [
        (line, cluster.start(host, line, wait=False)) for host in hosts for line in WORKER_LINES
    ]
    for line, process in starting:
        process.wait_for_log(READY_LINE[line], timeout=120)
    cpu_before, jiffies_before, ready_at = tier_cpu(cluster, hosts), machine_jiffies(), time.time()
    # One connection for the polling: a new one each time would be a PostgreSQL backend forked
    # four times a second, counted in its CPU.
    with psycopg.connect(cluster.postgres.url("shop"), autocommit=True) as database:
        wait_until(
            lambda: not database.execute(UNFINISHED, (watermark, list(KINDS))).fetchone(),
            timeout=600,
            interval=0.25,
            message="the backlog to drain",
        )
    cpu_after, jiffies_after = tier_cpu(cluster, hosts), machine_jiffies()
    workers_stop(cluster, hosts)
    rows = cluster.sql(LEDGER, watermark, list(KINDS))
    assert len(rows) == orders * len(KINDS), f"{len(rows)} follow-ups for {orders} orders"
    # The window: every started worker ready -> the last follow-up finished. The few finished
    # before (a host that was ready first) are left out of the rates and the CPU alike.
    finished = [row for row in rows if row[4] is not None and float(row[4]) > ready_at]
    last = max(float(row[4]) for row in finished)
    per_kind = {}
    for kind in KINDS:
        mine = [row for row in finished if row[0] == kind]
        per_kind[kind] = {
            "per_second": round(len(mine) / (max(float(r[4]) for r in mine) - ready_at), 2),
            "run_time": summary_ms([float(r[4]) - float(r[3]) for r in mine]),
        }
    busy, total = (
        after - before for after, before in zip(jiffies_after, jiffies_before, strict=True)
    )
    cpu = {tier: cpu_after[tier] - cpu_before[tier] for tier in cpu_before}
    cpu["total"] = sum(cpu.values())
    return {
        "round": name,
        "worker_hosts": list(hosts),
        "orders": orders,
        "placed_per_second": round(placed_per_second, 1),
        "follow_ups_in_window": len(finished),
        "finished_before_window": len(rows) - len(finished),
        "drain_seconds": round(last - ready_at, 2),
        "follow_ups_per_second": round(len(finished) / (last - ready_at), 2),
        "kinds": per_kind,
        "dead": sum(row[1] == "dead" for row in rows),
        "retried": sum(row[2] - 1 for row in rows if row[2] > 1),
        "emails_accepted": len(cluster.smtp.messages),
        "relay": {k: v - relay_before.get(k, 0) for k, v in relay_counters(cluster).items()},
        "cpu_seconds": {tier: round(seconds, 2) for tier, seconds in cpu.items()},
        "cpu_ms_per_follow_up": {
            tier: round(seconds * 1000 / len(finished), 2) for tier, seconds in cpu.items()
        },
        "machine_busy_vcpus": round(busy / total * os.cpu_count(), 2),
        "wall_seconds": round(time.monotonic() - began, 1),
    }


def idle_cpu(cluster: Cluster, *, seconds: float) -> dict[str, float]:
    """CPU seconds per second of each tier with every worker stopped: what the rest costs idle."""
    before = tier_cpu(cluster, ())
    time.sleep(seconds)
    after = tier_cpu(cluster, ())
    return {tier: round((after[tier] - before[tier]) / seconds, 3) for tier in before}


# --- The report -----------------------------------------------------------------------------------
def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


FIGURES = ("follow_ups_per_second", "drain_seconds", "machine_busy_vcpus", "wall_seconds")


def summarize(runs: list[dict]) -> dict:
    summary = {}
    for name in ROUNDS:
        mine = [run for run in runs if run["round"] == name]
        if not mine:
            continue
        summary[name] = {
            "runs": len(mine),
            **{figure: spread([run[figure] for run in mine]) for figure in FIGURES},
            "per_second": {
                k: spread([run["kinds"][k]["per_second"] for run in mine]) for k in KINDS
            },
            "run_time_p50_ms": {
                k: spread([run["kinds"][k]["run_time"]["p50_ms"] for run in mine]) for k in KINDS
            },
            "cpu_ms_per_follow_up": {
                tier: spread([run["cpu_ms_per_follow_up"][tier] for run in mine])
                for tier in mine[0]["cpu_ms_per_follow_up"]
            },
        }
    if "A" in summary and "B" in summary:
        a, b = (summary[n]["follow_ups_per_second"]["median"] for n in "AB")
        summary["b_over_a_follow_ups_per_second"] = round(b / a, 2)
    return summary


def table(results: dict) -> str:
    def cell(figure: dict) -> str:
        return f"{figure['median']:g} [{figure['min']:g}-{figure['max']:g}]"

    lines = [SAME_BOX.format(cpus=results["machine"]["cpus"]), ""]
    lines.append(
        f"{'run':>3} {'hosts':>5} {'drain s':>8} {'fu/s':>7} "
        + " ".join(f"{k + '/s':>20}" for k in KINDS)
        + f" {'busy vCPU':>9} {'wall s':>7}"
    )
    for number, run in enumerate(results["runs"], 1):
        lines.append(
            f"{number:>3} {run['round']:>5} {run['drain_seconds']:>8} "
            f"{run['follow_ups_per_second']:>7} "
            + " ".join(f"{run['kinds'][k]['per_second']:>20}" for k in KINDS)
            + f" {run['machine_busy_vcpus']:>9} {run['wall_seconds']:>7}"
        )
    for name, summary in results["summary"].items():
        if not isinstance(summary, dict):
            continue
        lines += ["", f"Round {name} ({len(ROUNDS[name])} worker host(s)), median [range] of "
                  f"{summary['runs']} run(s):"]  # fmt: skip
        lines.append(f"  follow-ups/s          {cell(summary['follow_ups_per_second'])}")
        for kind in KINDS:
            lines.append(
                f"  {kind + '/s':<21} {cell(summary['per_second'][kind])}"
                f"   one takes p50 {cell(summary['run_time_p50_ms'][kind])} ms"
            )
        lines.append(f"  drain seconds        {cell(summary['drain_seconds'])}")
        lines.append(f"  machine busy vCPUs   {cell(summary['machine_busy_vcpus'])}")
        lines.append("  CPU ms per follow-up:")
        for tier, figure in summary["cpu_ms_per_follow_up"].items():
            lines.append(f"    {tier:<29} {cell(figure)}")
    if idle := results.get("idle_cpu_per_second"):
        busy = ", ".join(f"{tier} {seconds:g}" for tier, seconds in idle.items() if seconds)
        lines += ["", f"Idle, every worker stopped (CPU s per s): {busy}"]
    if "b_over_a_follow_ups_per_second" in results["summary"]:
        ratio = results["summary"]["b_over_a_follow_ups_per_second"]
        lines += ["", f"Two worker hosts / one: {ratio} x the follow-ups per second (medians)."]
    return "\n".join(lines)


# --- Running it -----------------------------------------------------------------------------------
def interrupted(*_) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=600, help="orders in each run's backlog")
    parser.add_argument("--pairs", type=int, default=3, help="A B pairs to run")
    parser.add_argument(
        "--budget", type=float, default=0, help="seconds for it all, removal included: no run is "
        "started that the previous ones say would not fit (0: no limit)"
    )  # fmt: skip
    args = parser.parse_args()
    reason = available()
    if reason:
        sys.exit(f"cannot build the cluster here: {reason}")
    started = time.monotonic()
    signal.signal(signal.SIGTERM, interrupted)  # removed like Ctrl-C: the cluster goes either way
    log_dir = Path(tempfile.mkdtemp(prefix="bench-cluster-logs-"))
    print(f"building the cluster (logs in {log_dir}) ...", flush=True)
    cluster = Cluster.build(log_dir=log_dir)
    results: dict = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "same_box": SAME_BOX.format(cpus=os.cpu_count()),
        "machine": machine(),
        "sizes": {
            "orders_per_run": args.orders,
            "follow_ups_per_run": args.orders * len(KINDS),
            "smtp_data_reply_ms": SMTP_LATENCY_MS,
            "warehouse_latency_ms": WAREHOUSE_LATENCY_MS,
            "per_worker_host": {
                "worker-critical": int(cluster.env["CRITICAL_CONCURRENCY"]),
                "worker-default": int(cluster.env["DEFAULT_CONCURRENCY"]),
            },
        },
        "build_seconds": round(time.monotonic() - started, 1),
        "logs": str(log_dir),
        "runs": [],
        "summary": {},
    }
    try:
        cluster.smtp.reply_delay = SMTP_LATENCY_MS / 1000
        # Nothing ships during the runs, so the reconciliation job beat runs every 5 minutes
        # writes no "shipped" emails into the drain.
        httpx.put(
            f"{cluster.warehouse_url}/config",
            json={"latency_ms": WAREHOUSE_LATENCY_MS, "ship_after_seconds": 10**7},
            timeout=10,
        ).raise_for_status()
        workers_stop(cluster, WORKER_HOSTS)
        print(f"up in {results['build_seconds']} s; every worker stopped", flush=True)
        results["idle_cpu_per_second"] = idle_cpu(cluster, seconds=10)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        for name in "AB" * args.pairs:
            walls = [run["wall_seconds"] for run in results["runs"]]
            same = [run["wall_seconds"] for run in results["runs"] if run["round"] == name]
            expected = (same or walls or [0])[-1]
            left = args.budget - (time.monotonic() - started) - REMOVE_SECONDS
            if args.budget and expected > left:
                print(f"stopping: a round {name} run takes ~{expected:.0f} s, {left:.0f} s left")
                break
            run = round_run(cluster, name, args.orders)
            results["runs"].append(run)
            results["summary"] = summarize(results["runs"])
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
            print(
                f"run {len(results['runs'])}: round {name}: {run['follow_ups_per_second']} "
                f"follow-ups/s, drained in {run['drain_seconds']} s, {run['wall_seconds']} s "
                "in all",
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted: keeping the runs done so far", flush=True)
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)  # a second Ctrl-C must not leave it half-removed
        print("removing the cluster ...", flush=True)
        cluster.remove()
    if results["runs"]:
        print("\n" + table(results))
        print(f"\nSaved {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
