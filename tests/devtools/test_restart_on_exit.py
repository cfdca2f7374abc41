"""make run's supervisor: a process that exits is started again, with a log line; one told to stop
is not; with --reload, a worker whose code changed is started again. Each test runs the real wrapper
around a real child process."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.processes import BIN, REPO, Process, wait_until


def supervise(*command: str, log_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.restart_on_exit", *command],
        cwd=REPO,
        stdout=open(log_path, "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def started_pids(log_path) -> list[int]:
    return [int(pid) for pid in re.findall(r"\(pid (\d+)\)", log_path.read_text())]


def test_a_command_that_exits_is_started_again_and_the_log_says_so(tmp_path):
    log = tmp_path / "log"
    wrapper = supervise(sys.executable, "-c", "import sys; sys.exit(3)", log_path=log)
    try:
        wait_until(lambda: len(started_pids(log)) >= 3, timeout=15, message="two restarts")
    finally:
        wrapper.send_signal(signal.SIGTERM)
        assert wrapper.wait(10) == 0
    text = log.read_text()
    assert "exited with code 3 after 0 s; starting it again in 1 s (restart 1)" in text
    assert "starting it again in 2 s (restart 2)" in text  # one that keeps exiting backs off
    assert len(set(started_pids(log))) == len(started_pids(log))


def test_a_command_killed_by_a_signal_is_started_again(tmp_path):
    log = tmp_path / "log"
    wrapper = supervise(sys.executable, "-c", "import time; time.sleep(60)", log_path=log)
    try:
        wait_until(lambda: started_pids(log), timeout=10, message="the child to start")
        first = started_pids(log)[0]
        subprocess.run(["kill", "-KILL", str(first)], check=True)
        wait_until(lambda: len(started_pids(log)) == 2, timeout=10, message="a restart")
        assert "exited with signal SIGKILL" in log.read_text()
    finally:
        wrapper.send_signal(signal.SIGTERM)
        wrapper.wait(10)


def test_a_stop_signal_stops_the_command_and_starts_nothing_again(tmp_path):
    log = tmp_path / "log"
    wrapper = supervise(sys.executable, "-c", "import time; time.sleep(60)", log_path=log)
    wait_until(lambda: started_pids(log), timeout=10, message="the child to start")
    (child,) = started_pids(log)

    stopped_at = time.monotonic()
    wrapper.send_signal(signal.SIGTERM)  # to the wrapper alone: it passes it on

    assert wrapper.wait(10) == 0
    assert time.monotonic() - stopped_at < 5
    assert subprocess.run(["kill", "-0", str(child)], capture_output=True).returncode != 0
    time.sleep(1.5)
    assert started_pids(log) == [child]
    assert "starting it again" not in log.read_text()


def test_watching_a_missing_folder_is_refused_with_a_sentence(tmp_path):
    missing = tmp_path / "no-such-folder"
    result = subprocess.run(
        [sys.executable, "-m", "devtools.restart_on_exit", "--watch", str(missing), "true"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert f"--watch {missing}: no such file or folder" in result.stderr


@pytest.mark.integration
def test_a_changed_python_file_restarts_the_worker_after_a_warm_shutdown(
    worker_env, process_log_dir, tmp_path
):
    watched = tmp_path / "shop_code"
    watched.mkdir()
    (watched / "notes.txt").write_text("not code")
    queue = f"reload-{time.time_ns()}"  # a queue of its own: it takes no other test's messages
    supervisor = Process(
        "reload",
        [sys.executable, "-m", "devtools.restart_on_exit", "--watch", str(watched),
         str(BIN / "celery"), "-A", "config", "worker", "--queues", queue, "--concurrency", "1",
         "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        worker_env,
        process_log_dir,
    )  # fmt: skip
    try:
        supervisor.wait_for_log(" ready.", timeout=60)
        (watched / "notes.txt").write_text("still not code")  # only .py files count
        (watched / "pricing.py").write_text("DISCOUNT = 10\n")
        wait_until(
            lambda: supervisor.log().count(" ready.") == 2, timeout=60, message="a second start"
        )
        log = supervisor.log()
    finally:
        supervisor.stop()

    first, second = [int(pid) for pid in re.findall(r"started `[^`]+` \(pid (\d+)\)", log)]
    assert first != second
    assert re.search(
        r"restart_on_exit: \S*/shop_code/pricing\.py changed; "
        r"starting `\S*celery -A config worker --queues` again",
        log,
    )
    assert "Warm shutdown" in log[: log.index("changed; starting")]  # SIGTERM: tasks may finish
    assert "exited with" not in log and "notes.txt" not in log


# A pool child: notes any SIGTERM it gets.
POOL_CHILD = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: open(sys.argv[1] + "/child-got-sigterm", "a").write("x"))
time.sleep(60)
"""
# A worker: counts each SIGTERM and, on the first, exits 1 s later (a warm shutdown); with
# "stuck" it carries on, as a worker busy with a long task.
WORKER = """
import signal, subprocess, sys, time
folder, stuck = sys.argv[1], len(sys.argv) > 2
child = subprocess.Popen([sys.executable, "-c", POOL_CHILD, folder])
open(folder + "/child-pid", "w").write(str(child.pid))
def stop(*_):
    open(folder + "/sigterms", "a").write("x")
    if not stuck:
        time.sleep(1)
        child.kill()
        sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(folder + "/ready", "w").write("")
time.sleep(60)
""".replace("POOL_CHILD", repr(POOL_CHILD), 1)


def test_a_stop_to_the_whole_group_reaches_the_command_once_and_never_its_children(tmp_path):
    log = tmp_path / "log"
    wrapper = supervise(sys.executable, "-c", WORKER, str(tmp_path), log_path=log)
    wait_until(lambda: (tmp_path / "ready").exists(), timeout=10, message="the command to start")

    os.killpg(wrapper.pid, signal.SIGTERM)  # what honcho does on Ctrl-C

    assert wrapper.wait(10) == 0
    assert (tmp_path / "sigterms").read_text() == "x"  # one warm shutdown, not two
    assert not (tmp_path / "child-got-sigterm").exists()


def test_a_second_stop_signal_kills_the_command_and_its_processes(tmp_path):
    log = tmp_path / "log"
    wrapper = supervise(sys.executable, "-c", WORKER, str(tmp_path), "stuck", log_path=log)
    wait_until(lambda: (tmp_path / "ready").exists(), timeout=10, message="the command to start")
    child = int((tmp_path / "child-pid").read_text())

    wrapper.send_signal(signal.SIGTERM)
    wait_until(lambda: (tmp_path / "sigterms").exists(), timeout=5, message="the first stop")
    time.sleep(0.5)
    assert wrapper.poll() is None  # the command is still finishing
    wrapper.send_signal(signal.SIGTERM)

    assert wrapper.wait(10) == 0
    wait_until(lambda: not _alive(child), timeout=5, message="the command's child to be killed")
    assert "killing `" in log.read_text()


def test_a_command_dies_with_its_supervisor(tmp_path):
    log = tmp_path / "log"
    wrapper = supervise(sys.executable, "-c", "import time; time.sleep(60)", log_path=log)
    wait_until(lambda: started_pids(log), timeout=10, message="the child to start")
    (child,) = started_pids(log)

    wrapper.kill()  # SIGKILL cannot be passed on: the command must not outlive it
    wrapper.wait(10)

    wait_until(lambda: not _alive(child), timeout=5, message="the command to end with it")


def _alive(pid: int) -> bool:
    """Running, not exited (an exited child waits as a zombie until it is reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
