"""A database that is away (restarting, failing over) is a 503 with Retry-After, never a 500.

The real thing, PostgreSQL restarted under 100 checkouts, is
tests/integration/test_database_restart.py; here the database error is raised where a view meets it.
"""

import contextlib
from unittest import mock

import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client

from tests.factories import checkout_payload

# runserver and the integration stacks run with DEBUG on, production with it off: django-ninja
# handles exceptions differently in each.
pytestmark = pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])


@pytest.fixture
def client(settings, debug):
    settings.DEBUG = debug
    return Client(raise_request_exception=False)


@contextlib.contextmanager
def place_order_raising(error: Exception):
    with mock.patch("orders.services.order_place", side_effect=error):
        yield


def test_a_checkout_answers_503_with_a_message_when_the_database_is_away(client):
    with place_order_raising(OperationalError("connection to server failed: Connection refused")):
        response = client.post(
            "/api/orders/", checkout_payload(("SKU-1", 1)), content_type="application/json"
        )
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["code"] == "database_unavailable"
    assert "cannot reach its database" in response.json()["detail"]
    assert response["X-Request-ID"]


def test_a_connection_closed_under_the_request_is_a_503_too(client):
    with place_order_raising(InterfaceError("the connection is closed")):
        response = client.post(
            "/api/orders/", checkout_payload(("SKU-1", 1)), content_type="application/json"
        )
    assert response.status_code == 503


def test_a_page_answers_503_with_a_short_page(client):
    with mock.patch("shop.selectors.category_list", side_effect=OperationalError("terminating")):
        response = client.get("/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("text/html")
    assert b"try again in a few seconds" in response.content


def test_other_errors_are_not_disguised_as_a_503(client):
    with place_order_raising(RuntimeError("a bug")):
        response = client.post(
            "/api/orders/", checkout_payload(("SKU-1", 1)), content_type="application/json"
        )
    assert response.status_code == 500
