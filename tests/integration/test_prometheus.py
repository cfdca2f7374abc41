"""A real Prometheus (Debian's ``prometheus`` package; ``.ci/run`` installs it) scrapes the shop's
``/metrics`` with the bearer token and evaluates the shipped alerting rules
(deploy/prometheus/alerts.yml): the warehouse goes down, ``ShopProviderBreakerOpen`` goes pending,
then firing; the warehouse returns, and the alert resolves.

Only the test's copy of the configuration is short: every rule's ``for`` and the scrape and
evaluation intervals. Each expression is the shipped one, read from the shipped file.
"""

import shutil
import time

import httpx
import pytest
import yaml

from tests.factories import ProductFactory
from tests.processes import REPO, Process, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TOKEN = "prometheus-scrape-token-0123"
ALERT = "ShopProviderBreakerOpen"
FOR = "3s"


def rules_with_short_for(path) -> dict:
    rules = yaml.safe_load(path.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    return rules


@pytest.fixture
def prometheus(private_stack, warehouse, process_log_dir, tmp_path):
    stack = private_stack(
        extra_env={
            "OPS_METRICS_TOKEN": TOKEN,
            # One failure opens the breaker, and it probes every 2 s: the alert's life in seconds.
            "FOLLOW_UP_BREAKER_THRESHOLD": "1",
            "FOLLOW_UP_BREAKER_OPEN_SECONDS": "2",
            "FOLLOW_UP_RETRY_BASE_SECONDS": "1",
        }
    )
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: apt-get install -y prometheus (as .ci/run does)")
    shipped = REPO / "deploy/prometheus/alerts.yml"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules_with_short_for(shipped)))
    (tmp_path / "token").write_text(TOKEN)
    config = {
        # A scrape asks the workers who they are (half a second): 2 s between scrapes.
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "shop",
                "metrics_path": "/metrics",
                "authorization": {"credentials_file": str(tmp_path / "token")},
                "static_configs": [{"targets": [stack.web_url.removeprefix("http://")]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = Process(
        "prometheus",
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        {"PATH": "/usr/bin:/bin"},
        process_log_dir,
    )
    process.wait_for_log("Server is ready to receive web requests", timeout=30)
    yield stack, f"http://127.0.0.1:{port}"
    process.stop()


def alert_states(prometheus_url: str) -> list[str]:
    alerts = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [
        alert["state"]
        for alert in alerts
        if alert["labels"]["alertname"] == ALERT and alert["labels"].get("provider") == "warehouse"
    ]


def test_the_test_rules_differ_from_the_shipped_ones_only_in_for():
    shipped = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    short = rules_with_short_for(REPO / "deploy/prometheus/alerts.yml")
    for group, short_group in zip(shipped["groups"], short["groups"], strict=True):
        for rule, short_rule in zip(group["rules"], short_group["rules"], strict=True):
            assert {**rule, "for": None} == {**short_rule, "for": None}


def test_a_warehouse_outage_fires_the_breaker_alert_and_its_return_resolves_it(
    prometheus, warehouse
):
    stack, prometheus_url = prometheus

    def scraped() -> bool:
        targets = httpx.get(f"{prometheus_url}/api/v1/targets", timeout=5).json()
        return [t["health"] for t in targets["data"]["activeTargets"]] == ["up"]

    wait_until(scraped, timeout=30, message="Prometheus to scrape the shop with the token")
    assert alert_states(prometheus_url) == []

    warehouse.configure(outage=True)
    started = time.monotonic()
    response = stack.checkout(ProductFactory(stock=5).sku)
    assert response.status_code == 201, response.text
    seen: list[str] = []

    def state_reached(wanted: str):
        def reached() -> bool:
            states = alert_states(prometheus_url)
            seen.extend(state for state in states if not seen or seen[-1] != state)
            return wanted in states

        return reached

    wait_until(state_reached("firing"), timeout=60, interval=0.2, message=f"{ALERT} to fire")
    fired_after = time.monotonic() - started
    assert seen[0] == "pending"  # `for` held it back before it fired

    warehouse.configure(outage=False)
    returned = time.monotonic()
    wait_until(
        lambda: alert_states(prometheus_url) == [], timeout=60, message=f"{ALERT} to resolve"
    )
    print(
        f"fired {fired_after:.1f} s after the outage, resolved {time.monotonic() - returned:.1f} s after the return"
    )
