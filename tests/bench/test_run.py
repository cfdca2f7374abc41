"""The benchmark's repeated runs: every figure the median of the runs, each run kept."""

from bench.report import verdicts
from bench.run import median_tree


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
