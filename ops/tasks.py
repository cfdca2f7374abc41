"""Celery entry points of the ops app: beat samples the queues for the ops page's charts."""

from celery import shared_task

from ops import services


@shared_task(soft_time_limit=10, time_limit=20)
def queue_sample_task() -> int:
    return len(services.queue_samples_record())
