"""The ops page and its metrics, read from the follow-up ledger and the broker."""

import re
import uuid
from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone
from kombu import Queue

from config.schedules import SCHEDULES_BY_NAME
from follow_ups.models import FollowUp, RelayState
from ops import selectors, services
from ops.models import QueueSample
from ops.templatetags.durations import ago
from ops.templatetags.sparklines import sparkline
from scheduling.beat import LEASE_NAME as BEAT_LEASE_NAME
from scheduling.models import Lease
from tests.factories import ProductFactory, place_order
from tests.processes import wait_until

pytestmark = pytest.mark.django_db


def metrics_for(kind: str):
    return next(m for m in selectors.job_metrics() if m.name == kind)


def test_the_ops_page_is_for_staff_only(client, django_user_model):
    assert client.get("/ops/").status_code == 302
    assert client.get("/ops/")["Location"].startswith("/admin/login/")
    customer = django_user_model.objects.create_user("customer", password="pw-12345-long")
    client.force_login(customer)
    assert client.get("/ops/").status_code == 302


def test_the_ops_page_shows_the_six_metrics_per_queue_and_per_kind(admin_client):
    order = place_order((ProductFactory(), 1)).order
    FollowUp.objects.filter(label=order.number, kind="warehouse_sync").update(
        status="dead", attempts=1, started_at=timezone.now(), finished_at=timezone.now()
    )

    response = admin_client.get("/ops/")

    assert response.status_code == 200
    page = response.content.decode()
    for heading in (
        "Queue depth",
        "Oldest waiting",
        "Throughput /min",
        "Retry rate",
        "Failure rate",
        "Dead letters",
        "Workers online",
        "Relay",
    ):
        assert heading in page
    for name in ("critical", "default", "bulk", "confirmation_email", "warehouse_sync", "invoice"):
        assert f'data-row="{name}"' in page
    assert '<figure class="sparkline"' in page
    assert 'hx-trigger="every 5s"' in page
    assert 'data-metric="dead-letters">1<' in page
    assert 'data-metric="relay">never ticked<' in page
    assert "/admin/follow_ups/followup/?status__exact=dead" in page


def test_the_ops_page_shows_when_the_relay_ticked_and_what_it_did(admin_client):
    RelayState.objects.create(
        pk=1,
        holder="relay-1",
        ticked_at=timezone.now() - timedelta(minutes=2),
        published=12,
        recovered=3,
        republished=1,
        lag_seconds=4,
    )

    page = admin_client.get("/ops/").content.decode()

    assert 'data-metric="relay">ticked 2 min ago<' in page
    assert "published 12, recovered 3, re-published as lost 1; lag 4 s" in page


def test_the_ops_page_says_whether_beat_holds_its_lease_and_links_background_health(
    admin_client,
):
    page = admin_client.get("/ops/").content.decode()
    assert 'data-metric="beat">not running<' in page and "no beat has held the lease" in page
    assert 'href="/healthz/background"' in page

    expires_at = timezone.now() + timedelta(seconds=30)
    Lease.objects.create(
        name=BEAT_LEASE_NAME, holder="beat@host", expires_at=expires_at, acquired_at=timezone.now()
    )
    page = admin_client.get("/ops/").content.decode()
    assert 'data-metric="beat">running<' in page
    assert f"lease held until {expires_at:%H:%M:%S} UTC" in page

    Lease.objects.filter(name=BEAT_LEASE_NAME).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert 'data-metric="beat">not running<' in admin_client.get("/ops/").content.decode()


def test_htmx_polling_gets_the_panel_alone(admin_client):
    response = admin_client.get("/ops/", headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<div id="ops-panel"')
    assert b"<html" not in response.content


def test_dead_letters_and_retries_are_counted_per_kind():
    orders = [place_order((ProductFactory(), 1)).order for _ in range(4)]
    now = timezone.now()
    for order in orders[:2]:
        FollowUp.objects.filter(label=order.number, kind="confirmation_email").update(
            status="dead", attempts=8, started_at=now, finished_at=now
        )
    FollowUp.objects.filter(label=orders[2].number, kind="confirmation_email").update(
        status="retrying", attempts=2, started_at=now, next_attempt_at=now + timedelta(seconds=30)
    )
    FollowUp.objects.filter(label=orders[3].number, kind="confirmation_email").update(
        status="succeeded", attempts=1, started_at=now, finished_at=now
    )

    email = metrics_for("confirmation_email")

    assert email.dead_letters == 2
    assert email.retrying_now == 1
    assert email.retry_rate == pytest.approx(3 / 4)  # the dead ones were retried too
    assert email.failure_rate == pytest.approx(2 / 4)
    assert email.throughput_per_minute == 1
    assert email.throughput_history[-1] == 1 and email.failure_history[-1] == 2
    assert metrics_for("invoice").dead_letters == 0


def test_the_oldest_waiting_job_is_the_oldest_follow_up_not_done_and_not_running():
    old, new = (place_order((ProductFactory(), 1)).order for _ in range(2))
    FollowUp.objects.filter(label=old.number, kind="invoice").update(
        created_at=timezone.now() - timedelta(minutes=3)
    )
    FollowUp.objects.filter(label=new.number, kind="invoice").update(status="succeeded")

    invoice = metrics_for("invoice")

    assert invoice.waiting == 1
    assert 170 < invoice.oldest_wait_seconds < 200
    assert metrics_for("warehouse_sync").waiting == 2


def test_rows_waiting_for_a_retry_count_as_waiting_and_age_the_oldest_wait():
    # A warehouse outage: every sync is retrying, none is due yet. The backlog is real and ages.
    orders = [place_order((ProductFactory(), 1)).order for _ in range(12)]
    now = timezone.now()
    FollowUp.objects.filter(
        label__in=[order.number for order in orders], kind="warehouse_sync"
    ).update(
        status="retrying",
        attempts=3,
        started_at=now - timedelta(seconds=20),
        next_attempt_at=now + timedelta(minutes=4),
        created_at=now - timedelta(minutes=5),
    )

    sync = metrics_for("warehouse_sync")

    assert (sync.waiting, sync.retrying_now) == (12, 12)
    assert 295 < sync.oldest_wait_seconds < 330
    default = next(m for m in selectors.ops_snapshot().by_queue if m.name == "default")
    assert 295 < default.oldest_wait_seconds < 330


def test_queue_depth_is_read_from_the_broker():
    queue = Queue(f"ops-depth-{uuid.uuid4().hex[:8]}")  # no worker consumes it
    with current_app.producer_or_acquire() as producer:
        for number in range(3):
            producer.publish({"n": number}, routing_key=queue.name, declare=[queue])
    try:
        # RabbitMQ counts a message in a queue's depth a moment after accepting it.
        wait_until(
            lambda: selectors.queue_depths([queue.name]) == {queue.name: 3},
            timeout=5,
            message="the broker to report three messages",
        )
    finally:
        with current_app.connection_for_write() as conn:
            bound = queue(conn.default_channel)
            bound.purge()
            bound.delete()


def test_a_queue_nothing_was_published_to_has_depth_zero():
    name = f"ops-never-{uuid.uuid4().hex[:8]}"
    assert selectors.queue_depths([name]) == {name: 0}


def test_beat_samples_queue_depth_and_oldest_wait_for_the_charts(settings):
    sample_schedule = SCHEDULES_BY_NAME["ops-queue-sample"]
    assert (sample_schedule.task, sample_schedule.every) == ("ops.tasks.queue_sample_task", 30)
    assert settings.CELERY_TASK_ROUTES["ops.tasks.queue_sample_task"] == {"queue": "critical"}
    order = place_order((ProductFactory(), 1)).order
    FollowUp.objects.filter(label=order.number).update(
        created_at=timezone.now() - timedelta(seconds=90)
    )

    samples = services.queue_samples_record()

    assert {sample.queue for sample in samples} == {"critical", "default", "bulk"}
    history = selectors.queue_history(now=timezone.now())
    depths, oldest = history["bulk"]
    assert len(depths) == len(oldest) == selectors.HISTORY_MINUTES
    assert 85 <= oldest[-1] <= 120


def test_samples_older_than_two_hours_are_pruned():
    stale = QueueSample.objects.create(
        taken_at=timezone.now() - timedelta(hours=3), queue="bulk", depth=5
    )

    services.queue_samples_record()

    assert not QueueSample.objects.filter(pk=stale.pk).exists()


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.4, "under 1 s ago"),
        (4, "4 s ago"),
        (59, "59 s ago"),
        (125, "2 min ago"),
        (3600, "1 h ago"),
        (3600 + 5 * 60 + 7, "1 h 5 min ago"),
    ],
)
def test_how_long_ago_the_relay_ticked_reads_naturally(seconds, words):
    now = timezone.now()
    assert ago(now - timedelta(seconds=seconds), now) == words


def test_a_sparkline_fills_its_cell_and_has_its_ticks_and_no_labels_of_its_own():
    chart = sparkline([0] * 59 + [7], "succeeded per minute")

    svg = re.search(r"<svg [^>]*>", chart).group(0)
    assert 'width="100%"' in svg and 'preserveAspectRatio="none"' in svg
    assert re.findall(r"<span>([^<]+)</span>", chart) == []
    ticks = re.findall(r'<line x1="([\d.]+)" y1="23"', chart)
    assert len(ticks) == 4  # now, 15, 30 and 45 minutes back
    assert float(ticks[0]) == pytest.approx(118)  # the first tick is "now", at the right end
    assert "the last 60 minutes, peak 7" in chart


def test_the_ops_page_labels_its_charts_time_axis_once_under_each_table(admin_client):
    page = admin_client.get("/ops/").content.decode()
    # Per queue: depth, oldest wait, throughput, retries, dead letters; per kind: the last three.
    queues, kinds = 3, len(selectors.job_metrics())
    assert len(re.findall(r'<td class="spark[" ]', page)) == 5 * queues + 3 * kinds
    tables = re.findall(r'<table class="metrics">.*?</table>', page, re.DOTALL)
    assert len(tables) == 2
    for table, charts in zip(tables, (5, 3), strict=True):
        body, foot = table.split("<tfoot")
        assert 'class="sparkline-times"' not in body
        # One label row under the table: one "now" under each chart column, not one per chart.
        assert foot.count('<div class="sparkline-times">') == charts
        assert foot.count("<span>now</span>") == charts


def test_the_ops_page_names_the_six_job_metrics_and_sets_the_counts_apart(admin_client):
    page = admin_client.get("/ops/").content.decode()

    queue_table = re.search(r'<table class="metrics">.*?</thead>', page, re.DOTALL).group(0)
    headers = re.findall(r"<th[^>]*>([^<]+)</th>", queue_table)
    group = headers.index("The six job metrics")
    aside = headers.index("Counts, now")
    six = ["Queue depth", "Oldest waiting", "Throughput /min", "Retry rate", "Failure rate"]
    six.append("Dead letters")
    assert [h for h in headers if h in six] == six
    assert headers[-2:] == ["Waiting", "Retrying now"]
    assert group < aside


@pytest.mark.django_db
def test_a_void_set_aside_when_its_order_committed_is_not_throughput():
    place_order((ProductFactory(), 1))  # its payment_void is set aside, never run
    by_kind = {m.name: m for m in selectors.job_metrics()}
    assert by_kind["payment_void"].throughput_per_minute == 0
    assert sum(by_kind["payment_void"].throughput_history) == 0


def test_the_ops_page_shows_staff_the_errors_behind_retries_and_dead_letters(admin_client):
    retrying, dead, fine = (place_order((ProductFactory(), 1)).order for _ in range(3))
    rows = FollowUp.objects.filter(kind="confirmation_email")
    rows.filter(label=retrying.number).update(
        status="retrying", attempts=2, last_error="EmailTemporaryFailure: SMTP 451 4.3.0 busy"
    )
    rows.filter(label=dead.number).update(
        status="dead", attempts=8, last_error='WarehouseUnavailable: HTTP 503: {"error": "outage"}'
    )
    # Succeeded on a later attempt: its old error is history, not a failure to look at.
    rows.filter(label=fine.number).update(
        status="succeeded", attempts=2, last_error="EmailTemporaryFailure: SMTP 421 earlier"
    )

    page = admin_client.get("/ops/").content.decode()
    polled = admin_client.get("/ops/", headers={"HX-Request": "true"}).content.decode()

    for body in (page, polled):
        panel = body[body.index("<h3>Latest failures</h3>") :]
        assert "EmailTemporaryFailure: SMTP 451 4.3.0 busy" in panel
        assert "WarehouseUnavailable: HTTP 503: {&quot;error&quot;: &quot;outage&quot;}" in panel
        assert "SMTP 421 earlier" not in panel
        for order in (retrying, dead):
            row = rows.get(label=order.number)
            assert f'<a href="/admin/follow_ups/followup/{row.pk}/change/">#{row.pk}</a>' in panel
            assert f"<td>{order.number}</td>" in panel
        assert fine.number not in panel


def test_the_ops_page_says_when_nothing_has_failed(admin_client):
    place_order((ProductFactory(), 1))

    page = admin_client.get("/ops/").content.decode()

    assert "No follow-up is retrying or dead." in page


def test_the_latest_failures_are_the_latest_changes_and_at_most_ten():
    orders = [place_order((ProductFactory(), 1)).order for _ in range(12)]
    now = timezone.now()
    for age, order in enumerate(orders):
        FollowUp.objects.filter(label=order.number, kind="invoice").update(
            status="dead", last_error=f"error {age}", updated_at=now - timedelta(minutes=age)
        )

    failures = selectors.recent_failures()

    assert [row.last_error for row in failures] == [f"error {age}" for age in range(10)]


def test_the_ops_page_and_the_lab_show_each_providers_breaker_since_when_and_who_waits(
    admin_client,
):
    from follow_ups.models import Breaker

    opened_at = timezone.now().replace(hour=10, minute=11, second=12)
    order = place_order((ProductFactory(), 1)).order
    Breaker.objects.create(
        provider="smtp", state="open", failures=5, opened_at=opened_at, last_error="SMTP 451"
    )
    FollowUp.objects.filter(subject=f"order:{order.pk}", kind="confirmation_email").update(
        status="waiting"
    )

    for page in ("/ops/", "/ops/lab/"):
        html = admin_client.get(page).content.decode()
        row = re.search(r'<tr data-provider="smtp">(.*?)</tr>', html, re.S).group(1)
        assert 'data-state="open">Open' in row
        assert "10:11:12 UTC" in row and "<td>1</td>" in row and "SMTP 451" in row
        warehouse = re.search(r'<tr data-provider="warehouse">(.*?)</tr>', html, re.S).group(1)
        assert 'data-state="closed">Closed' in warehouse
