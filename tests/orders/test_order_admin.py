"""The order in the admin: its follow-ups, read from the ledger, each linked to its row."""

import pytest

from follow_ups.models import FollowUp
from tests.factories import ProductFactory, place_order

pytestmark = pytest.mark.django_db


def test_the_order_admin_page_links_each_of_its_follow_ups(admin_client):
    order = place_order((ProductFactory(), 1)).order
    FollowUp.objects.filter(label=order.number, kind="warehouse_sync").update(
        status="dead", attempts=8, last_error="HTTP 422: address cannot be delivered to"
    )

    page = admin_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()

    for follow_up in FollowUp.objects.filter(label=order.number):
        assert f'<a href="/admin/follow_ups/followup/{follow_up.pk}/change/">' in page
        assert f"#{follow_up.pk} {follow_up.kind_label}</a>" in page
    assert "dead after 8 attempt(s) HTTP 422: address cannot be delivered to" in page


def test_a_follow_up_row_opens_in_the_admin(admin_client):
    order = place_order((ProductFactory(), 1)).order
    follow_up = FollowUp.objects.get(label=order.number, kind="invoice")

    response = admin_client.get(f"/admin/follow_ups/followup/{follow_up.pk}/change/")

    assert response.status_code == 200
    assert order.number in response.content.decode()
