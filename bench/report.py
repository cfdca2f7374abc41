"""The benchmark's report: the verdicts against the targets, the table on stdout, the plot, and the
machine it ran on."""

import os
import platform
from pathlib import Path

from bench.measures import GAP_LABELS
from bench.stack import CLIENTS

GAP_TARGETS = (("open_loop", "open loop"), ("open_loop_pinned", "pinned"))


def _shared_gap(key: str, suffix: str = ""):
    """Measure 6's b p99 over a′'s, from the shared stream at 50 % (``suffix``: its interval)."""
    return lambda r: r[key]["loads"]["50%"]["shared_stream"]["b_p99_minus_a_prime_p99_ms" + suffix]


TARGETS = [
    ("1 checkout: b p99 / a p99", lambda r: r["latency"]["b_p99_over_a_p99"], "<=", 1.3),
    ("1 checkout: c p50 / b p50", lambda r: r["latency"]["c_p50_over_b_p50"], ">=", 20),
    (
        "1 checkout: broker down p99 / up p99",
        lambda r: r["broker_down"]["down_p99_over_up_p99"],
        "<=",
        1.1,
    ),
    ("3 commit -> email p50 (ms)", lambda r: r["email"]["p50_ms"], "<=", 50),
    ("3 commit -> email p99 (ms)", lambda r: r["email"]["p99_ms"], "<=", 250),
    ("4 burst: last tenth rate / first tenth", lambda r: r["burst"]["last_over_first"], ">=", 1.0),
    ("5 soak: peak RSS / RSS after warm-up", lambda r: r["soak"]["peak_over_warm_up"], "<=", 1.2),
    *(
        (
            f"7 {kind.split('_')[0]}: follow-ups/s / bare calls/s",
            lambda r, kind=kind: r["per_kind"]["kinds"][kind]["ratio"]["median"],
            ">=",
            0.8,
        )
        for kind in ("confirmation_email", "warehouse_sync", "invoice")
    ),
    ("8 commit -> email p99 at 70% (ms)", lambda r: r["email_load"]["p99_ms"], "<=", 1000),
    *(
        (f"6 {label} 50%: b p99 - a' p99 (ms)", _shared_gap(key), "<=", 10)
        for key, label in GAP_TARGETS
    ),
    (
        "6 publish: web CPU per order (ms)",
        lambda r: r["open_loop"]["loads"]["50%"]["publish_web_cpu_ms_per_order"],
        "<=",
        1.5,
    ),
]


# Targets whose figure comes with a 90 % interval: the verdict is taken on the interval, so a
# difference the run cannot tell from noise is neither met nor missed ("unresolved"). Keyed by the
# target's name.
INTERVALS = {
    f"6 {label} 50%: b p99 - a' p99 (ms)": _shared_gap(key, "_interval_90")
    for key, label in GAP_TARGETS
}


VERDICT_WORDS = {True: "met", False: "MISSED", None: "unresolved"}


def _met(value: float, op: str, target: float, interval: list[float] | None) -> bool | None:
    """True or False; None when the interval straddles the target (unresolved)."""
    if not (isinstance(interval, list) and len(interval) == 2):
        return value <= target if op == "<=" else value >= target
    low, high = interval
    if op == "<=":
        return True if high <= target else False if low > target else None
    return True if low >= target else False if high < target else None


def _value_in(value_of, run: dict):
    """The figure in one run, or None where the run did not have that measure (one that repeats
    itself runs in the first run only)."""
    try:
        return value_of(run)
    except KeyError:
        return None


def verdicts(results: dict, runs: list[dict] | None = None) -> list[dict]:
    """Each target against the median of the runs, with every run's value."""
    rows = []
    for name, value_of, op, target in TARGETS:
        try:
            value = value_of(results)
        except KeyError:
            continue
        interval = _value_in(INTERVALS[name], results) if name in INTERVALS else None
        met = _met(value, op, target, interval)
        row = {"measure": name, "value": value, "target": f"{op} {target}", "met": met}
        if interval is not None:
            row["interval_90"] = interval
        if runs and len(runs) > 1:
            row["runs"] = [
                value for value in (_value_in(value_of, run) for run in runs) if value is not None
            ]
        rows.append(row)
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
            f"Soak: {s['tasks']} tasks ({s.get('kinds', 'emails')}), {s['worker']}: RSS "
            f"{s.get('rss_first_sample_kb', '-')} kB at the first sample, "
            f"{s['rss_after_warm_up_kb']} kB after warm-up (a tenth), peak "
            f"{s['rss_peak_after_warm_up_kb']} kB"
        )
    for key in ("open_loop", "open_loop_pinned"):
        if key not in results:
            continue
        o = results[key]
        lines.append(
            f"Checkout, open loop ({o.get('pinned', 'nothing pinned')}; pipeline capacity "
            f"{o['capacity_pipeline_orders_per_second']}/s, bare insert "
            f"{o['capacity_bare_insert_per_second']}/s; workers and relay running), latency from"
            " each request's due time (ms), and CPU per order by tier (ms):"
        )
        tiers = ("web", "postgresql", "rabbitmq", "workers_and_relay", "load_generator")
        lines.append(
            f"  {'load / variant':<40}{'n':>6}{'p50':>8}{'p99':>8}  "
            + "".join(f"{tier[:8]:>9}" for tier in tiers)
        )
        for load, block in o["loads"].items():
            for name, row in block.items():
                if not isinstance(row, dict) or "cpu_ms_per_order" not in row:
                    continue
                cpu = row["cpu_ms_per_order"]
                lines.append(
                    f"  {load + ' ' + name:<40}{row['n']:>6}{row['p50_ms']:>8}{row['p99_ms']:>8}  "
                    + "".join(f"{cpu[tier]:>9}" for tier in tiers)
                )
                if "publishing_in_the_request_ms" in row:
                    timed = row["publishing_in_the_request_ms"]
                    lines.append(
                        f"    of which publishing after commit: p50 {timed['p50_ms']} ms,"
                        f" p99 {timed['p99_ms']} ms, mean {timed['mean_ms']} ms"
                    )
            turns = block.get("shared_stream")
            if turns:
                lines.append(f"  {load}, the variants sharing one stream at random, pooled rounds:")
                for name, row in turns.items():
                    if isinstance(row, dict):
                        lines.append(
                            f"    {name:<38}{row['n']:>6}{row['p50_ms']:>8}{row['p99_ms']:>8}"
                        )
                for label in GAP_LABELS.values():
                    if f"{label}_p99_minus_a_prime_p99_ms" in turns:
                        low, high = turns[f"{label}_p99_minus_a_prime_p99_ms_interval_90"]
                        lines.append(
                            f"    {label} p99 - a' p99: "
                            f"{turns[f'{label}_p99_minus_a_prime_p99_ms']} ms (90 % interval "
                            f"{low} to {high}; rounds "
                            f"{turns[f'{label}_p99_minus_a_prime_p99_ms_rounds']})"
                        )
    if "per_kind" in results:
        k = results["per_kind"]
        lines.append(
            f"Follow-ups per kind vs the bare provider calls ({k['orders_per_round']} orders x "
            f"{k['rounds']} rounds; SMTP answers in {k['smtp_latency_ms']} ms, the warehouse in "
            f"{k['warehouse_latency_ms']} ms); medians, [min-max] of the rounds:"
        )
        lines.append(
            f"  {'kind':<20}{'children':>9}{'follow-ups/s':>20}{'bare/s':>20}{'ratio':>20}"
            f"{'worker CPU ms':>16}{'per vCPU-s':>12}"
        )

        def cell(spread: dict, width: int) -> str:
            low, high = min(spread["runs"]), max(spread["runs"])
            text = f"{spread['median']:.3g}" + (f" [{low:.3g}-{high:.3g}]" if low != high else "")
            return f"{text:>{width}}"

        for kind, row in k["kinds"].items():
            lines.append(
                f"  {kind:<20}{row['concurrency']:>9}{cell(row['follow_ups_per_second'], 20)}"
                f"{cell(row['bare_calls_per_second'], 20)}{cell(row['ratio'], 20)}"
                f"{cell(row['worker_cpu_ms_per_follow_up'], 16)}"
                f"{cell(row['follow_ups_per_worker_vcpu_second'], 12)}"
            )
    if "email_load" in results:
        e = results["email_load"]
        lines.append(
            f"Commit -> email accepted under load: {e['n']} orders at {e['achieved_rate_per_second']}"
            f"/s, 70 % of the emails' capacity ({e['email_capacity_per_second']}/s; SMTP answers in "
            f"{e['smtp_latency_ms']} ms), {e['workers']}: p50 {e['p50_ms']} ms, p95 {e['p95_ms']} "
            f"ms, p99 {e['p99_ms']} ms"
        )
    if "email_load" in results and "by_design" in results["email_load"]:
        for design, row in results["email_load"]["by_design"].items():
            lines.append(
                f"  {design:<28}{row['n']:>6} orders: p50 {row['p50_ms']} ms, p95 {row['p95_ms']}"
                f" ms, p99 {row['p99_ms']} ms"
            )
    if "publish" in results:
        from bench.publish import table as publish_table

        lines.append(
            f"Publishing an order's three follow-ups, by design ({results['publish']['orders_per_run']}"
            " orders per run; medians, [min-max] of the runs):"
        )
        lines.extend(publish_table(results["publish"]["designs"]))
        whole = results["publish"].get("checkout_in_process")
        if whole:
            lines.append(
                f"  a whole checkout in-process ({whole['orders_per_run']} orders per run), publish"
                f" after commit against none: adds {whole['publish_adds_wall_ms']['median']} ms wall,"
                f" {whole['publish_adds_cpu_ms']['median']} ms CPU"
                f" (runs: {whole['publish_adds_cpu_ms']['runs']})"
            )
    if "catch_up" in results:
        c = results["catch_up"]
        lines.append(
            f"Relay catch-up after an outage: {c['follow_ups']} owed follow-ups published in "
            f"{c['seconds']} s once it held its lease: {c['per_second']}/s"
        )
    lines.append("")
    lines.append(f"  {'measure':<42}{'value':>10}  {'target':<10}")
    for row in results["verdicts"]:
        spread = f"  runs {min(row['runs'])}-{max(row['runs'])}" if "runs" in row else ""
        lines.append(
            f"  {row['measure']:<42}{row['value']:>10}  {row['target']:<10}"
            f"{VERDICT_WORDS[row['met']]}{spread}"
            + (f"  90 % interval {row['interval_90']}" if "interval_90" in row else "")
        )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(4, 2, figsize=(12, 16))
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
    per_kind = results.get("per_kind")
    if per_kind:
        ratios = axes[2][0]
        for x, (kind, row) in enumerate(per_kind["kinds"].items()):
            ratios.bar(x, row["ratio"]["median"], 0.6, color="#9ecae1")
            ratios.plot([x] * len(row["ratio"]["runs"]), row["ratio"]["runs"], "ko")  # every run
            ratios.annotate(kind, (x, 0.02), ha="center", fontsize=8)
        ratios.axhline(0.8, color="r", linestyle="--", label="target 0.8")
        ratios.set_xticks([])
        ratios.set_ylim(0, 1.2)
        ratios.set_title("Follow-ups/s / bare provider calls/s: median (bar), each run (dots)")
        ratios.legend()
    catch_up, load = results.get("catch_up"), results.get("email_load")
    if load:
        by_design = load.get("by_design") or {"publish_after_commit": load}
        width = 0.8 / len(by_design)
        for offset, (design, row) in enumerate(by_design.items()):
            axes[2][1].bar(
                [i + offset * width for i in range(3)],
                [row["p50_ms"], row["p95_ms"], row["p99_ms"]],
                width,
                label=design.replace("_", " "),
            )
        axes[2][1].set_xticks([i + 0.4 - width / 2 for i in range(3)], ["p50", "p95", "p99"])
        axes[2][1].axhline(1000, color="r", linestyle="--", label="target p99 1 s")
        axes[2][1].set_ylabel("ms")
        axes[2][1].set_title(
            f"Commit -> email at {load['achieved_rate_per_second']}/s (70 % of capacity)"
            + (f"; relay catch-up {catch_up['per_second']}/s" if catch_up else "")
        )
        axes[2][1].legend()
    if results.get("open_loop") or results.get("open_loop_pinned"):
        axis = axes[3][0]
        x = 0
        colors = {"a": "#bdbdbd", "b": "#fdae6b", "relay": "#9e9ac8", "one_confirm_wait": "#74c476"}
        for key in ("open_loop", "open_loop_pinned"):
            for load, block in results.get(key, {}).get("loads", {}).items():
                turns = block.get("shared_stream", {})
                for name, row in turns.items():
                    if not isinstance(row, dict):
                        continue
                    label = GAP_LABELS.get(name, "a")
                    axis.bar(x, row["p99_ms"], 0.6, color=colors[label])
                    rounds = [r[name] for r in turns.get("rounds_p99_ms", []) if name in r]
                    axis.plot([x] * len(rounds), rounds, "ko")  # every round
                    axis.annotate(
                        f"{load}{' pin' if 'pinned' in key else ''}\n{label}",
                        (x, 0),
                        ha="center",
                        va="bottom",
                        fontsize=6,
                    )
                    x += 1
                x += 0.5
        axis.set_xticks([])
        axis.set_ylabel("ms")
        axis.set_title(
            "Open loop, variants sharing one stream: p99 of the pooled rounds (bar), each round (dots)",
            fontsize=8,
        )
    publish = results.get("publish")
    if publish:
        axis = axes[3][1]
        for x, figures in enumerate(publish["designs"].values()):
            for offset, (figure_name, color) in enumerate(
                (("wall_ms_median", "#9ecae1"), ("cpu_ms_median", "#3182bd"))
            ):
                spread = figures[figure_name]
                axis.bar(x + offset * 0.4, spread["median"], 0.4, color=color)
                axis.plot([x + offset * 0.4] * len(spread["runs"]), spread["runs"], "ko")
        axis.set_xticks(
            [x + 0.2 for x in range(len(publish["designs"]))],
            [d.replace("_", " ") for d in publish["designs"]],
            fontsize=7,
        )
        axis.set_ylabel("ms per order")
        axis.set_title("Publishing an order: wall (light), web CPU (dark), each run (dots)")
    for axis in axes.flat:  # a partial run (--only) leaves some panels without data
        if not axis.has_data():
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


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
