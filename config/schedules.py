"""Every recurring job, defined once, here. ``manage.py sync_schedules`` writes them to the
django-celery-beat tables, where the ``DatabaseScheduler`` reads them and the admin can edit them.

All times are UTC (``CELERY_TIMEZONE``). Every entry carries ``expires``: a run that waited longer
than that in the queue (beat was down, workers were busy) is dropped instead of piling up.
"""

from scheduling.schedules import HOUR, MINUTE, Schedule

SCHEDULES = [
    Schedule(
        name="cleanup",
        task="orders.tasks.cleanup_task",
        queue="bulk",
        cron={"minute": "7"},
        expires=30 * MINUTE,
        description="Delete expired sessions and finished failed-checkout windows.",
    ),
    Schedule(
        name="retention",
        task="orders.tasks.retention_task",
        queue="bulk",
        cron={"minute": "40", "hour": "3"},
        expires=6 * HOUR,
        description="Prune what grows with orders and time past its retention, a chunk per "
        "transaction: succeeded follow-ups, old dead letters, delivery logs no follow-up can "
        "need, spent payment attempts, idempotency keys, job runs, task results, carts.",
    ),
    Schedule(
        name="sales-report",
        task="orders.tasks.sales_report_task",
        queue="bulk",
        cron={"minute": "15", "hour": "1"},
        expires=6 * HOUR,
        description="Yesterday's sales per product as CSV: stored, with its staff emails as "
        "follow-ups.",
    ),
    Schedule(
        name="low-stock-alert",
        task="shop.tasks.low_stock_alert_task",
        queue="default",
        cron={"minute": "*/10"},
        expires=5 * MINUTE,
        description="Open an alert per product whose stock fell under the threshold; write its "
        "staff emails as follow-ups (one per recipient).",
    ),
    Schedule(
        name="dead-letter-digest",
        task="follow_ups.tasks.dead_letter_digest_task",
        queue="default",
        cron={"minute": "0"},
        expires=30 * MINUTE,
        description="List the dead letters no digest has listed yet; write the digest emails as "
        "follow-ups (one per recipient).",
    ),
    Schedule(
        name="warehouse-reconciliation",
        task="orders.tasks.warehouse_reconciliation_task",
        queue="default",
        cron={"minute": "*/5"},
        expires=4 * MINUTE,
        description="Read the warehouse's shipped feed from the stored cursor, in chunks; mark those "
        "orders shipped and write each one's shipped-email follow-up.",
    ),
    Schedule(
        name="cart-reminders",
        task="orders.tasks.cart_reminders_task",
        queue="default",
        cron={"minute": "*/10"},
        expires=5 * MINUTE,
        description="Write one reminder follow-up per cart untouched for "
        "CART_REMINDER_AFTER_HOURS.",
    ),
    Schedule(
        name="review-requests",
        task="orders.tasks.review_requests_task",
        queue="bulk",
        cron={"minute": "30"},
        expires=30 * MINUTE,
        description="Write the review-request follow-up of each order shipped "
        "REVIEW_REQUEST_AFTER_DAYS ago.",
    ),
    Schedule(
        name="ops-queue-sample",
        task="ops.tasks.queue_sample_task",
        queue="critical",
        every=30,
        expires=30,
        # Queue depth exists only when asked; a sample missed is a gap in a chart, nothing more.
        run_key=False,
        description="Sample each queue's depth and oldest wait for the charts on /ops/.",
    ),
]

SCHEDULES_BY_NAME = {schedule.name: schedule for schedule in SCHEDULES}
