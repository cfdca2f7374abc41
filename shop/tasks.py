"""Celery entry point of the catalog's scheduled job (config/schedules.py)."""

from celery import shared_task

from shop import services


@shared_task(soft_time_limit=120, time_limit=150)
def low_stock_alert_task(period: str | None = None) -> dict:
    # shop never imports orders: this one import goes when the run records move to `scheduling`.
    from orders.jobs import job_run  # MERGE: scheduling.services

    return job_run(job="low-stock-alert", period=period, work=services.low_stock_alerts_check)
