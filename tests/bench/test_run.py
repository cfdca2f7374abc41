"""The benchmark's repeated runs: every figure the median of the runs, each run kept."""

import json
import os

import psycopg
import pytest

from bench.report import verdicts
from bench.run import median_tree
from tests.processes import wait_until


def test_every_number_is_the_median_of_the_runs_and_round_lists_keep_every_run():
    runs = [
        {"email": {"p99_ms": 140.0, "n": 100}, "kinds": {"ratio": {"median": 0.8, "runs": [0.79]}}},
        {"email": {"p99_ms": 120.0, "n": 100}, "kinds": {"ratio": {"median": 0.9, "runs": [0.91]}}},
        {"email": {"p99_ms": 900.0, "n": 100}, "kinds": {"ratio": {"median": 0.7, "runs": [0.69]}}},
    ]
    merged = median_tree(runs)
    assert merged["email"] == {"p99_ms": 140.0, "n": 100}
    assert merged["kinds"]["ratio"] == {"median": 0.8, "runs": [0.79, 0.91, 0.69]}


def test_a_list_of_samples_is_the_first_runs():
    samples = [[{"t": 0, "completed": 0}], [{"t": 0, "completed": 5}]]
    assert median_tree([{"samples": s} for s in samples]) == {"samples": samples[0]}


def test_a_verdict_is_taken_on_the_median_and_shows_every_run():
    runs = [{"email_load": {"p99_ms": value}} for value in (900.0, 1200.0, 1100.0)]
    (row,) = verdicts(median_tree(runs), runs)
    assert row["value"] == 1100.0
    assert row["met"] is False
    assert row["runs"] == [900.0, 1200.0, 1100.0]


def test_a_measure_that_repeats_itself_runs_once_and_the_others_three_times(monkeypatch, tmp_path):
    from bench import run

    calls = {"email_load": 0, "per_kind": 0}

    def email_load(stack):
        calls["email_load"] += 1
        return {"p99_ms": [900.0, 1200.0, 1100.0][calls["email_load"] - 1]}

    def per_kind(stack):
        calls["per_kind"] += 1
        return {"kinds": {"invoice": {"ratio": {"median": 0.2, "runs": [0.19, 0.2, 0.21]}}}}

    class NoStack:
        def __init__(self, sizes, log_dir):
            pass

        def close(self):
            pass

        def autovacuum_described(self):
            return "on (the server's own)"

    monkeypatch.setattr(run, "MEASURES", {"email_load": email_load, "per_kind": per_kind})
    monkeypatch.setattr(run, "SELF_REPEATING", {"per_kind"})
    monkeypatch.setattr(run, "Stack", NoStack)
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    monkeypatch.setattr(run, "plot", lambda results, path: None)
    monkeypatch.setattr(run, "table", lambda results: "")
    monkeypatch.setattr("sys.argv", ["bench.run", "--smoke", "--runs", "3"])

    assert run.main() == 0

    assert calls == {"email_load": 3, "per_kind": 1}
    saved = json.loads((tmp_path / "smoke.json").read_text())
    assert saved["email_load"]["p99_ms"] == 1100.0
    assert saved["per_kind"]["kinds"]["invoice"]["ratio"]["runs"] == [0.19, 0.2, 0.21]
    by_measure = {row["measure"]: row for row in saved["verdicts"]}
    assert by_measure["8 commit -> email p99 at 70% (ms)"]["runs"] == [900.0, 1200.0, 1100.0]
    assert by_measure["7 invoice: follow-ups/s / bare calls/s"]["value"] == 0.2


@pytest.mark.postgres
@pytest.mark.once
def test_the_autovacuum_stand_in_vacuums_a_table_past_the_servers_threshold_and_no_other():
    """The benchmark's stand-in for autovacuum (this machine's server runs without it) applies
    PostgreSQL's default rule: dead rows > 50 + 20 % of live rows."""
    from bench.stack import Autovacuum
    from tests.processes import postgres_database_drop, postgres_database_recreate

    url = postgres_database_recreate(os.environ["DATABASE_URL"], "bench_autovacuum_test")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("churned", "steady"):
                conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int)")
                conn.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, 1000) g")
            conn.execute("UPDATE churned SET n = n + 1")  # 1,000 dead rows: past 50 + 200
            conn.execute("UPDATE steady SET n = n + 1 WHERE id <= 100")  # 100: under it
            conn.execute("SELECT pg_stat_force_next_flush()")

            def dead(table: str) -> int:
                return conn.execute(
                    "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", [table]
                ).fetchone()[0]

            wait_until(lambda: dead("churned") >= 1000, timeout=10, message="the statistics")
            assert Autovacuum(url).vacuum_now() == 1
            conn.execute("SELECT pg_stat_clear_snapshot()")
            assert wait_until(lambda: dead("churned") == 0, timeout=10, message="the vacuum")
            assert dead("steady") == 100
    finally:
        postgres_database_drop(url)


def test_a_run_whose_figure_is_zero_keeps_its_place_in_the_verdict():
    runs = [{"email_load": {"p99_ms": value}} for value in (0.0, 1200.0, 1100.0)]
    (row,) = verdicts(median_tree(runs), runs)
    assert row["runs"] == [0.0, 1200.0, 1100.0]


def _open_loop_gap(value: float, interval: list[float]) -> dict:
    shared = {
        "b_p99_minus_a_prime_p99_ms": value,
        "b_p99_minus_a_prime_p99_ms_interval_90": interval,
    }
    return {"open_loop": {"loads": {"50%": {"shared_stream": shared}}}}


def test_a_p99_gap_is_judged_on_its_interval_not_its_point():
    """A gap the run cannot tell from noise is neither met nor missed."""
    straddles, above, below = (
        verdicts(_open_loop_gap(-6.9, [-248.5, 180.9])),
        verdicts(_open_loop_gap(51.8, [9.8, 110.8])),
        verdicts(_open_loop_gap(3.0, [-2.0, 8.0])),
    )
    assert [row["met"] for row in (*straddles, *above, *below)] == [None, None, True]
    assert verdicts(_open_loop_gap(85.1, [30.0, 96.3]))[0]["met"] is False
    assert straddles[0]["interval_90"] == [-248.5, 180.9]
