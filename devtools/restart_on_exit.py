"""Run a command, and start it again whenever it exits, until told to stop: for `make run`.

honcho stops every process as soon as one exits. A Celery worker can exit for good on its own (a
pool child killed while the worker starts ends it; kombu's Redis transport ends it with
"Unrecoverable error" when the broker vanishes), and with honcho alone that takes the storefront
and everything else down with it. Production's supervisor (compose's ``restart: unless-stopped``)
starts such a process again; this does the same for each line of the ``Procfile``, and says so:

    worker-critical.1 | restart_on_exit: `celery -A config -q worker` exited with signal SIGKILL
    after 42 s; starting it again in 1 s (restart 1)

A process that keeps exiting is started again after 1 s, 2 s, 4 s … at most 30 s; one that ran for
a minute starts the count afresh. SIGTERM, SIGINT or SIGHUP stop it: the command gets one SIGTERM
(a Celery worker's warm shutdown: it finishes the tasks it runs) and is not started again; a second
signal kills the command's processes at once. The command runs in a process group of its own, so
honcho's SIGTERM to this line's group reaches this supervisor only, never a worker's pool children
directly (they would die mid-task, "exited with signal 15").

    python -m devtools.restart_on_exit celery -A config worker --queues critical

With ``--reload`` it also starts the command again when a ``.py`` file of the shop's packages
changes (watched by watchfiles, which waits for a burst of saves to end): the command gets SIGTERM,
which lets a Celery worker finish what it runs, and starts again at once, with no back-off.
``--watch PATH`` (repeatable) watches PATH instead:

    worker-critical.1 | restart_on_exit: orders/services.py changed; starting
    `celery -A config --quiet worker` again

    python -m devtools.restart_on_exit --reload celery -A config worker --queues critical
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0  # a run at least this long resets the delay
REPO = Path(__file__).resolve().parent.parent


def shop_packages() -> list[Path]:
    """What --reload watches by default: the repository's packages, but its tests."""
    return sorted(
        path for path in REPO.iterdir() if (path / "__init__.py").exists() and path.name != "tests"
    )


def say(message: str) -> None:
    print(f"restart_on_exit: {message}", file=sys.stderr, flush=True)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"


def die_with_parent() -> None:
    """In the child, before exec: on Linux, be killed if this supervisor is (SIGKILL cannot be
    passed on, and the command's own process group no longer shares this supervisor's fate)."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)


class Supervisor:
    def __init__(self, command: list[str], *, watch: list[Path] | None = None):
        self.command = command
        self.name = " ".join(command[:5])  # enough to tell the lines of the Procfile apart
        self.child: subprocess.Popen | None = None
        self.stopping = False
        self.watch = watch or []
        self.changed: list[str] = []  # what a reload is for, until the command starts again
        self.asked_to_reload = False  # one SIGTERM per run: a second one is a cold stop to Celery
        self.lock = threading.Lock()  # a change seen while the command starts waits for it
        self.stop_watching = threading.Event()

    def stop(self, signum, frame) -> None:
        self.stop_watching.set()
        if self.child is None or self.child.poll() is not None:
            self.stopping = True
            return
        if not self.stopping:
            self.stopping = True
            self.child.send_signal(signal.SIGTERM)
        else:  # asked again: stop now
            say(f"killing `{self.name}` (pid {self.child.pid}) and its processes")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.child.pid, signal.SIGKILL)

    def start_watching(self) -> None:
        try:
            from watchfiles import PythonFilter, watch
        except ImportError:
            say("watchfiles is not installed (make .venv/.installed): no reload on changes")
            return

        def reload_on_changes() -> None:
            for changes in watch(
                *self.watch, watch_filter=PythonFilter(), stop_event=self.stop_watching
            ):
                with self.lock:
                    self.changed = sorted({*self.changed, *(relative(path) for _, path in changes)})
                    child = self.child
                    if child is not None and child.poll() is None and not self.asked_to_reload:
                        self.asked_to_reload = True
                        child.send_signal(signal.SIGTERM)

        threading.Thread(target=reload_on_changes, name="reload", daemon=True).start()

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.stop)
        if self.watch:
            self.start_watching()
        delay = FIRST_DELAY_SECONDS
        restarts = 0
        while True:
            started = time.monotonic()
            with self.lock:
                self.changed, self.asked_to_reload = [], False
                self.child = subprocess.Popen(
                    self.command, process_group=0, preexec_fn=die_with_parent
                )
            say(f"started `{self.name}` (pid {self.child.pid})")
            returncode = self.child.wait()
            if self.stopping:
                return max(returncode, 0)
            with self.lock:
                changed = self.changed
            if changed:
                more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
                say(f"{', '.join(changed[:3])}{more} changed; starting `{self.name}` again")
                continue
            ran = time.monotonic() - started
            if ran >= HEALTHY_AFTER_SECONDS:
                delay = FIRST_DELAY_SECONDS
            restarts += 1
            say(
                f"`{self.name}` exited with {describe_exit(returncode)} after {ran:.0f} s; "
                f"starting it again in {delay:.0f} s (restart {restarts})"
            )
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.1)
            if self.stopping:
                return 0
            delay = min(delay * 2, MAX_DELAY_SECONDS)


def relative(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def main(argv: list[str]) -> int:
    command, watch, reload = argv[1:], [], False
    while command[:1] in (["--reload"], ["--watch"]):
        if command[0] == "--watch" and len(command) > 1:
            watch.append(Path(command[1]))
            command = command[2:]
        else:
            reload, command = True, command[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command or command[0].startswith("--"):
        say("usage: python -m devtools.restart_on_exit [--reload] [--watch PATH] COMMAND [ARG ...]")
        return 2
    missing = [str(path) for path in watch if not path.exists()]
    if missing:
        say(f"--watch {', '.join(missing)}: no such file or folder")
        return 2
    if reload and not watch:
        watch = shop_packages()
    return Supervisor(command, watch=watch).run()


if __name__ == "__main__":
    # Python children then print line by line, so their lines reach honcho as they happen.
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv))
