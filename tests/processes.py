"""Real processes for the tests and the benchmark (``bench/``), the one harness both use: a Celery
worker, the follow-up relay, beat, the warehouse simulator, a web server (runserver or gunicorn), an
SMTP server, private Redis and PostgreSQL servers a caller may stop and start without touching
anyone else, a private RabbitMQ vhost, and waiting for any of it.

Each runs from this checkout's virtualenv with the environment the caller gives it, logs to a file
(printed when one fails to start) and is stopped, hard if need be, with its whole process group.
Nothing here is a pytest fixture: ``tests/conftest.py`` wraps these in fixtures, ``bench/stack.py``
in the benchmark's stack.
"""

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import psycopg
from aiosmtpd.controller import Controller

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], object], *, timeout: float, interval: float = 0.1, message: str = ""
):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


class Process:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}-{time.time_ns()}.log"
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        def ready():
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.popen.returncode}:\n{self.log()}"
                )
            return text in self.log()

        try:
            wait_until(ready, timeout=timeout, message=f"{self.name} to log {text!r}")
        except AssertionError:
            self.stop()
            raise AssertionError(f"{self.name} did not start:\n{self.log()[-4000:]}") from None

    def children(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.popen.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def group(self) -> list[int]:
        """Every process of its group: itself, its children and theirs."""
        out = subprocess.run(
            ["pgrep", "-g", str(self.popen.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def rss_kb(self) -> int:
        """Resident memory of the whole group, in kB."""
        total = 0
        for pid in self.group():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                pass
        return total

    def kill(self) -> None:
        """SIGKILL the whole group, as a crash or the OOM killer would: nothing gets to clean up."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        self.log_file.close()


class Supervised:
    """A process started again whenever it exits, as compose's ``restart: unless-stopped`` does.

    Production runs every worker under a supervisor, and the crash tests need one too: kombu 5.7's
    Redis transport can end the worker with "Unrecoverable error" when the broker vanishes
    (docs/reliability.md, "Known upstream failures"). acks_late and the relay make that a delay, not
    a loss, but only if something starts the worker again.
    """

    def __init__(self, start: Callable[[], Process]):
        self._start = start
        self.process = start()
        self.started = [self.process]
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            if self.process.popen.poll() is not None:
                self.process.log_file.close()
                self.process = self._start()
                self.started.append(self.process)

    def log(self) -> str:
        """What every run of the process logged, oldest first."""
        return "".join(process.log() for process in self.started)

    def children(self) -> list[int]:
        return self.process.children()

    def stop(self) -> None:
        self._stopping.set()
        self._watcher.join()
        self.process.stop()


def start_worker(
    env: dict[str, str],
    log_dir: Path,
    *,
    queues="critical,default,bulk",
    concurrency=2,
    name="worker",
    task_events=True,
) -> Process:
    """A prefork worker, once it is ready. ``task_events``: send task events (Flower, the ops
    page); the benchmark measures without them, as a worker started without ``-E``."""
    worker = Process(
        name,
        [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "--queues",
            queues,
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--hostname",
            f"{name}-{time.time_ns()}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            *(["--task-events"] if task_events else []),
        ],
        env,
        log_dir,
    )
    worker.wait_for_log("ready.", timeout=60)
    return worker


def start_warehouse(
    env: dict[str, str], log_dir: Path, *, port: int, database: Path, latency_ms=5, failure_rate=0.0
) -> Process:
    warehouse = Process(
        "warehouse",
        [
            str(BIN / "python"),
            "-m",
            "devtools.warehouse_simulator",
            "--port",
            str(port),
            "--database",
            str(database),
            "--latency-ms",
            str(latency_ms),
            "--failure-rate",
            str(failure_rate),
        ],
        env,
        log_dir,
    )
    warehouse.wait_for_log("warehouse simulator on", timeout=20)
    return warehouse


class SMTPRecorder:
    """A real SMTP server (aiosmtpd) in a thread that keeps every message it accepts.

    A message is kept the moment its content has arrived, before the server answers, so a reply
    delayed past the client's timeout (``delay_next_reply``) leaves a message the client never
    heard was accepted: what a real server does when its reply is lost.
    """

    def __init__(self, host: str = "127.0.0.1"):
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        self.refusals: list[str] = []  # SMTP replies to give instead of accepting, in order
        self.outage_reply: str | None = None  # while set, every DATA is refused with it
        self.data_commands = 0  # every DATA answered, accepted or refused
        self.refused_recipients: dict[str, str] = {}  # address -> RCPT reply, for good
        self.delays: dict[str, list[float]] = {"RCPT": [], "DATA": []}
        self.before_replies: list[Callable[[], None]] = []
        self.sessions: list = []  # the server side of every connection made, for close_connections
        self.reply_delay = 0.0  # seconds every DATA reply waits: a slow provider
        self.accepted: dict[str, float] = {}  # subject -> time.time() of its last 250
        self.controller = Controller(self, hostname=host, port=free_port())

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.lock:
            self.sessions.append(server)
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        await self._delay("RCPT")
        with self.lock:
            reply = self.refused_recipients.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes

        with self.lock:
            self.data_commands += 1
            if self.outage_reply:
                return self.outage_reply
            if self.refusals:
                return self.refusals.pop(0)
        parsed = message_from_bytes(envelope.content)
        with self.lock:
            self.messages.append(
                {
                    "to": list(envelope.rcpt_tos),
                    "peer": session.peer,  # the client's address: one per SMTP connection
                    "subject": parsed["Subject"],
                    "message_id": parsed["Message-ID"],
                    "body": parsed.get_payload(decode=True).decode(errors="replace"),
                }
            )
            before_reply = self.before_replies.pop(0) if self.before_replies else None
        if before_reply is not None:
            before_reply()
        await self._delay("DATA")
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        with self.lock:
            self.accepted[parsed["Subject"] or ""] = time.time()
        return "250 Message accepted for delivery"

    async def _delay(self, command: str) -> None:
        with self.lock:
            seconds = self.delays[command].pop(0) if self.delays[command] else 0
        if seconds:
            await asyncio.sleep(seconds)

    @property
    def port(self) -> int:
        return self.controller.port

    def start(self) -> "SMTPRecorder":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.refusals.clear()
            self.outage_reply = None
            self.refused_recipients.clear()
            self.before_replies.clear()
            self.accepted.clear()
            for delays in self.delays.values():
                delays.clear()

    def delay_next_reply(self, seconds: float, *, command: str = "DATA") -> None:
        """Answer the next ``command`` ("DATA" or "RCPT") only after ``seconds``; a DATA message is
        kept before the wait."""
        with self.lock:
            self.delays[command].append(seconds)

    def before_next_reply(self, action: Callable[[], None]) -> None:
        """Run ``action`` (in the server's thread) once the next message is kept, before its 250."""
        with self.lock:
            self.before_replies.append(action)

    def close_connections(self) -> None:
        """Close every client connection from the server's side, as an idle timeout does."""
        with self.lock:
            sessions, self.sessions = self.sessions, []

        async def close():
            for server in sessions:
                if server.transport is not None:
                    server.transport.close()
            await asyncio.sleep(0.05)  # the loop sends the FINs before this returns

        asyncio.run_coroutine_threadsafe(close(), self.controller.loop).result(timeout=5)

    def accepted_at(self, subject: str) -> float | None:
        """When the server answered 250 to the last message with this subject (``time.time()``)."""
        with self.lock:
            return self.accepted.get(subject)

    def message_ids(self) -> list[str]:
        with self.lock:
            return [m["message_id"] for m in self.messages]

    def refuse_next(self, *replies: str) -> None:
        """Answer the next messages with these replies, e.g. "451 4.3.0 Try again later"."""
        with self.lock:
            self.refusals.extend(replies)

    def outage(self, reply: str | None = "451 4.3.0 Try again later") -> None:
        """Refuse every message with ``reply`` until called with ``None``: a provider outage."""
        with self.lock:
            self.outage_reply = reply

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 Mailbox unavailable") -> None:
        """Refuse every message to ``address`` at RCPT with ``reply``, until ``clear()``."""
        with self.lock:
            self.refused_recipients[address] = reply

    def confirmations(self, order_number: str) -> list[dict]:
        """The order confirmation emails for one order (not its "shipped" email or others)."""
        return self.for_subject(f"Order {order_number} confirmed")

    def for_subject(self, text: str) -> list[dict]:
        with self.lock:
            return [m for m in self.messages if text in (m["subject"] or "")]


class PrivateRedis:
    """A Redis server of the test's own, on a free port, that the test may kill and restart.

    It keeps nothing on disk, like a broker that crashed: messages not yet consumed are gone, and
    only the outbox (the follow-up rows and the relay) can bring them back.
    """

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.log_dir = log_dir
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        self.process = Process(
            "private-redis",
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            dict(os.environ),
            self.log_dir,
        )
        self.process.wait_for_log("Ready to accept connections", timeout=20)
        return self

    def kill(self) -> None:
        os.killpg(self.process.popen.pid, signal.SIGKILL)
        self.process.popen.wait(5)
        self.process.log_file.close()


class PrivatePostgres:
    """A PostgreSQL server of the test's own: ``initdb`` in a temporary folder, its own port, trust
    authentication, so a test may stop and start it and touch no other database.

    initdb and the server refuse to run as root: both run as the ``postgres`` user. ``listen`` adds
    addresses beside 127.0.0.1 and ``network`` the clients trusted there (the cluster's bridge).
    """

    BIN = Path("/usr/lib/postgresql/15/bin")

    def __init__(self, *, listen: tuple[str, ...] = (), network: str | None = None):
        self.port = free_port()
        self.listen = ",".join(("127.0.0.1", *listen))
        self.dir = Path(tempfile.mkdtemp(prefix="private-postgres-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self._as_postgres(
            "initdb", "--pgdata", str(self.data), "--username", "postgres", "--auth", "trust",
            "--encoding", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        if network:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {network} trust\n")

    def _as_postgres(self, program: str, *args: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.BIN / program), *args],
            cwd=self.dir,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(
                f"{program} failed:\n{done.stdout}{done.stderr}\n{self.log()[-2000:]}"
            )

    def url(self, database: str = "postgres") -> str:
        """A DATABASE_URL for one of the server's databases."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> "PrivatePostgres":
        options = f"-p {self.port} -c listen_addresses={self.listen} -k {self.dir}"
        self._as_postgres(
            "pg_ctl", "start", "--wait", "--pgdata", str(self.data), "--log", str(self.log_path),
            "-o", options,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        """Fast shutdown: open transactions are rolled back, every client is disconnected."""
        self._as_postgres("pg_ctl", "stop", "--wait", "--mode", "fast", "--pgdata", str(self.data))

    def restart(self, *, down_seconds: float = 0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def create_database(self, name: str) -> str:
        """Create the database and return its DATABASE_URL."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def remove(self) -> None:
        """Stop the server if it runs and delete its files."""
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_web(env: dict[str, str], log_dir: Path, *, port: int) -> Process:
    web = Process(
        "web",
        [str(BIN / "python"), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        env,
        log_dir,
    )
    web.wait_for_log("Quit the server with", timeout=30)
    return web


def start_beat(env: dict[str, str], log_dir: Path, *, name="beat") -> Process:
    beat = Process(
        name, [str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO"], env, log_dir
    )
    beat.wait_for_log("beat: Starting", timeout=30)
    return beat


def start_relay(env: dict[str, str], log_dir: Path, *, name="relay") -> Process:
    """``manage.py follow_up_relay``, once it holds the lease (a relay killed without releasing it
    holds it for up to FOLLOW_UP_RELAY_LEASE_SECONDS more)."""
    relay = Process(name, [str(BIN / "python"), "manage.py", "follow_up_relay"], env, log_dir)
    relay.wait_for_log("holds the lease", timeout=60)
    return relay


def start_gunicorn(
    env: dict[str, str], log_dir: Path, *, port: int, workers: int = 2, threads: int = 4
) -> Process:
    """``config.wsgi`` under gunicorn's gthread workers, once every worker has booted."""
    web = Process(
        "gunicorn",
        [
            str(BIN / "gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
        ],
        env,
        log_dir,
    )  # fmt: skip
    wait_until(
        lambda: web.log().count("Booting worker with pid") >= workers,
        timeout=60,
        message="gunicorn's workers to boot",
    )
    return web


def rabbitmq_vhost_create(broker_url: str, *, prefix: str) -> tuple[str, str]:
    """A RabbitMQ vhost of the caller's own (``rabbitmqctl``): its queues clash with nobody's.
    Returns the broker URL for it and its name, for ``rabbitmq_vhost_delete``."""
    parts = urllib.parse.urlsplit(broker_url)
    vhost = f"{prefix}-{secrets.token_hex(4)}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, parts.username or "guest"]
        + [".*", ".*", ".*"],
        check=True,
    )
    return urllib.parse.urlunsplit(parts._replace(path=f"/{vhost}")), vhost


def rabbitmq_vhost_delete(vhost: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)


def postgres_database_recreate(database_url: str, name: str) -> str:
    """An empty database ``name`` on the server of ``database_url`` (dropped first if it exists);
    returns its DATABASE_URL."""
    parts = urllib.parse.urlsplit(database_url)
    with psycopg.connect(
        urllib.parse.urlunsplit(parts._replace(path="/postgres")), autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def postgres_database_drop(database_url: str) -> None:
    parts = urllib.parse.urlsplit(database_url)
    name = parts.path.lstrip("/")
    with psycopg.connect(
        urllib.parse.urlunsplit(parts._replace(path="/postgres")), autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
