"""The shipped alerting rules (deploy/prometheus/alerts.yml): valid for Prometheus, unit-tested by
promtool against series as /metrics exposes them, asking only for metrics /metrics has, each with
its section in docs/operations.md. Needs Debian's ``prometheus`` package (``.ci/run`` installs it)."""

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.processes import REPO

pytestmark = pytest.mark.once

RULES = REPO / "deploy/prometheus/alerts.yml"
RULES_TESTS = REPO / "deploy/prometheus/alerts.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus (as .ci/run does)")
    return subprocess.run(
        [binary, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60
    )


def shipped_alerts() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def test_the_rules_are_valid_for_prometheus():
    checked = promtool("check", "rules", RULES.name)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(shipped_alerts())} rules found" in checked.stdout


def test_each_alert_fires_when_its_unit_test_says_and_not_before():
    tested = promtool("test", "rules", RULES_TESTS.name)

    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_names = set(re.findall(r"alertname: (\w+)", RULES_TESTS.read_text()))
    assert tested_names == {rule["alert"] for rule in shipped_alerts()}  # every alert has a case


@pytest.mark.django_db
def test_the_rules_ask_only_for_metrics_the_shop_exposes(admin_client):
    exposed = admin_client.get("/metrics").content.decode()
    families = set(re.findall(r"^# TYPE (\w+) \w+", exposed, re.MULTILINE))
    histograms = {f"{name}_bucket" for name in families}
    asked = {name for rule in shipped_alerts() for name in re.findall(r"\bshop_\w+", rule["expr"])}

    assert asked and asked <= families | histograms, asked - families - histograms


def test_each_alert_links_to_its_section_of_the_operations_guide():
    guide = (REPO / "docs/operations.md").read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in guide.splitlines()
        if line.startswith("#")
    }

    for rule in shipped_alerts():
        anchor = rule["annotations"]["runbook_url"].removeprefix("docs/operations.md#")
        assert anchor == rule["alert"].lower() and anchor in headings, rule["alert"]


def test_the_compose_profiles_prometheus_configuration_is_valid(tmp_path):
    """deploy/prometheus/prometheus.yml as the container reads it: its token file made here."""
    config = yaml.safe_load((RULES.parent / "prometheus.yml").read_text())
    (tmp_path / "metrics-token").write_text("a-token")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(
        tmp_path / "metrics-token"
    )
    (tmp_path / "alerts.yml").write_text(RULES.read_text())
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))

    checked = promtool("check", "config", str(tmp_path / "prometheus.yml"))

    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.django_db
def test_the_grafana_dashboard_asks_only_for_metrics_the_shop_exposes(admin_client):
    dashboard = json.loads((REPO / "deploy/grafana/celery-shop-dashboard.json").read_text())
    exposed = admin_client.get("/metrics").content.decode()
    families = set(re.findall(r"^# TYPE (\w+) \w+", exposed, re.MULTILINE))
    series = (
        families | {f"{name}_bucket" for name in families} | {f"{name}_count" for name in families}
    )
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bshop_\w+", target["expr"])
    }

    assert dashboard["uid"] == "celery-shop" and len(dashboard["panels"]) >= 10
    assert asked <= series, asked - series
