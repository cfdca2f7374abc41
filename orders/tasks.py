"""Celery entry points of the orders' recurring and delayed jobs (the follow-ups they write run
through ``follow_ups.tasks``). Scheduled in config/schedules.py; the low-stock alert is the
catalog's (``shop.tasks``), the dead-letter digest the engine's (``follow_ups.tasks``).
"""

from celery import shared_task

from orders import recurring, retention
from scheduling.services import job_run

# --- Recurring and delayed jobs ------------------------------------------------------------------
# Scheduled in config/schedules.py. Beat passes ``period`` (the slot it fired for); ``job_run``
# records the run and makes a second run for the same period a no-op. The jobs write follow-up
# rows; they send nothing themselves.


@shared_task(soft_time_limit=300, time_limit=330)
def cleanup_task(period: str | None = None) -> dict:
    return job_run(job="cleanup", period=period, work=recurring.cleanup_run)


# Chunks stop starting after RETENTION_RUN_MAX_SECONDS (25 min by default), inside these limits.
@shared_task(soft_time_limit=1800, time_limit=1860)
def retention_task(period: str | None = None) -> dict:
    return job_run(job="retention", period=period, work=retention.retention_prune)


@shared_task(soft_time_limit=600, time_limit=660)
def sales_report_task(period: str | None = None) -> dict:
    day = recurring.sales_report_day(period=period)

    def work() -> dict:
        report = recurring.sales_report_create(day=day)
        return {"day": day.isoformat(), "orders": report.orders, "revenue": str(report.revenue)}

    return job_run(job="sales-report", period=period, work=work)


@shared_task(soft_time_limit=180, time_limit=210)
def warehouse_reconciliation_task(period: str | None = None) -> dict:
    return job_run(
        job="warehouse-reconciliation", period=period, work=recurring.warehouse_reconcile
    )


@shared_task(soft_time_limit=180, time_limit=210)
def cart_reminders_task(period: str | None = None) -> dict:
    return job_run(job="cart-reminders", period=period, work=recurring.cart_reminders_create)


@shared_task(soft_time_limit=180, time_limit=210)
def review_requests_task(period: str | None = None) -> dict:
    return job_run(job="review-requests", period=period, work=recurring.review_requests_create)
