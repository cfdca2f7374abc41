"""The web's request latency under gunicorn, as production runs it: several worker processes,
and a scrape that reaches any one of them still counts every process's requests
(``config/gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR``; ``ops.http_metrics``)."""

import os
import re
import secrets

import httpx
import pytest
from django.db import connection

from tests.conftest import database_url
from tests.processes import BIN, Process, free_port
from tests.test_compose import procfile

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

REQUESTS = 40


@pytest.fixture
def gunicorn(transactional_db, process_log_dir, tmp_path):
    port, token = free_port(), secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "DJANGO_SETTINGS_MODULE": "config.settings_production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0",
        "EMAIL_HOST": "127.0.0.1",
        "SITE_URL": f"http://127.0.0.1:{port}",
        "PAYMENT_GATEWAY": "devtools.payment_gateway.SimulatedGateway",
        "VAR_DIR": str(tmp_path / "var"),
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "3",
        "OPS_METRICS_TOKEN": token,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # gunicorn.conf.py makes a fresh one
    web = Process("gunicorn", ["sh", "-c", f"exec {procfile()['web']}"], env, process_log_dir)
    web.wait_for_log("Listening at", timeout=60)
    try:
        yield f"http://127.0.0.1:{port}", token, web
    finally:
        web.stop()


def healthz_count(url: str, token: str) -> float:
    text = httpx.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("shop_http_request_duration_seconds_count")
        and 'route="/healthz"' in line
    )


def test_every_gunicorn_process_s_requests_are_in_any_scrape(gunicorn):
    url, token, web = gunicorn
    # New connections each time: gunicorn's processes share the socket and each takes some.
    for _ in range(REQUESTS):
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    pids = set(re.findall(r"\[(\d+)\] \[INFO\] Booting worker", web.log()))

    counts = {healthz_count(url, token) for _ in range(6)}

    assert len(pids) == 3, web.log()[-2000:]
    assert counts == {float(REQUESTS)}
