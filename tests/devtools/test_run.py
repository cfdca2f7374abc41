"""make run's launcher: Flower's password is made once and kept, the environment's wins; Ctrl-C
waits for busy workers, a second one stops at once."""

import os
import signal
import stat
import subprocess
import sys
import time

from devtools.run import flower_credentials, urls_block
from tests.processes import BIN, REPO, wait_until


def test_the_first_run_makes_a_password_and_keeps_it_readable_by_its_owner_only(tmp_path):
    user, password = flower_credentials({}, var_dir=tmp_path)

    kept = tmp_path / "flower-password"
    assert user == "admin" and len(password) >= 16
    assert kept.read_text().strip() == password
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_the_next_run_uses_the_kept_password(tmp_path):
    _, first = flower_credentials({}, var_dir=tmp_path)
    _, second = flower_credentials({}, var_dir=tmp_path)

    assert second == first


def test_the_environments_password_wins_and_nothing_is_written(tmp_path):
    environ = {"CELERY_FLOWER_USER": "ops", "CELERY_FLOWER_PASSWORD": "from-the-env"}

    assert flower_credentials(environ, var_dir=tmp_path) == ("ops", "from-the-env")
    assert not (tmp_path / "flower-password").exists()


def test_an_empty_password_file_gets_a_password(tmp_path):
    (tmp_path / "flower-password").write_text("")
    _, password = flower_credentials({}, var_dir=tmp_path)
    assert password and (tmp_path / "flower-password").read_text().strip() == password


def test_the_addresses_follow_the_procfiles_variables():
    block = urls_block(
        {
            "WEB_ADDRESS": "127.0.0.1:8100",
            "FLOWER_PORT": "5600",
            "CELERY_FLOWER_USER": "admin",
            "CELERY_FLOWER_PASSWORD": "pw",
        },
        heading="Everything is up:",
    )
    assert "Storefront  http://127.0.0.1:8100/" in block
    assert "Ops         http://127.0.0.1:8100/ops/" in block
    assert "Flower      http://127.0.0.1:5600/  user admin, password pw" in block


# A worker busy with a long task: it notes SIGTERM and carries on.
BUSY = """
import pathlib, signal, sys, time
note = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: note.write_text("asked to stop"))
note.with_suffix(".ready").write_text("")
time.sleep(120)
"""


def start_honcho(tmp_path, *, grace_seconds: float) -> subprocess.Popen:
    (tmp_path / "busy.py").write_text(BUSY)
    (tmp_path / "Procfile").write_text(
        f"busy: python -m devtools.restart_on_exit python {tmp_path / 'busy.py'} "
        f"{tmp_path / 'busy.note'}\n"
        "idle: python -m devtools.restart_on_exit python -c 'import time; time.sleep(120)'\n"
    )
    launcher = (
        "import sys; from pathlib import Path; from devtools.run import honcho_start; "
        f"sys.exit(honcho_start(Path({str(tmp_path / 'Procfile')!r}), names=[], "
        f"grace_seconds={grace_seconds}))"
    )
    honcho = subprocess.Popen(
        [sys.executable, "-c", launcher],
        cwd=REPO,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
        stdout=open(tmp_path / "log", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_until(
        lambda: (tmp_path / "busy.ready").exists(), timeout=20, message="the busy line to start"
    )
    return honcho


def test_ctrl_c_waits_for_a_busy_worker_past_honchos_5_s_and_a_second_ctrl_c_stops_now(tmp_path):
    honcho = start_honcho(tmp_path, grace_seconds=60)
    try:
        honcho.send_signal(signal.SIGINT)
        wait_until(lambda: (tmp_path / "busy.note").exists(), timeout=5, message="the stop")
        time.sleep(7)  # honcho alone sends SIGKILL 5 s after the idle line stopped

        assert honcho.poll() is None
        log = (tmp_path / "log").read_text()
        assert "idle.1 stopped" in log and "SIGKILL" not in log
        assert "Ctrl-C again to stop now" in log

        honcho.send_signal(signal.SIGINT)
        assert honcho.wait(10) is not None
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGKILL)
    log = (tmp_path / "log").read_text()
    assert "stopping now" in log and "restart_on_exit: killing `python" in log


def test_a_worker_still_busy_after_the_grace_is_stopped(tmp_path):
    honcho = start_honcho(tmp_path, grace_seconds=2)
    try:
        stopped_at = time.monotonic()
        honcho.send_signal(signal.SIGINT)

        # Not the 100 s grace of make run: stopped a few seconds after this one (2 s), plus honcho's
        # 5 s tick, with room for a loaded CI machine.
        assert honcho.wait(30) is not None
        assert time.monotonic() - stopped_at < 25
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGKILL)
    assert "restart_on_exit: killing `python" in (tmp_path / "log").read_text()
