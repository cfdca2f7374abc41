"""The Celery app: configuration comes from Django settings under the ``CELERY_`` namespace."""

import os

import celery.worker.consumer
from celery import Celery
from celery.signals import task_postrun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_postrun.connect(weak=False, dispatch_uid="config-close-old-connections")
def close_old_database_connections(**kwargs) -> None:
    """After each task, what Django does after each request: drop broken or expired connections."""
    close_old_connections()


def events_connection(app: Celery, url=None, heartbeat=None):
    """The connection a worker sends its task events on, without publisher confirms.

    Production publishes with confirms (``confirm_publish``) so that no follow-up's message is
    lost unseen. Task events are monitoring (Flower, the ops views): waiting for a confirm on each
    of them only stalls the worker's event loop between tasks, and one lost in a broker failover
    costs a line in Flower, not a follow-up.
    """
    return app.connection_for_write(
        url=url, heartbeat=heartbeat, transport_options={"confirm_publish": False}
    )


class Consumer(celery.worker.consumer.Consumer):
    """The worker's consumer; only its task events' connection differs (``events_connection``)."""

    def connection_for_write(self, url=None, heartbeat=None):
        # Celery's worker uses this for its event dispatcher only (celery/worker/consumer/events.py).
        return self.ensure_connected(events_connection(self.app, url=url, heartbeat=heartbeat))
