"""Task events (monitoring) are published without confirms; follow-ups' messages keep them."""

import pytest
from celery.worker.consumer import events as celery_events

from config.celery import Consumer, app, events_connection


def test_the_worker_runs_the_shops_consumer():
    assert app.conf.worker_consumer == "config.celery:Consumer"


def test_celerys_event_step_asks_the_consumer_for_its_connection():
    # What Consumer.connection_for_write relies on: the Events step, and only it, calls it.
    assert "connection_for_write" in celery_events.Events.start.__code__.co_names
    assert Consumer.connection_for_write.__qualname__ == "Consumer.connection_for_write"


@pytest.mark.parametrize("confirmed", [True, False])
def test_the_events_connection_never_waits_for_confirms_whatever_the_publishes_do(confirmed):
    kept = app.conf.broker_transport_options
    app.conf.broker_transport_options = {"confirm_publish": confirmed, "other": 1}
    try:
        events = events_connection(app)
        publishes = app.connection_for_write()
        assert events.transport_options == {"confirm_publish": False, "other": 1}
        assert publishes.transport_options["confirm_publish"] is confirmed
    finally:
        app.conf.broker_transport_options = kept
