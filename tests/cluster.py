"""The shop on several hosts, on this machine: the topology ``make cluster`` builds and the cluster
tests (tests/integration/test_cluster.py) attack.

Each host is a Linux network namespace with its own hostname (a UTS namespace per process), joined
to the others by a bridge in the machine's own namespace:

    rabbit1, rabbit2, rabbit3   RabbitMQ nodes, clustered; critical/default/bulk are quorum queues
                                with a member on each of the three
    worker-a, worker-b          worker-critical and worker-default (Procfile.production's lines)
    web                         gunicorn
    ops                         beat and the relay
    ops-b                       empty: a standby beat and relay go here when asked for

PostgreSQL (a private server, so a test may restart it), the SMTP recorder and the warehouse
simulator are on the machine itself, listening on the bridge's address: the outside systems. Every
app process runs the Procfile.production command with the production settings, and lists every
broker node in ``CELERY_BROKER_URL``, its own host's preferred node first (see ``broker_url``).

Needs root, ``ip`` and RabbitMQ's and PostgreSQL's server binaries; nothing here touches the
machine's own RabbitMQ node or PostgreSQL server. Not a pytest fixture: the test module and
``python -m tests.cluster`` (``make cluster``) both drive it.
"""

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import (
    BIN,
    REPO,
    PrivatePostgres,
    Process,
    SMTPRecorder,
    free_port,
)
from tests.test_compose import procfile

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
RABBITMQ_USER = "shop"
APP_QUEUES = ("critical", "default", "bulk")
# Hosts and the last byte of their address on the bridge.
RABBIT_HOSTS = {"rabbit1": 11, "rabbit2": 12, "rabbit3": 13}
APP_HOSTS = {"worker-a": 21, "worker-b": 22, "web": 31, "ops": 41, "ops-b": 42}
WORKER_HOSTS = ("worker-a", "worker-b")
READY_LINE = {
    "web": "Listening at",
    "worker-critical": "ready.",
    "worker-default": "ready.",
    "beat": "beat: Starting",
    "relay": "relay ",  # "holds the lease" or "stands by"
}


def available() -> str | None:
    """Why the cluster cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for program in (RABBITMQ_BIN / "rabbitmq-server", PrivatePostgres.BIN / "initdb"):
        if not program.exists():
            return f"needs {program}"
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "needs ip (iproute2) and unshare"
    probe = f"shop-probe-{secrets.token_hex(3)}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode:
        return "cannot create network namespaces"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def run(*args: str, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check)


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    link: str  # the veth end on the bridge: taking it down cuts the host off

    def command(self, args: list[str]) -> list[str]:
        """``args`` run on this host: in its namespace, under its own hostname."""
        return [
            "ip", "netns", "exec", self.namespace, "unshare", "--uts", "sh", "-c",
            f'hostname {self.name} && exec "$@"', "sh", *args,
        ]  # fmt: skip

    def link_down(self) -> None:
        run("ip", "link", "set", self.link, "down")

    def link_up(self) -> None:
        run("ip", "link", "set", self.link, "up")


# Held while a build picks its subnet and names and creates its bridge, so two builds at once (CI's
# suite beside `make cluster`, two engineers' runs) never pick the same ones. flock is released by
# the kernel when its holder dies, so a killed build leaves no stale lock.
NETWORK_LOCK = Path("/run/lock/shop-cluster-network.lock")
SUBNETS = [ipaddress.ip_network(f"10.{n}.0.0/24") for n in range(77, 250)]


def networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the machine has an address on or a route to, in any routing table."""
    used = []
    for line in run("ip", "-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        used.append(ipaddress.ip_interface(fields[fields.index("inet") + 1]).network)
    for line in run("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        destination = line.split()[0]
        if destination[0].isdigit():
            used.append(ipaddress.ip_network(destination, strict=False))
    return used


def names_in_use() -> set[str]:
    """Links of the machine's namespace and network namespaces, by name."""
    links = {
        line.split(":")[1].strip().split("@")[0]
        for line in run("ip", "-o", "link", "show").stdout.splitlines()
    }
    namespaces = {line.split()[0] for line in run("ip", "netns", "list").stdout.splitlines()}
    return links | namespaces


class Network:
    """A bridge and one namespace per host, on a /24 no other interface or route of the machine
    uses, under names no other link or namespace has: chosen and claimed (the bridge made, its
    address set) under ``NETWORK_LOCK``."""

    def __init__(self, names: dict[str, int]):
        self.hosts: dict[str, Host] = {}
        self.bridge = ""
        NETWORK_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(NETWORK_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = networks_in_use()
            subnet = next((s for s in SUBNETS if not any(s.overlaps(u) for u in used)), None)
            if subnet is None:
                raise RuntimeError("no free 10.x.0.0/24 subnet for the cluster's bridge")
            taken = names_in_use()
            while True:
                tag = secrets.token_hex(2)
                mine = {f"shbr{tag}"} | {f"sh{tag}v{i}" for i in range(len(names))}
                mine |= {f"shop-{tag}-{name}" for name in names}
                if not mine & taken:
                    break
            self.tag = tag
            self.prefix = str(subnet.network_address).rsplit(".", 1)[0]
            self.gateway = f"{self.prefix}.1"
            self.network = str(subnet)
            try:
                self.bridge = f"shbr{tag}"
                run("ip", "link", "add", self.bridge, "type", "bridge")
                run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
                run("ip", "link", "set", self.bridge, "up")
            except BaseException:
                self.remove()
                raise
        try:
            for index, (name, last) in enumerate(names.items()):
                host = Host(name, f"shop-{tag}-{name}", f"{self.prefix}.{last}", f"sh{tag}v{index}")
                self.hosts[name] = host  # before it exists: a failure half-way removes it too
                run("ip", "netns", "add", host.namespace)
                run("ip", "-n", host.namespace, "link", "set", "lo", "up")
                run("ip", "link", "add", host.link, "type", "veth", "peer", "name", "eth0",
                    "netns", host.namespace)  # fmt: skip
                run("ip", "link", "set", host.link, "master", self.bridge, "up")
                run("ip", "-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
                run("ip", "-n", host.namespace, "link", "set", "eth0", "up")
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Kill whatever still runs in the namespaces (epmd daemonizes out of any process group we
        hold), then delete them, their links and the bridge. Safe to call twice, and on a network
        built half-way."""
        for host in self.hosts.values():
            pids = run("ip", "netns", "pids", host.namespace, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        for host in self.hosts.values():
            run("ip", "netns", "del", host.namespace, check=False)
            run("ip", "link", "del", host.link, check=False)  # gone with its namespace, normally
        if self.bridge:
            run("ip", "link", "del", self.bridge, check=False)


class RabbitNode:
    """A RabbitMQ node of our own on one host: its own data, logs, config, cookie and epmd."""

    def __init__(self, host: Host, directory: Path, cookie: str, password: str, log_dir: Path):
        self.host = host
        self.name = f"rabbit@{host.address}"
        self.dir = directory
        self.log_dir = log_dir
        (directory / "home").mkdir(parents=True)
        cookie_file = directory / "home" / ".erlang.cookie"
        cookie_file.write_text(cookie)
        cookie_file.chmod(0o400)
        (directory / "enabled_plugins").write_text("[].\n")
        (directory / "rabbitmq-env.conf").write_text(
            ""
        )  # not /etc/rabbitmq's: that is the main node's
        (directory / "rabbitmq.conf").write_text(
            "listeners.tcp.default = 5672\n"
            f"default_user = {RABBITMQ_USER}\n"
            f"default_pass = {password}\n"
            # A node cut off from the other two stops serving rather than split the cluster.
            "cluster_partition_handling = pause_minority\n"
        )
        self.process: Process | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.dir / "home"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_USE_LONGNAME": "true",
            "RABBITMQ_NODENAME": self.name,
        }

    def start(self) -> "RabbitNode":
        self.process = Process(
            f"rabbitmq-{self.host.name}",
            self.host.command([str(RABBITMQ_BIN / "rabbitmq-server")]),
            self.env,
            self.log_dir,
        )
        return self

    def wait_started(self, timeout: float = 90) -> None:
        self.process.wait_for_log("Starting broker... completed", timeout=timeout)

    def stop(self) -> None:
        """An orderly stop (SIGTERM), as ``systemctl stop`` or a rolling restart does."""
        self.process.stop(timeout=60)

    def ctl(self, *args: str, tool="rabbitmqctl", check=True) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", self.host.namespace, str(RABBITMQ_BIN / tool),
             "-l", "-n", self.name, *args],
            env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if check and done.returncode:
            raise RuntimeError(f"{tool} {' '.join(args)} on {self.name}: {done.stderr}")
        return done.stdout

    def queues(self) -> dict[str, dict]:
        """The quorum queues as this node sees them: leader, members, online members."""
        out = self.ctl("list_queues", "name", "leader", "members", "online", "--formatter", "json")
        return {row["name"]: row for row in json.loads(out)}

    def connections(self) -> int:
        return len(self.ctl("list_connections", "-q", "--no-table-headers", "pid").split())


@dataclass
class Cluster:
    """The whole topology, built by ``Cluster.build`` and removed by ``remove``."""

    tag: str
    dir: Path
    log_dir: Path
    network: Network
    postgres: PrivatePostgres
    smtp: SMTPRecorder
    warehouse: Process
    warehouse_url: str
    rabbits: list[RabbitNode]
    rabbit_password: str
    env: dict[str, str]
    processes: dict[str, Process] = field(default_factory=dict)

    # --- building ---------------------------------------------------------------------------------
    @classmethod
    def build(cls, *, log_dir: Path, directory: Path | None = None) -> "Cluster":
        network = Network(RABBIT_HOSTS | APP_HOSTS)
        tag = network.tag
        cleanup = [network.remove]
        try:
            directory = directory or Path(tempfile.mkdtemp(prefix=f"shop-cluster-{tag}-"))
            postgres = PrivatePostgres(listen=(network.gateway,), network=network.network)
            cleanup.append(postgres.remove)
            postgres.start()
            database = postgres.create_database("shop")
            smtp = SMTPRecorder(host=network.gateway).start()
            cleanup.append(smtp.stop)
            warehouse_port = free_port()
            warehouse = Process(
                "warehouse",
                [str(BIN / "python"), "-m", "devtools.warehouse_simulator", "--host",
                 network.gateway, "--port", str(warehouse_port), "--database",
                 str(directory / "warehouse.sqlite3"), "--latency-ms", "5"],
                dict(os.environ), log_dir,
            )  # fmt: skip
            cleanup.append(warehouse.stop)
            password, cookie = secrets.token_urlsafe(16), secrets.token_hex(16)
            rabbits = [
                RabbitNode(network.hosts[name], directory / name, cookie, password, log_dir)
                for name in RABBIT_HOSTS
            ]
            for node in rabbits:
                node.start()
            warehouse.wait_for_log("warehouse simulator on", timeout=20)
            for node in rabbits:
                node.wait_started()
            for node in rabbits[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", rabbits[0].name)
                node.ctl("start_app")
            web = network.hosts["web"]
            env = {
                **os.environ,
                "PATH": f"{BIN}:{os.environ['PATH']}",
                "DJANGO_SETTINGS_MODULE": "config.settings_production",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "ALLOWED_HOSTS": f"{web.address},127.0.0.1,localhost",
                "SECURE_SSL_REDIRECT": "false",  # plain HTTP inside the cluster, as behind a proxy
                "SECURE_PROXY_SSL_HEADER": "true",
                "DATABASE_URL": database.replace("127.0.0.1", network.gateway),
                "EMAIL_HOST": network.gateway,
                "EMAIL_PORT": str(smtp.port),
                "SITE_URL": f"http://{web.address}:8000",
                "PAYMENT_GATEWAY": "devtools.payment_gateway.SimulatedGateway",
                "WEB_BIND": f"{web.address}:8000",
                "WEB_CONCURRENCY": "2",
                "CRITICAL_CONCURRENCY": "1",
                "DEFAULT_CONCURRENCY": "2",
                "WAREHOUSE_URL": f"http://{network.gateway}:{warehouse_port}",
                "LOG_LEVEL": "INFO",
            }
            cluster = cls(
                tag, directory, log_dir, network, postgres, smtp, warehouse,
                env["WAREHOUSE_URL"], rabbits, password, env,
            )  # fmt: skip
            cluster.release(database)
            cluster.start_apps()
            return cluster
        except BaseException:
            for step in reversed(cleanup):
                with contextlib.suppress(Exception):
                    step()
            raise

    def broker_url(self, host: str) -> str:
        """Every node, in a different order on each host: kombu connects to the first URL and, when
        that connection fails, moves round-robin to the next. Rotating the list spreads the hosts'
        connections over the nodes, and any node can serve any queue (it forwards to the leader)."""
        urls = [
            f"amqp://{RABBITMQ_USER}:{self.rabbit_password}@{node.host.address}:5672//"
            for node in self.rabbits
        ]
        shift = list(APP_HOSTS).index(host) % len(urls)
        return ";".join(urls[shift:] + urls[:shift])

    def host_env(self, host: str) -> dict[str, str]:
        var = self.dir / "var" / host
        var.mkdir(parents=True, exist_ok=True)
        return self.env | {"CELERY_BROKER_URL": self.broker_url(host), "VAR_DIR": str(var)}

    def release(self, database: str) -> None:
        """Procfile.production's release line (migrate, seed), static files, and stock for a long
        stream of orders: from the machine itself, as a deploy job would."""
        env = self.host_env("ops") | {"DATABASE_URL": database, "VAR_DIR": str(self.dir / "var")}
        for args in (
            ["sh", "-c", procfile()["release"]],
            [str(BIN / "python"), "manage.py", "collectstatic", "--no-input"],
        ):
            done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout + done.stderr
        self.sql("UPDATE shop_product SET stock = 1000000")

    def start(self, host: str, process: str, *, wait=True) -> Process:
        """One line of Procfile.production on one host."""
        env = self.host_env(host)
        if process == "web":
            env["VAR_DIR"] = str(self.dir / "var")  # where collectstatic put the files
        started = Process(
            f"{host}-{process}",
            self.network.hosts[host].command(["sh", "-c", f"exec {procfile()[process]}"]),
            env,
            self.log_dir,
        )
        self.processes[f"{host}/{process}"] = started
        if wait:
            started.wait_for_log(READY_LINE[process], timeout=120)
        return started

    def start_apps(self) -> None:
        # The workers declare the quorum queues; the cluster has its three nodes by then, so each
        # queue gets a member on every node.
        lines = [(host, p) for host in WORKER_HOSTS for p in ("worker-critical", "worker-default")]
        lines += [("web", "web"), ("ops", "relay"), ("ops", "beat")]
        started = [(process, self.start(host, process, wait=False)) for host, process in lines]
        for process, running in started:
            running.wait_for_log(READY_LINE[process], timeout=120)

    # --- looking at it ----------------------------------------------------------------------------
    @property
    def web_url(self) -> str:
        return f"http://{self.env['WEB_BIND']}"

    def sql(self, query: str, *params) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.postgres.url("shop"), autocommit=True) as connection:
            cursor = connection.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def node(self, host: str) -> RabbitNode:
        return next(node for node in self.rabbits if node.host.name == host)

    def running_nodes(self) -> list[RabbitNode]:
        return [node for node in self.rabbits if node.process.popen.poll() is None]

    def queues(self) -> dict[str, dict]:
        """The quorum queues, asked of a node that runs."""
        return self.running_nodes()[0].queues()

    def leader_of(self, queue: str) -> RabbitNode:
        leader = self.queues()[queue]["leader"]
        return next(node for node in self.rabbits if node.name == leader)

    # --- tearing down -----------------------------------------------------------------------------
    def remove(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.stop()
        for node in self.rabbits:
            with contextlib.suppress(Exception):
                node.process.stop(timeout=20)
        for step in (
            self.warehouse.stop,
            self.smtp.stop,
            self.postgres.remove,
            self.network.remove,
        ):
            with contextlib.suppress(Exception):
                step()
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> None:
    """``make cluster``: build the topology, print where everything is, keep it up until Ctrl-C."""
    argparse.ArgumentParser(description=main.__doc__).parse_args()
    reason = available()
    if reason:
        sys.exit(f"cannot build the cluster here: {reason}")
    log_dir = Path(tempfile.mkdtemp(prefix="shop-cluster-logs-"))
    print(f"building the cluster (logs in {log_dir}) ...", flush=True)
    started = time.monotonic()
    cluster = Cluster.build(log_dir=log_dir)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    try:
        queues = cluster.queues()
        print(f"\nup in {time.monotonic() - started:.0f} s")
        for node in cluster.rabbits:
            print(f"  {node.host.name:9} {node.host.address:12} {node.name}")
        for name in APP_HOSTS:
            running = sorted(p.split("/")[1] for p in cluster.processes if p.startswith(f"{name}/"))
            host = cluster.network.hosts[name]
            print(f"  {name:9} {host.address:12} {', '.join(running) or '(standby host)'}")
        for name in APP_QUEUES:
            print(
                f"  queue {name}: leader {queues[name]['leader']}, members {queues[name]['members']}"
            )
        print(f"\n  shop        {cluster.web_url}/  (curl {cluster.web_url}/api/products/)")
        print(f"  PostgreSQL  {cluster.postgres.url('shop')}")
        print(f"  broker URL  {cluster.broker_url('web')}")
        print(f"  a host      ip netns exec {cluster.network.hosts['worker-a'].namespace} bash")
        print("\nCtrl-C removes it all.", flush=True)
        while not stop.wait(10):
            pass
    finally:
        print(f"removing the cluster; {len(cluster.smtp.messages)} emails were sent", flush=True)
        cluster.remove()


if __name__ == "__main__":
    main()
