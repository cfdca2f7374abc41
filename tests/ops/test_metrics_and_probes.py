"""/metrics for Prometheus (staff or token), /healthz and /readyz for orchestrators."""

from datetime import timedelta

import pytest
from django.utils import timezone

from follow_ups.models import FollowUp, RelayState
from tests.factories import ProductFactory, place_order

pytestmark = pytest.mark.django_db


def test_metrics_need_staff_or_the_token(client, settings):
    settings.OPS_METRICS_TOKEN = "scrape-token-123"

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert (
        client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"}).status_code
        == 200
    )


def test_without_a_token_configured_no_bearer_gets_in(client, settings):
    settings.OPS_METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_metrics_carry_the_same_figures_as_the_ops_page(admin_client):
    order = place_order((ProductFactory(), 1)).order
    FollowUp.objects.filter(label=order.number, kind="invoice").update(
        status="dead", attempts=1, started_at=timezone.now(), finished_at=timezone.now()
    )

    response = admin_client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'shop_follow_up_dead_letters{kind="invoice",queue="bulk"} 1.0' in text
    assert 'shop_follow_ups_waiting{kind="warehouse_sync",queue="default"} 1.0' in text
    for name in (
        "shop_queue_depth",
        "shop_follow_up_oldest_wait_seconds",
        "shop_follow_up_throughput_per_minute",
        "shop_follow_up_retry_rate",
        "shop_follow_up_failure_rate",
        "shop_workers_online",
        "shop_queue_workers",
        "shop_relay_last_tick_timestamp_seconds",
        "shop_relay_lag_seconds",
        "shop_beat_lease_expires_timestamp_seconds",
    ):
        assert f"# TYPE {name} gauge" in text


def test_what_the_relay_did_is_a_counter_as_its_total_name_promises(admin_client):
    RelayState.objects.create(pk=1, published=7, recovered=2, republished=1, failed=3)

    text = admin_client.get("/metrics").content.decode()

    for name in ("published", "recovered", "republished", "failed"):
        assert f"# TYPE shop_relay_{name}_total counter" in text
        assert f"# TYPE shop_relay_{name}_total gauge" not in text


def test_metrics_measure_how_long_the_web_took_per_route_not_per_path(admin_client):
    order = place_order((ProductFactory(), 1)).order

    def order_page_views() -> float:
        text = admin_client.get("/metrics").content.decode()
        counts = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("shop_http_request_duration_seconds_count")
            and 'route="/orders/<str:order_id>/"' in line
            and 'method="GET"' in line
        ]
        return sum(counts)

    before = order_page_views()  # the histogram lives as long as the process: count the change
    for _ in range(3):
        admin_client.get(f"/orders/{order.pk}/")
    admin_client.get("/no-such-page-1/")

    text = admin_client.get("/metrics").content.decode()
    assert order_page_views() - before == 3
    assert str(order.pk) not in text  # an order's path is its access token
    assert 'route="unmatched"' in text and "no-such-page" not in text


def test_metrics_say_how_many_workers_consume_each_queue_and_until_when_beat_holds_its_lease(
    admin_client,
):
    from scheduling.beat import LEASE_NAME
    from scheduling.models import Lease

    Lease.objects.create(
        name=LEASE_NAME, holder="beat-1", expires_at=timezone.now(), acquired_at=timezone.now()
    )

    text = admin_client.get("/metrics").content.decode()

    # No worker runs in this test: each queue is there, with none.
    for queue in ("critical", "default", "bulk"):
        assert f'shop_queue_workers{{queue="{queue}"}} 0.0' in text
    assert "shop_beat_lease_expires_timestamp_seconds 1." in text


def test_metrics_carry_what_the_relay_did(admin_client):
    ticked_at = timezone.now()
    RelayState.objects.create(
        pk=1,
        holder="relay-1",
        ticked_at=ticked_at,
        published=7,
        recovered=2,
        republished=1,
        failed=3,
        lag_seconds=4.5,
    )

    text = admin_client.get("/metrics").content.decode()

    assert "shop_relay_published_total 7.0" in text
    assert "shop_relay_recovered_total 2.0" in text
    assert "shop_relay_republished_total 1.0" in text
    assert "shop_relay_failed_total 3.0" in text
    assert "shop_relay_lag_seconds 4.5" in text
    tick = next(line for line in text.splitlines() if line.startswith("shop_relay_last_tick"))
    assert float(tick.split()[-1]) == pytest.approx(ticked_at.timestamp())


def test_healthz_answers_while_the_process_is_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_asks_only_the_database(client):
    """The web's readiness: no relay tick, no beat, no worker, and still ready for checkout."""
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": True}}


def broker_down():
    """Point this process's Celery app at a port nothing listens on (the broker is "down")."""
    from celery import current_app

    keys = ("broker_url", "broker_read_url", "broker_write_url", "broker_transport")
    original = {key: current_app.conf[key] for key in keys}
    current_app.conf.update(
        broker_url="amqp://guest:guest@127.0.0.1:1//",
        broker_read_url="amqp://guest:guest@127.0.0.1:1//",
        broker_write_url="amqp://guest:guest@127.0.0.1:1//",
        broker_transport=None,
    )
    return lambda: current_app.conf.update(original)


def test_readyz_stays_200_when_the_broker_is_unreachable(client):
    restore = broker_down()
    try:
        response = client.get("/readyz")
        background = client.get("/healthz/background")
    finally:
        restore()

    assert response.status_code == 200
    assert background.status_code == 503
    assert background.json()["checks"]["broker"] is False


def test_readyz_is_503_when_the_database_is_unreachable(client, settings):
    from django.db import connection

    with connection.execute_wrapper(_refuse_every_query):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": False}


def _refuse_every_query(execute, sql, params, many, context):
    from django.db import OperationalError

    raise OperationalError("simulated: the database is away")


def test_background_health_is_503_until_relay_beat_and_a_worker_are_there(client):
    response = client.get("/healthz/background")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] and checks["broker"]
    assert checks["relay"] is False and checks["beat"] is False


def test_background_health_says_the_relay_is_stale_when_its_tick_is_old(client, settings):
    settings.OPS_READY_BEAT_MAX_AGE_SECONDS = 60
    RelayState.objects.create(
        pk=1, holder="relay-1", ticked_at=timezone.now() - timedelta(minutes=5)
    )

    response = client.get("/healthz/background")

    assert response.status_code == 503
    assert response.json()["checks"]["relay"] is False


def test_in_production_background_health_wants_staff_or_the_token_and_the_probes_stay_open(
    client, admin_client, settings
):
    settings.OPS_DIAGNOSTICS_PUBLIC = False  # production's value
    settings.OPS_METRICS_TOKEN = "monitor-token-123"

    anonymous = client.get("/healthz/background")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="ops"'
    assert b"checks" not in anonymous.content
    monitor = client.get(
        "/healthz/background", headers={"Authorization": "Bearer monitor-token-123"}
    )
    assert monitor.status_code in (200, 503) and "checks" in monitor.json()
    assert "checks" in admin_client.get("/healthz/background").json()
    # What orchestrators ask stays public: compose's web health check asks /readyz.
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_metrics_carry_each_providers_breaker_and_what_waits_for_it(admin_client):
    from follow_ups.models import Breaker

    order = place_order((ProductFactory(), 1)).order
    Breaker.objects.create(provider="warehouse", state="open", failures=5)
    FollowUp.objects.filter(subject=f"order:{order.pk}", kind="warehouse_sync").update(
        status="waiting"
    )

    text = admin_client.get("/metrics").content.decode()

    assert 'shop_breaker_state{provider="warehouse",state="open"} 1.0' in text
    assert 'shop_breaker_state{provider="warehouse",state="closed"} 0.0' in text
    assert 'shop_breaker_state{provider="smtp",state="closed"} 1.0' in text
    assert 'shop_breaker_waiting_follow_ups{provider="warehouse"} 1.0' in text
    assert 'shop_breaker_waiting_follow_ups{provider="smtp"} 0.0' in text
