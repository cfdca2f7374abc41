"""docker-compose.yml runs the same processes as Procfile.production, healthy and in order.

No Docker engine runs here, so the compose files are checked as data; the commands themselves are
run natively by tests/integration/test_production_processes.py.
"""

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from tests.processes import REPO

APP_SERVICES = {
    "migrate",
    "web",
    "warehouse",
    "worker-critical",
    "worker-default",
    "beat",
    "relay",
    "flower",
}
INFRASTRUCTURE = {"postgres", "rabbitmq", "mailpit"}
MONITORING = {"prometheus"}  # only with `--profile monitoring`
PROCESS_FOR_SERVICE = {
    "migrate": "release",
    "web": "web",
    "warehouse": "warehouse",
    "worker-critical": "worker-critical",
    "worker-default": "worker-default",
    "beat": "beat",
    "relay": "relay",
    "flower": "flower",
}


class ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags (``!override``, ``!reset``) read as plain values."""


ComposeLoader.add_constructor("!override", ComposeLoader.construct_mapping)
ComposeLoader.add_constructor("!reset", lambda loader, node: None)


def load(name: str) -> dict:
    return yaml.load((REPO / name).read_text(), Loader=ComposeLoader)  # noqa: S506


def procfile(path: Path = REPO / "Procfile.production") -> dict[str, str]:
    processes = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = command.strip()
    return processes


def command_line(service: dict) -> str:
    command = service["command"]
    words = shlex.split(command) if isinstance(command, str) else command
    if words[:2] == ["sh", "-c"]:
        return words[2]
    return command if isinstance(command, str) else shlex.join(command)


def merged(base: dict, override: dict) -> dict:
    """Compose's merge for what these files use: maps merge, ``!override`` keys replace."""
    result = {**base}
    for name, service in override.get("services", {}).items():
        combined = {**result["services"].get(name, {})}
        for key, value in service.items():
            if isinstance(value, dict) and key not in ("depends_on",):
                combined[key] = {**(combined.get(key) or {}), **value}
            else:
                combined[key] = value
        result["services"] = {**result["services"], name: combined}
    return result


def queues_of(command: str) -> set[str]:
    words = shlex.split(command)
    return set(words[words.index("--queues") + 1].split(","))


def test_compose_runs_every_production_process_with_the_procfile_command():
    services = load("docker-compose.yml")["services"]
    processes = procfile()

    assert set(services) == APP_SERVICES | INFRASTRUCTURE | MONITORING
    assert set(PROCESS_FOR_SERVICE.values()) == set(processes)
    for service_name, process_name in PROCESS_FOR_SERVICE.items():
        assert command_line(services[service_name]) == processes[process_name], service_name


def test_every_app_service_is_built_from_the_one_dockerfile():
    services = load("docker-compose.yml")["services"]

    for name in APP_SERVICES:
        assert services[name]["build"] == ".", name
        assert services[name]["image"] == "celery-shop:latest", name
        assert services[name]["env_file"] == ".env", name
    for name in INFRASTRUCTURE | MONITORING:
        assert "build" not in services[name] and services[name]["image"], name
    assert services["rabbitmq"]["image"].endswith("-management")


def test_the_image_is_slim_runs_as_a_user_installs_the_hashed_lock_and_collects_static():
    dockerfile = (REPO / "Dockerfile").read_text()

    assert re.search(r"^FROM python:3\.\d+-slim$", dockerfile, re.MULTILINE)
    assert re.search(r"^USER shop$", dockerfile, re.MULTILINE)
    assert re.search(r"^COPY requirements\.lock \.$", dockerfile, re.MULTILINE)
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert "python manage.py collectstatic --no-input" in dockerfile
    requirements = [
        line
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all("==" in line for line in requirements), requirements


def test_every_long_running_service_has_a_health_check_and_waits_for_healthy_dependencies():
    services = load("docker-compose.yml")["services"]

    for name, service in services.items():
        if name != "migrate":
            assert service["healthcheck"]["test"], name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if dependency == "migrate":
                assert condition == {"condition": "service_completed_successfully"}, name
            else:
                assert condition == {"condition": "service_healthy"}, f"{name} → {dependency}"
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker-critical", "worker-default", "beat", "relay"):
        assert set(services[name]["depends_on"]) >= {"migrate", "postgres", "rabbitmq"}, name


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.cluster.yml"])
def test_the_webs_health_check_is_its_readiness_and_no_broker_outage_fails_it(name):
    """/readyz asks the database only; /healthz/background (broker, relay, beat, workers) is for
    alerts: as a web health check it would pull every web out of rotation in a broker outage.
    Run against a web whose broker is gone: tests/integration/test_readiness.py."""
    services = load(name)["services"]

    assert "'/readyz'" in services["web"]["healthcheck"]["test"][-1]
    for service_name, service in services.items():
        assert "/healthz/background" not in str(service.get("healthcheck", "")), service_name


def test_workers_split_the_queues_and_together_consume_every_routed_queue():
    services = load("docker-compose.yml")["services"]
    critical = queues_of(command_line(services["worker-critical"]))
    default = queues_of(command_line(services["worker-default"]))

    assert critical == {"critical"}
    assert default == {"default", "bulk"}
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed | {q.name for q in settings.CELERY_TASK_QUEUES} == critical | default


def test_exactly_one_beat_runs():
    services = load("docker-compose.yml")["services"]
    beats = [name for name, s in services.items() if "command" in s and " beat" in command_line(s)]

    assert beats == ["beat"]
    assert services["beat"]["deploy"]["replicas"] == 1


def test_flower_asks_for_a_password_from_the_environment():
    command = command_line(load("docker-compose.yml")["services"]["flower"])

    assert (
        "--basic-auth=${CELERY_FLOWER_USER:?set CELERY_FLOWER_USER}:"
        "${CELERY_FLOWER_PASSWORD:?set CELERY_FLOWER_PASSWORD}" in command
    )


def test_env_example_names_every_variable_compose_requires():
    compose_text = (REPO / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", compose_text))
    example = {
        line.partition("=")[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }

    assert required <= example, required - example
    assert {"SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL"} <= example
    assert {"EMAIL_HOST", "SITE_URL", "PAYMENT_GATEWAY"} <= example
    assert "DJANGO_SETTINGS_MODULE" in example


def test_the_image_builds_with_every_variable_production_requires():
    """collectstatic imports the production settings at build time: each required variable needs
    a build-only value there, or the build stops with the sentence naming it."""
    settings_source = (REPO / "config" / "settings_production.py").read_text()
    required = ast.literal_eval(
        re.search(r"^REQUIRED = (\(.*?\))", settings_source, re.S | re.M)[1]
    )
    build = (REPO / "Dockerfile").read_text().split("python manage.py collectstatic")[0]

    assert "PAYMENT_GATEWAY" in required
    for name in required:
        assert re.search(rf"\b{name}=\S", build), name


def test_the_redis_variant_swaps_the_broker_and_keeps_every_process():
    stack = merged(load("docker-compose.yml"), load("docker-compose.redis.yml"))
    services = stack["services"]

    assert services["redis"]["healthcheck"]["test"]
    assert services["rabbitmq"]["profiles"] == ["rabbitmq"]  # not started by `up`
    for name in APP_SERVICES - {"warehouse"}:  # the simulator stands for a third party: no Celery
        assert services[name]["environment"]["CELERY_BROKER_URL"].startswith("redis://"), name
        assert "rabbitmq" not in services[name].get("depends_on", {}), name
    for name in ("web", "worker-critical", "worker-default", "beat", "relay"):
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}, name
    assert command_line(services["web"]) == procfile()["web"]


# --- docker-compose.cluster.yml: the several-host topology (tests/cluster.py) ---------------------
CLUSTER_NODES = {"rabbit1", "rabbit2", "rabbit3"}


def test_the_cluster_file_runs_every_production_process_with_the_procfile_command():
    services = load("docker-compose.cluster.yml")["services"]
    processes = procfile()

    assert set(services) == APP_SERVICES | CLUSTER_NODES | {"postgres", "mailpit"}
    for service_name, process_name in PROCESS_FOR_SERVICE.items():
        assert command_line(services[service_name]) == processes[process_name], service_name
        assert services[service_name]["image"] == "celery-shop:latest", service_name
    assert services["worker-critical"]["deploy"]["replicas"] == 2
    assert services["worker-default"]["deploy"]["replicas"] == 2
    assert services["beat"]["deploy"]["replicas"] == 1
    assert services["relay"]["deploy"]["replicas"] == 2  # one active, one standing by


def test_the_cluster_file_clusters_three_rabbitmq_nodes_with_one_cookie():
    stack = load("docker-compose.cluster.yml")
    services = stack["services"]
    config = stack["configs"]["rabbitmq-conf"]["content"]

    assert {services[name]["hostname"] for name in CLUSTER_NODES} == CLUSTER_NODES
    for name in CLUSTER_NODES:
        node = services[name]
        assert f"cluster_formation.classic_config.nodes.{name[-1]} = rabbit@{name}" in config
        assert node["volumes"] == [f"{name}-data:/var/lib/rabbitmq"], name
        assert {c["source"] for c in node["configs"]} == {"rabbitmq-conf", "erlang-cookie"}, name
        assert node["healthcheck"]["test"], name
    assert "cluster_partition_handling = pause_minority" in config
    assert stack["configs"]["erlang-cookie"] == {"environment": "RABBITMQ_ERLANG_COOKIE"}


def test_every_cluster_client_lists_every_node_and_waits_for_all_three():
    services = load("docker-compose.cluster.yml")["services"]
    firsts = set()

    for name in APP_SERVICES - {"warehouse", "migrate"}:  # migrate never talks to the broker
        urls = services[name]["environment"]["CELERY_BROKER_URL"].split(";")
        hosts = [re.search(r"@(\w+):5672/", url).group(1) for url in urls]
        assert sorted(hosts) == sorted(CLUSTER_NODES), name
        firsts.add(hosts[0])
        for node in CLUSTER_NODES:
            assert services[name]["depends_on"][node] == {"condition": "service_healthy"}, name
    assert firsts == CLUSTER_NODES  # the services' connections spread over the three nodes


def test_env_example_names_every_variable_the_cluster_file_requires():
    text = (REPO / "docker-compose.cluster.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text)) | {"RABBITMQ_ERLANG_COOKIE"}
    example = {
        line.partition("=")[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }

    assert required <= example, required - example


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.cluster.yml"])
def test_a_deploy_stops_each_worker_warmly_within_the_follow_ups_time_limit(name):
    """Compose sends SIGTERM to the worker (its container's first process, so never to its pool
    children directly) and waits stop_grace_period before SIGKILL: longer than a follow-up may run.
    The same warm shutdown on real processes: tests/integration/test_make_run.py."""
    services = load(name)["services"]

    for worker in ("worker-critical", "worker-default"):
        grace = services[worker]["stop_grace_period"]
        assert re.fullmatch(r"\d+s", grace), grace
        assert int(grace[:-1]) > settings.CELERY_TASK_TIME_LIMIT, worker
        assert services[worker].get("stop_signal", "SIGTERM") == "SIGTERM", worker
        assert not command_line(services[worker]).startswith(("sh ", "bash ")), worker


def test_prometheus_runs_only_in_the_monitoring_profile_with_the_shipped_rules_and_the_token():
    services = load("docker-compose.yml")["services"]
    prometheus = services["prometheus"]
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())

    assert prometheus["profiles"] == ["monitoring"]
    assert all("profiles" not in services[name] for name in APP_SERVICES | INFRASTRUCTURE)
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert config["rule_files"] == ["alerts.yml"]  # beside prometheus.yml: deploy/prometheus/
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "shop" and job["static_configs"] == [{"targets": ["web:8000"]}]
    token_file = job["authorization"]["credentials_file"]
    command = prometheus["command"][0]
    assert f'"$${{OPS_METRICS_TOKEN:?set OPS_METRICS_TOKEN in .env}}" > {token_file}' in command
    assert prometheus["depends_on"] == {"web": {"condition": "service_healthy"}}
