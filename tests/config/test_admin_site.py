"""The admin as a whole: no add page of the shop's own apps makes a row out of an empty form.

A row the shop's code writes (an order, an invoice, a follow-up, an email delivery, a job run) is
not added by hand: its add page answers 403. Every other add page answers an empty form with its
errors (200), never with a new row (302) or a server error (500).
"""

import pytest
from django.contrib import admin
from django.test import Client

pytestmark = pytest.mark.django_db

OWN_APPS = {"shop", "orders", "follow_ups", "notifications", "scheduling", "ops", "devtools"}
WRITTEN_BY_THE_SHOP = {
    "orders.order",
    "orders.invoice",
    "orders.salesreport",
    "orders.ordershipment",
    "orders.abandonedcart",
    "follow_ups.followup",
    "follow_ups.relaystate",
    "notifications.emaildelivery",
    "notifications.outboxmessage",
    "scheduling.jobrun",
    "scheduling.lease",
    "shop.lowstockalert",
}


def test_no_add_page_makes_a_row_from_an_empty_form(admin_user):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    answers = {}
    for model in admin.site._registry:
        if model._meta.app_label not in OWN_APPS:
            continue
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/add/"
        answers[model._meta.label_lower] = (
            client.get(url).status_code,
            client.post(url).status_code,
        )

    assert set(answers) >= WRITTEN_BY_THE_SHOP
    for label, answer in answers.items():
        assert answer == ((403, 403) if label in WRITTEN_BY_THE_SHOP else (200, 200)), label


def test_an_email_delivery_cannot_be_marked_sent_by_hand(admin_client):
    from notifications.models import EmailDelivery

    delivery = EmailDelivery.objects.create(
        purpose_key="order-1-confirmation",
        recipient="ann@example.com",
        message_id="<order-1@example.com>",
        status="sending",
        attempts=1,
    )

    response = admin_client.post(
        f"/admin/notifications/emaildelivery/{delivery.pk}/change/", {"status": "sent"}
    )

    assert response.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == "sending"
    page = admin_client.get(f"/admin/notifications/emaildelivery/{delivery.pk}/change/")
    assert page.status_code == 200  # still there to read
