"""Celery entry points for the follow-ups. Each takes a follow-up id and runs one service.

What is transient (timeouts, connection errors, 5xx/429, SMTP 4xx) is retried with backoff; anything
else, and the last attempt, makes the follow-up a dead letter. Celery's own retry counter is not used:
attempts are counted on the row, where operators can see them (hence ``max_retries=None``). The row
is the result, too: status, attempts, last error. So the follow-up tasks store no result of their
own, except a failure (``CELERY_TASK_STORE_ERRORS_EVEN_IF_IGNORED``): a poison message has no row.
"""

import logging
from collections.abc import Callable

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError

from notifications.services import EmailTemporaryFailure
from orders import jobs, recurring, services
from orders.warehouse import WarehouseUnavailable

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (
    EmailTemporaryFailure,
    WarehouseUnavailable,
    SoftTimeLimitExceeded,
    OperationalError,
)


def _run_follow_up(task: Task, follow_up_id: int, perform: Callable[..., dict]) -> dict:
    follow_up = services.follow_up_claim(follow_up_id=follow_up_id, task_id=task.request.id)
    if follow_up is None:
        # Already done, being done, dead, or deleted: a duplicate delivery does nothing.
        return {"skipped": True}
    try:
        result = perform(order=follow_up.order)
    except TRANSIENT_ERRORS as exc:
        error = f"{type(exc).__name__}: {exc}"
        if follow_up.attempts >= settings.FOLLOW_UP_MAX_ATTEMPTS:
            services.follow_up_bury(
                follow_up=follow_up, error=f"gave up after {follow_up.attempts} attempts: {error}"
            )
            raise
        delay = services.retry_delay_seconds(
            attempt=follow_up.attempts, retry_after=getattr(exc, "retry_after", None)
        )
        services.follow_up_retry_later(follow_up=follow_up, error=error, delay_seconds=delay)
        raise task.retry(exc=exc, countdown=delay) from exc
    except Exception as exc:
        services.follow_up_bury(follow_up=follow_up, error=f"{type(exc).__name__}: {exc}")
        raise
    services.follow_up_succeed(follow_up=follow_up, result=result)
    return result


@shared_task(bind=True, max_retries=None, ignore_result=True)
def confirmation_email_task(self: Task, follow_up_id: int) -> dict:
    return _run_follow_up(self, follow_up_id, services.confirmation_email_send)


@shared_task(bind=True, max_retries=None, ignore_result=True)
def warehouse_sync_task(self: Task, follow_up_id: int) -> dict:
    return _run_follow_up(self, follow_up_id, services.shipment_create)


@shared_task(bind=True, max_retries=None, ignore_result=True)
def invoice_render_task(self: Task, follow_up_id: int) -> dict:
    return _run_follow_up(self, follow_up_id, services.invoice_create)


@shared_task(soft_time_limit=20, time_limit=30)
def follow_up_relay_task() -> dict:
    report = services.follow_up_relay()
    return {"published": report.published, "recovered": report.recovered, "failed": report.failed}


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
