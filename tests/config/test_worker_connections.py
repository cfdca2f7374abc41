"""Workers keep their database connection between tasks, as the web keeps it between requests."""

import time

import pytest
from celery.signals import task_postrun
from django.db import connection

from config.celery import app


@pytest.mark.django_db(transaction=True)
def test_after_a_task_a_worker_keeps_its_connection_until_conn_max_age():
    # A fresh connection: one an earlier test opened may be past CONN_MAX_AGE already.
    connection.close()
    connection.ensure_connection()
    task_postrun.send(sender=None)
    # SQLite's connections are not kept (CONN_MAX_AGE 0); PostgreSQL's live for CONN_MAX_AGE.
    kept = connection.settings_dict["CONN_MAX_AGE"] > 0
    assert (connection.connection is not None) == kept


@pytest.mark.django_db(transaction=True)
def test_after_a_task_an_expired_connection_is_closed():
    connection.ensure_connection()
    connection.close_at = time.monotonic() - 1
    task_postrun.send(sender=None)
    assert connection.connection is None


def test_celerys_django_fixup_does_not_close_the_connections_around_every_task():
    # Without a reuse count the fixup closes every connection before and after each task.
    assert app.conf.db_reuse_max >= 100
