"""`python -m bench.broker_idle [--minutes N] [--kills K]`: does the embedded broker grow while idle?

Starts `make run`'s background lines the way it starts them (``python -m devtools.run``: the
Procfile under honcho, each line under ``devtools.restart_on_exit``) on a fresh SQLite database and
broker folder, waits until Flower sees both workers, then kills Flower with SIGKILL ``--kills``
times (its supervisor starts it again, with a new event queue each time), and counts the files
under the broker folder every ``--interval`` seconds for ``--minutes``. Nothing is ordered: what
grows is what idle processes leave behind. Prints the samples and, with ``--save``, writes them
to ``bench/results/``.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.report import machine
from tests.processes import BIN, REPO, Process, free_port, wait_until

LINES = ["worker-critical", "worker-default", "beat", "relay", "flower"]


def broker_files(folder: Path) -> dict[str, int]:
    """Files under the broker folder: all of them, message files, and exchange-table rows."""
    files = [Path(root) / name for root, _, names in os.walk(folder) for name in names]
    messages = [path for path in files if path.name.endswith(".msg")]
    bindings = 0
    for path in (folder / "control").glob("*.exchange"):
        with contextlib.suppress(ValueError):
            bindings += len(json.loads(path.read_text() or "[]"))
    return {"files": len(files), "messages": len(messages), "bindings": bindings}


def started_pids(log: str, line: str) -> list[int]:
    pattern = rf"^\S+ {re.escape(line)}\.1\s+\| restart_on_exit: started `[^`]+` \(pid (\d+)\)"
    return [int(pid) for pid in re.findall(pattern, log, re.MULTILINE)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--interval", type=float, default=15)
    parser.add_argument("--kills", type=int, default=1)
    parser.add_argument("--save", help="file name under bench/results/")
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="broker-idle-"))
    var_dir = work / "var"
    flower_port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "VAR_DIR": str(var_dir),
        "FLOWER_PORT": str(flower_port),
        "CELERY_FLOWER_USER": "admin",
        "CELERY_FLOWER_PASSWORD": "broker-idle-password",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for command in (["migrate", "--no-input"], ["sync_schedules"]):
        subprocess.run(
            [str(BIN / "python"), "manage.py", *command],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
    broker = var_dir / "broker"
    shop = Process("broker-idle", [str(BIN / "python"), "-m", "devtools.run", *LINES], env, work)
    samples: list[dict] = []
    try:

        def both_workers_seen():
            try:
                workers = httpx.get(
                    f"http://127.0.0.1:{flower_port}/api/workers",
                    params={"refresh": 1},
                    auth=("admin", "broker-idle-password"),
                    timeout=5,
                ).json()
            except (httpx.HTTPError, ValueError):
                return False
            return sum(name.startswith(("critical@", "default@")) for name in workers) == 2

        wait_until(both_workers_seen, timeout=120, interval=1, message="Flower to see both workers")
        for _ in range(args.kills):
            flower = started_pids(shop.log(), "flower")
            os.kill(flower[-1], signal.SIGKILL)
            wait_until(
                lambda starts=len(flower): len(started_pids(shop.log(), "flower")) > starts,  # noqa: B008
                timeout=60,
                message="Flower to be started again",
            )
            wait_until(both_workers_seen, timeout=60, interval=1, message="Flower back")
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            sample = {"seconds": round(elapsed), **broker_files(broker)}
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            if elapsed >= args.minutes * 60:
                break
            time.sleep(args.interval)
    finally:
        shop.stop(timeout=30)
        for line in LINES:
            for pid in started_pids(shop.log(), line):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    growth = samples[-1]["files"] - samples[0]["files"]
    minutes = samples[-1]["seconds"] / 60
    print(
        f"{args.label}: {samples[0]['files']} → {samples[-1]['files']} files in {minutes:.1f} min"
    )
    if args.save:
        result = {
            "label": args.label,
            "machine": machine(),
            "lines": LINES,
            "flower_kills": args.kills,
            "files_per_minute": round(growth / minutes, 1) if minutes else None,
            "samples": samples,
        }
        (REPO / "bench" / "results" / args.save).write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
