"""The order in the admin: its follow-ups, read from the ledger, each linked to its row."""

import pytest

from follow_ups.models import FollowUp
from orders import services
from orders.models import Invoice
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
    assert "dead after 8 attempts HTTP 422: address cannot be delivered to" in page
    assert "pending after 0 attempts" in page and "attempt(s)" not in page


def test_the_order_admin_page_says_1_attempt_not_1_attempts(admin_client):
    order = place_order((ProductFactory(), 1)).order
    FollowUp.objects.filter(label=order.number, kind="invoice").update(
        status="succeeded", attempts=1
    )

    page = admin_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()

    assert "succeeded after 1 attempt " in page
    assert "1 attempts" not in page


def test_a_follow_up_row_opens_in_the_admin(admin_client):
    order = place_order((ProductFactory(), 1)).order
    follow_up = FollowUp.objects.get(label=order.number, kind="invoice")

    response = admin_client.get(f"/admin/follow_ups/followup/{follow_up.pk}/change/")

    assert response.status_code == 200
    assert order.number in response.content.decode()


def test_an_order_is_read_only_no_line_can_be_added_or_changed(admin_client):
    order = place_order((ProductFactory(), 1)).order
    (line,) = order.lines.all()
    url = f"/admin/orders/order/{order.pk}/change/"

    page = admin_client.get(url).content.decode()
    response = admin_client.post(
        url,
        {
            "lines-TOTAL_FORMS": "2",
            "lines-INITIAL_FORMS": "1",
            "lines-0-id": str(line.pk),
            "lines-0-quantity": "50",
            "lines-1-sku": "FREE-1",
            "lines-1-quantity": "5",
        },
    )

    assert 'name="_save"' not in page and 'value="Save"' not in page  # a page to read
    assert response.status_code == 403
    assert [(row.pk, row.quantity) for row in order.lines.all()] == [(line.pk, 1)]


def test_an_invoice_cannot_be_added_or_changed_in_the_admin(admin_client):
    order = place_order((ProductFactory(), 1)).order

    assert admin_client.get("/admin/orders/invoice/add/").status_code == 403
    assert (
        admin_client.post("/admin/orders/invoice/add/", {"order": str(order.pk)}).status_code == 403
    )
    assert not Invoice.objects.exists()


def test_an_order_cannot_be_added_from_an_empty_form(admin_client):
    assert admin_client.get("/admin/orders/order/add/").status_code == 403
    assert (
        "/admin/orders/order/add/" not in admin_client.get("/admin/orders/order/").content.decode()
    )


def test_the_order_admin_page_links_to_the_customers_page_ops_and_flower(admin_client, settings):
    settings.FLOWER_URL = "http://flower.example:5555"
    order = place_order((ProductFactory(), 1)).order

    page = admin_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()

    assert f'href="/orders/{order.pk}/" class="viewsitelink"' in page  # "View on site"
    assert f'<a href="/orders/{order.pk}/">the customer\'s page</a>' in page
    assert '<a href="/ops/">/ops/</a>' in page
    assert 'href="http://flower.example:5555/tasks"' in page
    assert f"search the tasks for {order.number}" in page


def test_the_invoice_list_shows_each_invoices_own_number(admin_client):
    order = place_order((ProductFactory(), 1)).order
    services.invoice_create(order=order)

    listing = admin_client.get("/admin/orders/invoice/").content.decode()

    assert "INV-000001" in listing
