"""The baseline task: Celery's own cost per task on the same broker, settings and worker."""

from celery import shared_task


@shared_task
def noop_task(number: int) -> int:
    return number
