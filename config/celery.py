"""The Celery app: configuration comes from Django settings under the ``CELERY_`` namespace."""

import os

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
