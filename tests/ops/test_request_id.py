"""Every web request has an id: the caller's if it is plain, a fresh one otherwise.

That the id then travels in task headers into the worker's log lines is proven on a real worker
in tests/integration/test_ops_with_a_worker.py.
"""

import pytest

pytestmark = pytest.mark.django_db


def test_a_plain_request_id_from_the_caller_is_kept_and_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "lb-1234abcd"})
    assert response["X-Request-ID"] == "lb-1234abcd"


def test_a_strange_request_id_is_replaced_with_a_fresh_one(client):
    response = client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert response["X-Request-ID"] != "<script>alert(1)</script>"
    assert len(response["X-Request-ID"]) == 32


def test_requests_without_an_id_get_different_ones(client):
    assert client.get("/healthz")["X-Request-ID"] != client.get("/healthz")["X-Request-ID"]
