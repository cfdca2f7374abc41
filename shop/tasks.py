"""Celery entry point of the catalog's scheduled job (config/schedules.py)."""

from celery import shared_task

from scheduling.services import job_run
from shop import services


@shared_task(soft_time_limit=120, time_limit=150)
def low_stock_alert_task(period: str | None = None) -> dict:
    return job_run(job="low-stock-alert", period=period, work=services.low_stock_alerts_check)
