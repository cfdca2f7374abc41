"""The processes of Procfile.production (what docker-compose.yml runs), run natively, sell an order.

Each line of Procfile.production is started as it is, with the production settings, against
PostgreSQL and a private RabbitMQ vhost (quorum queues, publisher confirms): gunicorn, a worker for
``critical``, a worker for ``default`` + ``bulk``, one beat, the follow-up relay, Flower and the
warehouse simulator.
"""

import json
import os
import secrets
import subprocess

import httpx
import pytest
from django.db import connection

from tests.conftest import database_url
from tests.factories import checkout_payload
from tests.processes import (
    BIN,
    REPO,
    Process,
    free_port,
    rabbitmq_vhost_create,
    rabbitmq_vhost_delete,
    wait_until,
)
from tests.test_compose import procfile

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture
def private_vhost():
    """A RabbitMQ vhost of this test's own: its quorum queues cannot clash with the suite's."""
    broker = os.environ.get("CELERY_BROKER_URL", "")
    assert broker.startswith("amqp://"), "this test runs on RabbitMQ (CELERY_BROKER_URL=amqp://...)"
    url, vhost = rabbitmq_vhost_create(broker, prefix="production-shape")
    yield url
    rabbitmq_vhost_delete(vhost)


@pytest.fixture
def production_env(transactional_db, private_vhost, smtp_server, tmp_path) -> dict[str, str]:
    web_port, warehouse_port, flower_port = free_port(), free_port(), free_port()
    return {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "DJANGO_SETTINGS_MODULE": "config.settings_production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",  # plain HTTP to 127.0.0.1, as behind a TLS proxy
        "SECURE_PROXY_SSL_HEADER": "true",  # the proxy says X-Forwarded-Proto: https
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": private_vhost,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
        "SITE_URL": f"http://127.0.0.1:{web_port}",
        "PAYMENT_GATEWAY": "devtools.payment_gateway.SimulatedGateway",  # a demo's, by name
        "VAR_DIR": str(tmp_path / "var"),
        "WEB_BIND": f"127.0.0.1:{web_port}",
        "WEB_CONCURRENCY": "2",
        "CRITICAL_CONCURRENCY": "1",
        "DEFAULT_CONCURRENCY": "1",
        "WAREHOUSE_HOST": "127.0.0.1",
        "WAREHOUSE_PORT": str(warehouse_port),
        "WAREHOUSE_DATABASE": str(tmp_path / "warehouse.sqlite3"),
        "WAREHOUSE_LATENCY_MS": "5",
        "WAREHOUSE_URL": f"http://127.0.0.1:{warehouse_port}",
        "FLOWER_ADDRESS": "127.0.0.1",
        "FLOWER_PORT": str(flower_port),
        "CELERY_FLOWER_USER": "ops",
        "CELERY_FLOWER_PASSWORD": secrets.token_urlsafe(12),
        "OPS_METRICS_TOKEN": secrets.token_urlsafe(16),
        "LOG_LEVEL": "INFO",
    }


READY_LINE = {
    "web": "Listening at",
    "warehouse": "warehouse simulator on",
    "worker-critical": "ready.",
    "worker-default": "ready.",
    "beat": "beat: Starting",
    "relay": "holds the lease",
    "flower": "Visit me at",
}


@pytest.fixture
def production_processes(production_env, process_log_dir):
    """Build-time and release steps first (as the Dockerfile and the migrate service do), then
    every long-running line of Procfile.production."""
    commands = procfile()
    subprocess.run(
        [str(BIN / "python"), "manage.py", "collectstatic", "--no-input"],
        cwd=REPO,
        env=production_env,
        check=True,
        capture_output=True,
    )
    release = subprocess.run(
        ["sh", "-c", commands["release"]], cwd=REPO, env=production_env, capture_output=True
    )
    assert release.returncode == 0, release.stdout + release.stderr
    started = {}
    try:
        for name, ready in READY_LINE.items():
            process = Process(
                name, ["sh", "-c", f"exec {commands[name]}"], production_env, process_log_dir
            )
            started[name] = process
            process.wait_for_log(ready, timeout=90)
        yield started
    finally:
        for process in started.values():
            process.stop()


def test_the_procfile_production_processes_place_an_order_and_run_its_follow_ups(
    production_env, production_processes, smtp_server
):
    assert set(READY_LINE) | {"release"} == set(procfile())
    web = f"http://{production_env['WEB_BIND']}"
    smtp_server.clear()

    response = httpx.post(
        f"{web}/api/orders/",
        content=json.dumps(checkout_payload(("SEED-CEL", 1))),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    placed = response.json()

    def ready():
        body = httpx.get(f"{web}/api/orders/{placed['id']}/", timeout=5).json()
        return body if body["status"] == "ready" else None

    body = wait_until(ready, timeout=60, interval=0.3, message="the order to become ready")
    assert {f["status"] for f in body["follow_ups"]} == {"succeeded"}
    assert len(smtp_server.for_subject(placed["number"])) == 1
    shipments = httpx.get(f"{production_env['WAREHOUSE_URL']}/shipments", timeout=5).json()
    assert [s["order_number"] for s in shipments["shipments"]] == [placed["number"]]
    # Each follow-up ran on the worker for its queue (its JSON job line names the kind).
    assert kinds_run(production_processes["worker-critical"]) == {"confirmation_email"}
    assert kinds_run(production_processes["worker-default"]) == {"warehouse_sync", "invoice"}
    assert "Traceback" not in production_processes["relay"].log()
    # The web's readiness asks the database only; background health asks the rest.
    ready_probe = httpx.get(f"{web}/readyz", timeout=5)
    assert ready_probe.status_code == 200, ready_probe.text
    assert ready_probe.json()["checks"] == {"database": True}
    # Background health is for monitors with the token (and staff), as /metrics.
    assert httpx.get(f"{web}/healthz/background", timeout=10).status_code == 401
    monitor = {"Authorization": f"Bearer {production_env['OPS_METRICS_TOKEN']}"}
    background = wait_until(
        lambda: (
            (r := httpx.get(f"{web}/healthz/background", headers=monitor, timeout=10)).status_code
            == 200
            and r
        ),
        timeout=30,
        message="background health to report broker, relay, beat and workers",
    )
    assert background.json()["checks"] == dict.fromkeys(
        ["database", "broker", "relay", "beat", "workers"], True
    )
    # gunicorn's access log has every request, and no order id in any line.
    web_log = production_processes["web"].log()
    assert "GET /api/orders/<redacted>/ HTTP/1.1" in web_log
    assert placed["id"] not in web_log and placed["id"].replace("-", "") not in web_log


def kinds_run(worker: Process) -> set[str]:
    """The follow-up kinds a worker finished successfully, from its JSON job lines."""
    kinds = set()
    for line in worker.log().splitlines():
        start = line.find('{"')
        if start < 0 or '"job.finished"' not in line:
            continue
        event = json.loads(line[start:])
        if event.get("job") == "follow_ups.run" and event["outcome"] == "succeeded":
            kinds.add(event["kind"])
    return kinds


def test_the_production_web_serves_static_files_and_flower_wants_a_password(
    production_env, production_processes
):
    web = f"http://{production_env['WEB_BIND']}"
    manifest = json.loads(
        (REPO / production_env["VAR_DIR"] / "static" / "staticfiles.json").read_text()
    )
    hashed_css = manifest["paths"]["shop/shop.css"]

    page = httpx.get(f"{web}/", timeout=10)
    css = httpx.get(f"{web}/static/{hashed_css}", timeout=10)

    assert page.status_code == 200 and hashed_css in page.text
    assert css.status_code == 200 and "max-age=315360000" in css.headers["Cache-Control"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert httpx.get(f"{web}/api/docs", timeout=10).status_code == 302  # to the staff login
    flower = f"http://127.0.0.1:{production_env['FLOWER_PORT']}"
    credentials = (production_env["CELERY_FLOWER_USER"], production_env["CELERY_FLOWER_PASSWORD"])
    # Started exactly as Procfile.production starts it: every page wants the password,
    # Prometheus' /metrics too.
    for path in ("/", "/workers", "/metrics", "/api/workers"):
        assert httpx.get(f"{flower}{path}", timeout=10).status_code == 401, path
    assert httpx.get(f"{flower}/workers", auth=credentials, timeout=10).status_code == 200
    assert httpx.get(f"{flower}/metrics", auth=credentials, timeout=10).status_code == 200


def test_the_production_web_sends_the_security_headers(
    production_env, production_processes, client
):
    web = f"http://{production_env['WEB_BIND']}"
    behind_tls = {"X-Forwarded-Proto": "https"}
    order = httpx.post(
        f"{web}/api/orders/", json=checkout_payload(("SEED-CEL", 1)), timeout=10
    ).json()
    order_url = f"{web}/orders/{order['id']}/"
    # The order page's 2-second poll, as htmx sends it (an old browser would add the Referer).
    poll = {**behind_tls, "HX-Request": "true", "Referer": order_url}

    for path, headers in (
        ("/", behind_tls),
        (f"/orders/{order['id']}/", behind_tls),
        (f"/orders/{order['id']}/", poll),
        ("/api/products/", behind_tls),
    ):
        response = httpx.get(f"{web}{path}", headers=headers, timeout=10)
        assert response.status_code == 200, path
        headers = response.headers
        assert headers["Strict-Transport-Security"].startswith("max-age=31536000"), path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        policy = directives(headers["Content-Security-Policy"])
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
        assert policy["frame-ancestors"] == "'none'"
        # The very policy a browser walks the htmx pages under without a violation
        # (tests/browser/test_content_security_policy.py, on the test settings).
        assert policy == directives(client.get("/")["Content-Security-Policy"])
    for headers in (behind_tls, poll):
        order_page = httpx.get(order_url, headers=headers, timeout=10)
        assert order_page.headers["Referrer-Policy"] == "no-referrer"
    assert (
        httpx.get(f"{web}/", headers=behind_tls, timeout=10).headers["Referrer-Policy"]
        == "same-origin"
    )
    # Plain HTTP, as a browser would send without the proxy: the session cookie is Secure.
    assert "Strict-Transport-Security" not in httpx.get(f"{web}/", timeout=10).headers
    # The order page, its poll and their Referer reached gunicorn's access log without the id.
    web_log = production_processes["web"].log()
    assert "GET /orders/<redacted>/ HTTP/1.1" in web_log
    assert order["id"] not in web_log and order["id"].replace("-", "") not in web_log


def directives(policy: str) -> dict[str, str]:
    """A Content-Security-Policy header's directives (their order is not part of the policy)."""
    return dict(directive.strip().split(" ", 1) for directive in policy.split(";"))
