"""deploy/keda-scaledobjects.yaml, the autoscaling rule docs/scaling.md offers, names what exists:
the worker services of docker-compose.yml, the queues each one consumes, the shop's own metrics."""

import re
import shlex

import yaml

from follow_ups import registry
from ops.prometheus import PER_KIND
from tests.processes import REPO
from tests.test_compose import command_line, load

SCALED = list(yaml.safe_load_all((REPO / "deploy" / "keda-scaledobjects.yaml").read_text()))
SCALED_OBJECTS = {d["metadata"]["name"]: d for d in SCALED if d["kind"] == "ScaledObject"}


def worker_queues() -> dict[str, set[str]]:
    """Each Celery worker service of docker-compose.yml, and the queues its command consumes."""
    queues = {}
    for name, service in load("docker-compose.yml")["services"].items():
        words = shlex.split(command_line(service)) if service.get("command") else []
        if "worker" in words and "--queues" in words:
            queues[name] = set(words[words.index("--queues") + 1].split(","))
    return queues


def test_every_worker_service_is_scaled_on_each_queue_it_consumes():
    services = worker_queues()
    assert set(SCALED_OBJECTS) == set(services)
    for name, scaled in SCALED_OBJECTS.items():
        assert scaled["spec"]["scaleTargetRef"]["name"] == name
        triggered = {
            t["metadata"]["queueName"]
            for t in scaled["spec"]["triggers"]
            if t["type"] == "rabbitmq"
        }
        assert triggered == services[name], name


def test_every_follow_up_kinds_queue_has_a_scaled_worker():
    scaled = set().union(*worker_queues().values())
    # The shop's kinds: tests register kinds of their own, on queues of their own.
    shops = [k for k in registry.kinds() if not k.perform.__module__.startswith("tests.")]
    assert len(shops) >= 4
    assert {kind.queue for kind in shops} <= scaled


def test_the_age_triggers_query_a_metric_the_shop_exports_for_those_queues():
    exported = {name for name, _ in PER_KIND.values()}
    services = worker_queues()
    for name, scaled in SCALED_OBJECTS.items():
        queries = [
            t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"
        ]
        assert queries, f"{name} has no oldest-age trigger"
        for query in queries:
            metric, labels = re.fullmatch(r"max\((\w+)\{queue=~?\"([^\"]+)\"\}\)", query).groups()
            assert metric in exported
            assert set(labels.split("|")) == services[name]
