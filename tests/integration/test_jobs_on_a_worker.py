"""Recurring jobs on a real worker: one delivered twice for the same period runs once."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import current_app
from django.contrib.auth import get_user_model
from django_celery_results.models import TaskResult

from orders.models import JobRun
from tests.factories import ProductFactory
from tests.processes import wait_until

pytestmark = pytest.mark.integration


def test_a_job_delivered_twice_for_one_period_runs_once_on_the_worker(live_worker, smtp_server):
    get_user_model().objects.create_user("ops", "ops@example.com", "x", is_staff=True)
    product = ProductFactory(name="Clay pot", stock=0)
    period = "2030-05-04T12:10:00+00:00"

    with ThreadPoolExecutor(2) as pool:
        sent = list(
            pool.map(
                lambda _: current_app.send_task(
                    "orders.tasks.low_stock_alert_task", kwargs={"period": period}
                ),
                range(2),
            )
        )

    def finished():
        rows = TaskResult.objects.filter(task_id__in=[r.id for r in sent], status="SUCCESS")
        return rows.count() == 2 and [json.loads(r) for r in rows.values_list("result", flat=True)]

    results = wait_until(finished, timeout=30, message="both deliveries to finish")
    assert sorted(bool(r.get("skipped")) for r in results) == [False, True]
    run = JobRun.objects.get(job="low-stock-alert", period=period)
    assert (run.outcome, run.counts["notified"]) == ("succeeded", 1)
    assert len(smtp_server.for_subject(f"Low stock: Clay pot ({product.sku})")) == 1
