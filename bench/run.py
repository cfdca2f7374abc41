"""`make bench` (or `python -m bench.run [--smoke]`): the measures of bench/measures.py, each against
a baseline run now.

This machine is shared and noisy, so no figure stands alone: each is a ratio to a baseline measured
in the same run, on the same PostgreSQL and RabbitMQ, with the production settings (quorum queues,
publisher confirms, persistent messages, acks late, prefetch 1). The measures are in
bench/measures.py, the processes they run in bench/stack.py, the report in bench/report.py.

It needs PostgreSQL (DATABASE_URL: its server is used, with a database of the benchmark's own) and
RabbitMQ (CELERY_BROKER_URL: a private vhost is made with rabbitmqctl and removed afterwards).
Results: a table on stdout, JSON and a PNG plot in bench/results/. With ``--runs N`` (``make bench``
runs three) the selected measures run N times in turn (measure after measure, then again), and
every figure is the median of the runs; each run's figures are kept under ``runs`` and every verdict
shows their range. The measures that repeat themselves in interleaved rounds (SELF_REPEATING: the
open loop, per kind, the publishing designs) run in the first run only.
"""

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.measures import MEASURES, SELF_REPEATING, SIZES
from bench.report import machine, plot, table, verdicts
from bench.stack import Stack

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def median_tree(trees: list):
    """The runs' figures in one tree of the same shape: each number the median of the runs'; a
    list of numbers (a measure's own rounds) holds every run's; any other list (a burst's samples)
    is the first run's."""

    def is_number(value) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    first = trees[0]
    if isinstance(first, dict):
        return {key: median_tree([tree[key] for tree in trees if key in tree]) for key in first}
    if isinstance(first, list) and all(is_number(v) for tree in trees for v in tree):
        return [v for tree in trees for v in tree]
    if all(is_number(v) for v in trees) and len(set(trees)) > 1:
        return round(statistics.median(trees), 3)
    return first


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the shop against bare baselines.")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves it runs (seconds)")
    parser.add_argument("--only", nargs="*", choices=sorted(MEASURES), help="run only these")
    parser.add_argument("--runs", type=int, default=1, help="repeat the measures; medians reported")
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
    # SIGTERM stops the run as Ctrl-C does: the stack's processes, database and vhost are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("[bench] stopped"))
    stack = Stack(sizes, log_dir)
    runs: list[dict] = []
    try:
        for run in range(args.runs):
            runs.append({})
            for name in args.only or MEASURES:
                if run and name in SELF_REPEATING:
                    continue  # its own rounds are its repeats: once is three times already
                began = time.time()
                print(f"[bench] {name} (run {run + 1} of {args.runs}) ...", flush=True)
                runs[-1][name] = MEASURES[name](stack)
                print(f"[bench] {name} done in {time.time() - began:.0f} s", flush=True)
                # What is measured so far survives a run stopped later.
                (RESULTS / "in-progress.json").write_text(json.dumps({**results, "runs": runs}))
    finally:
        results["machine"]["postgresql_autovacuum"] = stack.autovacuum_described()
        stack.close()
    results.update(median_tree(runs))
    if args.runs > 1:
        results["runs"] = runs
    results["verdicts"] = verdicts(results, runs)
    # Only a complete run may replace full.json / full.png (the figures docs/performance.md quotes).
    stamp = "smoke" if args.smoke else ("partial" if args.only else "full")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(results, indent=2))
    plot(results, RESULTS / f"{stamp}.png")
    print(table(results))
    print(f"\nSaved {RESULTS / f'{stamp}.json'} and {RESULTS / f'{stamp}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
