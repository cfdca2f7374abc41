"""No order access token in a log line (docs/reliability.md, "Security"). gunicorn's access log is
tested on the real production processes (tests/integration/test_production_processes.py); these
check the development server's access lines and Django's own warnings, through the configured
handlers."""

import io
import logging
import uuid

import pytest

from tests.factories import ProductFactory, place_order


@pytest.fixture
def console():
    """What the configured console handler writes."""
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


@pytest.mark.django_db
def test_runserver_access_lines_carry_no_order_id(console, client):
    order = place_order((ProductFactory(), 1)).order
    # What runserver's request handler logs for each request.
    logging.getLogger("django.server").info(
        '"%s" %s %s', f"GET /orders/{order.pk}/ HTTP/1.1", 200, 5120
    )
    written = console.getvalue()
    assert '"GET /orders/<redacted>/ HTTP/1.1" 200 5120' in written
    assert str(order.pk) not in written


@pytest.mark.django_db
def test_a_not_found_warning_carries_no_order_id(console, client):
    unknown = uuid.uuid4()
    assert client.get(f"/orders/{unknown}/").status_code == 404
    written = console.getvalue()
    assert "Not Found: /orders/<redacted>/" in written
    assert str(unknown) not in written and unknown.hex not in written


def test_an_order_path_without_dashes_is_redacted_and_request_ids_are_not(console):
    order_id = uuid.uuid4()
    request_id = uuid.uuid4().hex
    logging.getLogger("django.server").info(
        '"GET /orders/%s/ HTTP/1.1" 404 179 request_id=%s', order_id.hex, request_id
    )
    written = console.getvalue()
    assert "/orders/<redacted>/" in written and order_id.hex not in written
    assert f"request_id={request_id}" in written  # logs are grepped for it


def test_task_ids_stay_greppable(console):
    task_id = str(uuid.uuid4())
    order_id = uuid.uuid4()
    logging.getLogger("jobs").info('{"task_id": "%s", "subject": "order:%s"}', task_id, order_id)
    logging.getLogger("django.server").info("task %s done", task_id)
    written = console.getvalue()
    assert f"task {task_id} done" in written
