"""`python -m bench.broker_poll [--rounds N] [--save FILE]`: what one poll of the embedded broker costs
while other queues hold 10 or 100,000 messages.

An idle consumer polls each of its queues every 0.1 s (``polling_interval``). Before, every queue's
messages lay in one folder and each poll listed and sorted all of it; now each queue has its own
folder. Both ways are timed in the same run, interleaved (bench/micro.py's ``medians``), on a fresh
folder per layout, for a poll of an empty queue (what an idle worker does all day) and a poll that
takes one message. The other queue is a dead consumer's (``celeryev.<uuid>``): a Flower or other
event consumer killed while its queue stays bound, the way the folder used to grow.
With ``--worker-cpu FORMER_CHECKOUT`` (a copy of the tree before, e.g. ``git archive c2a8906``)
it also runs an idle worker as the Procfile's ``worker-default`` on each layout with the other
queue's messages in place, and reports the CPU it used over ``--cpu-seconds``. Writes
``bench/results/<FILE>`` with ``--save``.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic

from kombu import Connection, Producer, Queue
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

from bench.report import machine
from config import broker

REPO = Path(__file__).resolve().parent.parent
DEAD_QUEUE = f"celeryev.{uuid.uuid4()}"


class FormerChannel(filesystem.Channel):
    """config/broker.py's channel before one folder per queue (commit c2a8906), verbatim."""

    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final_path = os.path.join(self.data_folder_out, name)
        temporary_path = f"{final_path}.writing"
        try:
            with open(temporary_path, "wb") as message_file:
                message_file.write(str_to_bytes(dumps(payload)))
            os.rename(temporary_path, final_path)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final_path!r} to directory") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            claimed_path = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed_path)
            except OSError:
                continue
            try:
                with open(claimed_path, "rb") as message_file:
                    payload = message_file.read()
            finally:
                os.remove(claimed_path)
            return loads(bytes_to_str(payload))
        raise Empty()


class FormerTransport(filesystem.Transport):
    Channel = FormerChannel
    global_state = filesystem.Transport.global_state


LAYOUTS = {
    "former": "bench.broker_poll:FormerTransport",
    "now": broker.__name__ + ":AtomicFilesystemTransport",
}


def folder_with(layout: str, others: int) -> tuple[Path, Connection]:
    """A broker folder whose dead queue holds ``others`` messages, and a connection to it."""
    folder = Path(tempfile.mkdtemp(prefix=f"broker-poll-{layout}-"))
    options = broker.transport_options(str(folder), legacy_queue_expires={})
    connection = Connection(transport=LAYOUTS[layout], transport_options=options)
    channel = connection.channel()
    Queue("default", routing_key="default")(channel).declare()
    # The dead queue's messages: empty files, named as each layout names them (listing cost only).
    queue_folder = Path(options["data_folder_in"])
    if layout == "now":
        target = queue_folder / broker.queue_folder_name(DEAD_QUEUE)
        target.mkdir()
        names = (f"{broker.publish_stamp():020d}_{uuid.uuid4().hex}.msg" for _ in range(others))
    else:
        target = queue_folder
        names = (
            f"{int(monotonic() * 1000)}_{uuid.uuid4()}.{DEAD_QUEUE}.msg" for _ in range(others)
        )
    for name in names:
        (target / name).touch()
    return folder, connection


def measure(others: int, rounds: int, layouts: tuple[str, ...]) -> dict:
    folders = {}
    connections = {}
    for layout in layouts:
        folders[layout], connections[layout] = folder_with(layout, others)
    channels = {layout: connection.channel() for layout, connection in connections.items()}
    timings: dict[str, list[float]] = {}
    try:
        for _ in range(rounds):
            for layout, channel in channels.items():
                started = time.perf_counter()
                assert channel.basic_get("default", no_ack=True) is None
                timings.setdefault(f"{layout}: poll an empty queue", []).append(
                    (time.perf_counter() - started) * 1000
                )
                Producer(channel).publish({"n": 1}, routing_key="default")
                started = time.perf_counter()
                assert channel.basic_get("default", no_ack=True) is not None
                timings.setdefault(f"{layout}: take one message", []).append(
                    (time.perf_counter() - started) * 1000
                )
    finally:
        for layout in layouts:
            connections[layout].release()
            shutil.rmtree(folders[layout], ignore_errors=True)
    return {name: statistics.median(values) for name, values in timings.items()}


def group_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by every live process of a process group."""
    pids = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout
    total = 0
    for member in pids.split():
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def worker_cpu(checkout: Path, layout: str, others: int, seconds: float) -> float:
    """The share of one CPU an idle worker uses with ``others`` messages in a dead queue."""
    var_dir = Path(tempfile.mkdtemp(prefix=f"broker-cpu-{layout}-"))
    queue_folder = var_dir / "broker" / "queue"
    if layout == "now":
        target = queue_folder / broker.queue_folder_name(DEAD_QUEUE)
        names = (f"{broker.publish_stamp():020d}_{uuid.uuid4().hex}.msg" for _ in range(others))
    else:
        target = queue_folder
        names = (
            f"{int(monotonic() * 1000)}_{uuid.uuid4()}.{DEAD_QUEUE}.msg" for _ in range(others)
        )
    target.mkdir(parents=True)
    for name in names:
        (target / name).touch()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env |= {"VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "config.settings"}
    log_path = var_dir / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "celery"), "-A", "config", "worker",
                "--queues", "default,bulk", "--concurrency", "2", "--hostname", f"cpu-{layout}@%h",
                "--without-gossip", "--without-mingle", "--task-events", "--loglevel", "INFO",
            ],
            cwd=checkout,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while b"ready." not in log_path.read_bytes():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        time.sleep(5)  # past start-up
        used = group_cpu_seconds(worker.pid)
        time.sleep(seconds)
        return (group_cpu_seconds(worker.pid) - used) / seconds
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        shutil.rmtree(var_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--save", help="file name under bench/results/")
    parser.add_argument("--worker-cpu", type=Path, metavar="FORMER_CHECKOUT")
    parser.add_argument("--cpu-seconds", type=float, default=30)
    args = parser.parse_args()
    about = machine()
    print(f"machine: {about['cpu']}, {about['cpus']} CPUs (shared), Python {about['python']}")
    # Interleaved, both layouts feel the same drift; alone, the new layout's poll is not slowed by
    # the former's sort of 100,000 names just before it (caches).
    results: dict[str, dict] = {"interleaved": {}, "now alone": {}}
    for run, layouts in (("interleaved", tuple(LAYOUTS)), ("now alone", ("now",))):
        for others in (10, 100_000):
            results[run][str(others)] = measure(others, args.rounds, layouts)
            print(f"{run}, other queue holding {others} messages (median of {args.rounds}):")
            for name, value in results[run][str(others)].items():
                print(f"  {name:<32} {value:10.3f} ms")
    cpu: dict[str, dict] = {}
    if args.worker_cpu:
        for others in (10, 100_000):
            for layout, checkout in (("former", args.worker_cpu), ("now", REPO)):
                share = worker_cpu(checkout, layout, others, args.cpu_seconds)
                cpu.setdefault(str(others), {})[layout] = round(share, 3)
                print(
                    f"idle worker, {layout} layout, {others} other messages: {share:.1%} of a CPU"
                )
    if args.save:
        saved = {"machine": about, "rounds": args.rounds, "median_ms_by_other_messages": results}
        if cpu:
            saved["idle_worker_cpu_share_by_other_messages"] = cpu
        (REPO / "bench" / "results" / args.save).write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
