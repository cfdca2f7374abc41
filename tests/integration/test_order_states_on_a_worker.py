"""The customer's final states, reached through real failures on a real worker: the order page
and the API say what a dead follow-up means for the customer, never the error itself."""

import json
import re

import pytest

from follow_ups.models import FollowUp
from orders.services import order_subject
from tests.factories import ProductFactory, checkout_payload
from tests.processes import wait_until

pytestmark = pytest.mark.integration


def test_a_confirmation_the_mail_server_refuses_for_good_leaves_the_order_needing_our_attention(
    live_worker, client, smtp_server
):
    smtp_server.refuse_recipient("nobody@example.com", "550 5.1.1 Mailbox unavailable")
    response = client.post(
        "/api/orders/",
        data=json.dumps(checkout_payload((ProductFactory().sku, 1), email="nobody@example.com")),
        content_type="application/json",
    )
    assert response.status_code == 201
    order = response.json()

    def settled():
        body = client.get(f"/api/orders/{order['id']}/").json()
        statuses = {f["kind"]: f["status"] for f in body["follow_ups"]}
        return body if set(statuses.values()) <= {"succeeded", "dead"} else None

    body = wait_until(settled, timeout=45, interval=0.2, message="every follow-up to finish")

    assert body["status"] == "needs_attention"
    assert {f["kind"]: (f["status"], f["attempts"]) for f in body["follow_ups"]} == {
        "confirmation_email": ("dead", 1),
        "warehouse_sync": ("succeeded", 1),
        "invoice": ("succeeded", 1),
    }
    assert smtp_server.confirmations(order["number"]) == []
    # Staff see the server's reply on the row (admin, /ops/); the customer does not.
    dead = FollowUp.objects.get(subject=order_subject(order["id"]), kind="confirmation_email")
    assert "550" in dead.last_error

    page = client.get(f"/orders/{order['id']}/").content.decode()
    assert "Needs our attention" in page
    assert "We could not email your confirmation to nobody@example.com." in page
    assert "Our team has been told and is on it" in page
    assert re.search(r"We could not deliver it; our team is on it\s*<", page)
    assert "hx-trigger" not in page  # nothing in flight: the page stops polling
    for internal in ("550", "Mailbox unavailable", "SMTPRecipientsRefused", "EmailPermanent"):
        assert internal not in page
