"""The shop in a real browser (Playwright driving Debian's Chromium) with a real worker behind it.

A customer browses, adds to the cart, checks out, watches the order page turn ready without a reload
and opens the invoice; a staff member opens /ops/. Screenshots of the storefront, the order page and
the ops page are taken every run; ``make screenshots`` (UPDATE_SCREENSHOTS=1) keeps them in
docs/screenshots/ for the README. The browser and its pages come from tests/browser/conftest.py.
"""

import os
import re

import pytest
from django.core.management import call_command

from follow_ups.models import FollowUp
from ops import services
from tests.factories import ProductFactory, place_order
from tests.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.once]


def test_a_customer_buys_watches_the_order_turn_ready_and_opens_the_invoice(
    live_server, live_worker, page, screenshot
):
    call_command("seed_catalog", verbosity=0)

    page.goto(f"{live_server.url}/")
    page.get_by_role("heading", name="Everything for the kitchen garden").wait_for()
    screenshot(page, "storefront")

    page.get_by_role("link", name="Celery seeds").first.click()
    page.get_by_role("button", name="Add to cart").click()
    page.goto(f"{live_server.url}/cart/")
    page.get_by_role("link", name="Check out").click()
    page.fill("#id_email", "ann@example.com")
    page.fill("#id_name", "Ann Example")
    page.fill("#id_line1", "Kerkstraat 1")
    page.fill("#id_city", "Amsterdam")
    page.fill("#id_postal_code", "1017 GA")
    page.fill("#id_card_number", "4242424242424242")
    page.get_by_role("button", name="place order").click()

    page.wait_for_url("**/orders/*/")
    page.get_by_text("Order placed").or_(page.get_by_text("Order ready")).first.wait_for()
    # A marker on the window survives only if the page is never reloaded.
    page.evaluate("window.stillTheSamePage = true")
    page.locator('#order-progress[data-status="ready"]').wait_for()
    assert page.evaluate("window.stillTheSamePage") is True
    screenshot(page, "order-page")

    invoice_link = page.get_by_role("link", name="Download invoice (PDF)")
    invoice = page.request.get(f"{live_server.url}{invoice_link.get_attribute('href')}")
    assert invoice.status == 200
    assert invoice.headers["content-type"] == "application/pdf"
    assert invoice.body().startswith(b"%PDF")


def test_a_staff_member_opens_the_ops_page(
    live_server, live_worker, live_relay, page, screenshot, django_user_model
):
    django_user_model.objects.create_superuser("ops", "ops@example.com", "ops-password-123")
    call_command("seed_catalog", verbosity=0)
    call_command("simulate_orders", count=3, rate=50, stdout=open(os.devnull, "w"))  # noqa: SIM115
    poisoned = services.poison_order_place().order

    page.goto(f"{live_server.url}/ops/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops-password-123")
    page.get_by_role("button", name="Log in").click()

    page.get_by_role("heading", name="Operations").wait_for()
    page.locator('tr[data-row="critical"]').wait_for()
    for heading in ("Queue depth", "Throughput /min", "Retry rate", "Failure rate", "Dead letters"):
        assert page.get_by_role("columnheader", name=heading).first.is_visible()
    # htmx replaces the panel every 5 s; wait for a refresh that shows the worker online.
    page.locator('[data-metric="workers"]', has_text="1").wait_for(timeout=20_000)
    page.locator('[data-metric="relay"]', has_text=re.compile(r"ticked .+ ago")).wait_for(
        timeout=20_000
    )
    # The poison order's email is a dead letter by now, or by a later refresh.
    wait_until(
        lambda: FollowUp.objects.filter(label=poisoned.number, status="dead").exists(),
        timeout=30,
        message="the poison order's email to die",
    )
    page.locator('[data-metric="dead-letters"]', has_text="1").wait_for(timeout=20_000)
    screenshot(page, "ops-page")


# Each metrics table sits in a box that scrolls sideways when it must; on a desktop screen it must
# not have to: a column hidden behind that scrollbar (the dead letters) is a column nobody reads.
TABLES_CUT_OFF = """() => [...document.querySelectorAll('.table-scroll')]
  .filter(box => box.scrollWidth > box.clientWidth + 0.5)
  .map(box => `${box.scrollWidth} > ${box.clientWidth}`)"""
SPARKLINE_WIDTHS = """() => [...document.querySelectorAll('td.spark')].map(cell =>
  [cell.getBoundingClientRect().width, cell.querySelector('svg').getBoundingClientRect().width])"""
AXIS_LABELS_CUT_OFF = """() => [...document.querySelectorAll('.sparkline-times')]
  .filter(axis => axis.scrollWidth > axis.clientWidth + 0.5).length"""


@pytest.mark.parametrize("width", [1440, 1280, 390])
def test_the_ops_page_fits_the_screen_and_its_charts_fill_their_cells(
    live_server, browser, django_user_model, width
):
    django_user_model.objects.create_superuser("ops", "ops@example.com", "ops-password-123")
    order = place_order((ProductFactory(), 1)).order
    FollowUp.objects.filter(label=order.number, kind="warehouse_sync").update(
        status="dead",
        attempts=8,
        last_error="WarehouseUnavailable: HTTP 503: " + "{'error': 'outage', 'trace': 'x'}" * 12,
    )
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/ops/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", "ops-password-123")
        page.get_by_role("button", name="Log in").click()
        page.locator("table.metrics").first.wait_for()
        page.locator("table.failures", has_text="WarehouseUnavailable").wait_for()

        # The page never scrolls sideways; on a phone the tables scroll inside their own box.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        if width >= 1280:
            assert page.evaluate(TABLES_CUT_OFF) == []
        assert page.evaluate(AXIS_LABELS_CUT_OFF) == 0
        # The time axis is labelled once under each table's chart columns, not under every chart.
        assert page.locator("table.metrics tfoot .sparkline-times").count() == 5 + 3
        assert page.locator("table.metrics tbody .sparkline-times").count() == 0
        # Each chart fills its cell (less the cell's padding) and is wide enough to read.
        for cell, chart in page.evaluate(SPARKLINE_WIDTHS):
            assert chart >= 80 and cell - chart < 12, (cell, chart)

        page.goto(f"{live_server.url}/ops/lab/")  # the failure lab, its forms side by side or not
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        context.close()
