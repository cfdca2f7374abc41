"""Follow-ups in the admin: each shows the id Flower's task arguments carry, and its last change."""

import re

import pytest

from follow_ups.models import FollowUp
from tests.factories import ProductFactory, place_order

pytestmark = pytest.mark.django_db


def test_the_follow_up_list_shows_each_rows_id_and_finds_a_row_by_it(admin_client):
    order = place_order((ProductFactory(), 1)).order
    invoice = FollowUp.objects.get(label=order.number, kind="invoice")

    listing = admin_client.get("/admin/follow_ups/followup/").content.decode()
    found = admin_client.get(f"/admin/follow_ups/followup/?q=%5B{invoice.pk}%5D").content.decode()

    assert "column-id" in listing  # the first column
    link = rf'<a href="/admin/follow_ups/followup/{invoice.pk}/change/[^"]*">{invoice.pk}</a>'
    assert re.search(link, found)
    assert "1 result" in found  # not every row whose key holds the digits


def test_a_follow_up_page_shows_its_id_and_when_it_last_changed(admin_client):
    order = place_order((ProductFactory(), 1)).order
    invoice = FollowUp.objects.get(label=order.number, kind="invoice")

    page = admin_client.get(f"/admin/follow_ups/followup/{invoice.pk}/change/").content.decode()

    assert f'<div class="readonly">{invoice.pk}</div>' in page
    assert "Updated at" in page


def test_the_admin_carries_the_shops_own_title(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert "<title>Orders, follow-ups and jobs | Celery Shop admin</title>" in page
    assert "Celery Shop administration" in page
    assert "Django administration" not in page


def test_the_follow_up_list_keeps_times_and_order_numbers_on_one_line_and_shortens_errors(
    admin_client,
):
    order = place_order((ProductFactory(), 1)).order
    FollowUp.objects.filter(label=order.number, kind="warehouse_sync").update(
        status="dead", last_error="WarehouseUnavailable: HTTP 503: " + "x" * 400
    )

    listing = admin_client.get("/admin/follow_ups/followup/").content.decode()

    assert "follow_ups/admin.css" in listing
    assert "Next attempt at" in listing
    errors = re.findall(r'<td class="field-error_summary">([^<]*)</td>', listing)
    (error,) = [error for error in errors if error.startswith("WarehouseUnavailable")]
    assert len(error) == 160 and error.endswith("…")
