"""Celery entry points of the recurring and delayed jobs (the follow-ups run through
``follow_ups.tasks``). Scheduled in config/schedules.py.
"""

from celery import shared_task

from orders import jobs, recurring

# --- Recurring and delayed jobs ------------------------------------------------------------------
# Scheduled in config/schedules.py. Beat passes ``period`` (the slot it fired for); ``job_run``
# records the run and makes a second run for the same period a no-op.


@shared_task(soft_time_limit=300, time_limit=330)
def cleanup_task(period: str | None = None) -> dict:
    return jobs.job_run(job="cleanup", period=period, work=recurring.cleanup_run)


@shared_task(soft_time_limit=600, time_limit=660)
def sales_report_task(period: str | None = None) -> dict:
    day = recurring.sales_report_day(period=period)

    def work() -> dict:
        report = recurring.sales_report_create(day=day)
        return {"day": day.isoformat(), "orders": report.orders, "revenue": str(report.revenue)}

    return jobs.job_run(job="sales-report", period=period, work=work)


@shared_task(soft_time_limit=120, time_limit=150)
def low_stock_alert_task(period: str | None = None) -> dict:
    return jobs.job_run(job="low-stock-alert", period=period, work=recurring.low_stock_alerts_send)


@shared_task(soft_time_limit=120, time_limit=150)
def dead_letter_digest_task(period: str | None = None) -> dict:
    period = period or jobs.manual_period()
    return jobs.job_run(
        job="dead-letter-digest",
        period=period,
        work=lambda: recurring.dead_letter_digest_send(period=period),
    )


@shared_task(soft_time_limit=180, time_limit=210)
def warehouse_reconciliation_task(period: str | None = None) -> dict:
    return jobs.job_run(
        job="warehouse-reconciliation", period=period, work=recurring.warehouse_reconcile
    )


@shared_task(soft_time_limit=180, time_limit=210)
def cart_reminders_task(period: str | None = None) -> dict:
    return jobs.job_run(job="cart-reminders", period=period, work=recurring.cart_reminders_send)


@shared_task(soft_time_limit=180, time_limit=210)
def review_requests_task(period: str | None = None) -> dict:
    return jobs.job_run(job="review-requests", period=period, work=recurring.review_requests_send)
