"""`make run`: the Procfile under honcho, with Flower's credentials and the addresses to open.

    python -m devtools.run                  # every line of the Procfile
    python -m devtools.run web worker-critical

Flower always asks for a password: ``CELERY_FLOWER_PASSWORD`` if set, else the one kept in
``var/flower-password`` (made on the first run). The addresses are printed now and again by the
Procfile's ``ready`` line once everything answers (``devtools.run_ready``), below the start-up logs.

Ctrl-C is a warm shutdown: each line's supervisor (``devtools.restart_on_exit``) passes one SIGTERM
to its command, and the workers finish the tasks they run. honcho alone sends SIGKILL 5 s after the
first process stopped; here it waits up to ``STOP_GRACE_SECONDS``, and a second Ctrl-C stops
everything at once.
"""

import os
import signal
import sys
import time
from pathlib import Path

from honcho.environ import expand_processes, parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer

REPO = Path(__file__).resolve().parent.parent
# The follow-ups' hard time limit (CELERY_TASK_TIME_LIMIT, 90 s) and a margin, as compose's
# stop_grace_period: a follow-up running when Ctrl-C comes ends within it. A longer scheduled job
# still running then is killed, and runs again at the next start (acks_late).
STOP_GRACE_SECONDS = 100.0
# After a second Ctrl-C (or the grace), each supervisor kills its command's processes; whatever is
# left this much later is killed by honcho.
STOP_NOW_SECONDS = 5.0


class GracefulManager(Manager):
    """honcho's manager, with a stop that waits for the workers instead of killing them at 5 s."""

    def __init__(self, printer: Printer, *, grace_seconds: float):
        super().__init__(printer)
        self.grace_seconds = grace_seconds
        self.stop_asked_at: float | None = None
        self.stop_now_at: float | None = None

    def _start(self):
        super()._start()
        # honcho's loop() set its own handlers before starting: a second signal must stop now.
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self.stop_asked_at is None:
            self._system_print(
                f"{signal.Signals(signum).name} received: the workers finish what they run "
                f"(at most {self.grace_seconds:.0f} s); Ctrl-C again to stop now\n"
            )
            self.returncode = 128 + signum
            self.terminate()
        else:
            self._stop_now()

    def terminate(self):
        if self.stop_asked_at is None:
            self.stop_asked_at = time.monotonic()
        super().terminate()

    def _stop_now(self) -> None:
        if self.stop_now_at is None:
            self.stop_now_at = time.monotonic()
            # A second SIGTERM tells each supervisor to kill its command's processes.
            self._system_print("stopping now\n")
            self._killall()

    def kill(self):
        # honcho's loop calls this every tick from 5 s after the first process stopped.
        if self.stop_asked_at is None or time.monotonic() - self.stop_asked_at < self.grace_seconds:
            return
        self._stop_now()
        if time.monotonic() - self.stop_now_at >= STOP_NOW_SECONDS:
            super().kill()


def flower_credentials(environ: dict[str, str], *, var_dir: Path) -> tuple[str, str]:
    from devtools.flower_password import flower_password_get

    user = environ.get("CELERY_FLOWER_USER") or "admin"
    password = environ.get("CELERY_FLOWER_PASSWORD") or flower_password_get(
        path=var_dir / "flower-password"
    )
    return user, password


def addresses(environ: dict[str, str]) -> dict[str, str]:
    """Where the Procfile's servers listen (the same variables the Procfile reads)."""
    web = environ.get("WEB_ADDRESS") or "127.0.0.1:8000"
    flower_host = environ.get("FLOWER_ADDRESS") or "127.0.0.1"
    if flower_host in ("0.0.0.0", "::"):  # noqa: S104 - bound to all: open it on this machine
        flower_host = "127.0.0.1"
    return {
        "web": f"http://{web}",
        "flower": f"http://{flower_host}:{environ.get('FLOWER_PORT') or '5555'}",
    }


def urls_block(environ: dict[str, str], *, heading: str) -> str:
    urls = addresses(environ)
    user = environ.get("CELERY_FLOWER_USER", "admin")
    password = environ.get("CELERY_FLOWER_PASSWORD", "(not set)")
    return "\n".join(
        [
            "",
            f"  {heading}",
            f"  Storefront  {urls['web']}/",
            f"  Admin       {urls['web']}/admin/  (create a login: "
            ".venv/bin/python manage.py createsuperuser)",
            f"  Ops         {urls['web']}/ops/",
            f"  Dev outbox  {urls['web']}/dev/outbox/",
            f"  Flower      {urls['flower']}/  user {user}, password {password}",
            "",
        ]
    )


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings  # the one place that knows where var/ is

    user, password = flower_credentials(os.environ, var_dir=Path(settings.VAR_DIR))
    os.environ["CELERY_FLOWER_USER"], os.environ["CELERY_FLOWER_PASSWORD"] = user, password
    print(urls_block(os.environ, heading="Starting the shop:"), flush=True)
    bin_dir = Path(sys.executable).parent  # the Procfile's `python` and `celery` are this venv's
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    os.chdir(REPO)
    sys.exit(honcho_start(Path("Procfile"), names=argv[1:], grace_seconds=STOP_GRACE_SECONDS))


def honcho_start(procfile: Path, *, names: list[str], grace_seconds: float) -> int:
    """What ``honcho start --procfile PROCFILE [NAME ...]`` does, with the graceful manager."""
    processes = parse_procfile(procfile.read_text()).processes
    unknown = [name for name in names if name not in processes]
    if unknown:
        sys.exit(f"No such line in {procfile}: {', '.join(unknown)}")
    chosen = {name: processes[name] for name in names} if names else processes
    manager = GracefulManager(Printer(sys.stdout), grace_seconds=grace_seconds)
    for process in expand_processes(chosen, port=5000):
        manager.add_process(process.name, process.cmd, env={**os.environ, **process.env})
    manager.loop()
    return manager.returncode


if __name__ == "__main__":
    main(sys.argv)
