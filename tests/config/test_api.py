"""The API's own plumbing (config/api.py): its docs in production, a body over the size limit."""

import json

import pytest
from django.test import Client

from orders.models import Order
from tests.factories import ProductFactory, checkout_payload

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/docs", "/api/openapi.json"])
def test_in_production_the_api_docs_are_for_staff(client, admin_client, settings, path):
    settings.OPS_DIAGNOSTICS_PUBLIC = False  # production's value

    anonymous = client.get(path)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/")
    assert admin_client.get(path).status_code == 200


def test_in_development_the_api_docs_are_open(client, settings):
    settings.OPS_DIAGNOSTICS_PUBLIC = True
    assert client.get("/api/docs").status_code == 200


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_a_body_over_the_size_limit_is_413_with_a_message_never_500(settings, debug):
    """Under DEBUG, django-ninja answers any exception with a 500 and a traceback."""
    settings.DEBUG = debug
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = checkout_payload((ProductFactory().sku, 1)) | {"name": "A" * 20_000}

    response = Client(raise_request_exception=False).post(
        "/api/orders/", json.dumps(body), content_type="application/json"
    )

    assert response.status_code == 413
    assert response.json() == {
        "detail": "The request body is larger than 10000 bytes.",
        "code": "request_too_large",
    }
    assert not Order.objects.exists()
