"""One look at the whole: every page, a customer's and a staff member's, at 1280 px and at 390 px,
in a real browser (Playwright driving Debian's Chromium). Each is checked by axe-core (vendored in
tests/browser/vendor/, MPL-2.0) for serious and critical accessibility violations, and screenshotted;
``make screenshots`` (UPDATE_SCREENSHOTS=1) keeps the pictures in docs/screenshots/ as
``<page>-<width>.png``. A few things only a layout shows are measured on the way: no request for a
missing file (the favicon), a checkbox at its label's first line, the admin's follow-up list with
its headings whole and its order numbers on one line.
"""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from follow_ups.models import FollowUp
from notifications.services import email_unsubscribe_url
from tests.factories import ProductFactory, place_order

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.once]

AXE = Path(__file__).parent / "vendor" / "axe-4.14.1.min.js"
WIDTHS = (1280, 390)
RUN_AXE = """async () => {
  const results = await axe.run(document, {
    runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
  });
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.slice(0, 5).map(node => node.target.join(' ')),
  }));
}"""
# A checkbox and its label: the box must sit left of the label, level with its first line.
CHECKBOX_AND_LABEL = """() => {
  const box = document.querySelector('#id_remind_me').getBoundingClientRect();
  const label = document.querySelector('label[for=id_remind_me]');
  const range = document.createRange();
  range.selectNodeContents(label);
  const firstLine = range.getClientRects()[0];
  return {boxRight: box.right, labelLeft: label.getBoundingClientRect().left,
          boxCentre: box.top + box.height / 2, lineTop: firstLine.top, lineBottom: firstLine.bottom,
          labelLines: Math.round(label.getBoundingClientRect().height / firstLine.height)};
}"""
# Columns hidden behind a sideways scroll, headings cut off inside their cell, and order numbers
# (the Label column) or times broken over lines.
ADMIN_LIST = """() => ({
  scrolled: [...document.querySelectorAll('.results')]
    .filter(box => box.scrollWidth > box.clientWidth + 1).map(box => `${box.scrollWidth} > ${box.clientWidth}`),
  clipped: [...document.querySelectorAll('#result_list thead th')]
    .filter(th => th.scrollWidth > th.clientWidth + 1).map(th => th.textContent.trim()),
  wrapped: [...document.querySelectorAll('#result_list td.field-label, #result_list td.field-next_attempt, #result_list td.field-updated')]
    .filter(td => {
      const range = document.createRange();
      range.selectNodeContents(td);
      return new Set([...range.getClientRects()].map(line => Math.round(line.top))).size > 1;
    })
    .map(td => td.textContent.trim()),
})"""


def axe_violations(page) -> list[dict]:
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # through the debugger, so the page's CSP does not apply
    return page.evaluate(RUN_AXE)


@pytest.fixture
def shop_with_every_state(django_user_model):
    """A catalog with a sold-out product, and orders in the states a customer can meet."""
    django_user_model.objects.create_superuser("ops", "ops@example.com", "ops-password-123")
    seeds = ProductFactory(name="Butterhead lettuce seeds", price="1234.50", stock=50)
    sold_out = ProductFactory(name="Heirloom tomato seeds", price="4.20", stock=0)
    ProductFactory(name="Clay pot", price="12.50", stock=7)
    attention = place_order((seeds, 3), email="ann.longname@example.com").order
    rows = FollowUp.objects.filter(label=attention.number)
    rows.filter(kind="confirmation_email").update(
        status="dead", attempts=1, last_error="SMTPRecipientsRefused: 550 5.1.1 Mailbox unavailable"
    )
    rows.filter(kind="warehouse_sync").update(
        status="waiting", attempts=3, next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    rows.filter(kind="invoice").update(status="succeeded", attempts=1)
    return {"seeds": seeds, "sold_out": sold_out, "order": attention}


@pytest.mark.urls("tests.shop.urls_with_a_bug")  # the shop's URLs, and one whose view raises
def test_every_page_at_both_widths_has_no_serious_accessibility_violation(
    live_server, browser, screenshot, shop_with_every_state, settings
):
    settings.DEBUG = True  # as `make run` serves them: the 404 and 500 are still the shop's own
    seeds, sold_out, order = (shop_with_every_state[k] for k in ("seeds", "sold_out", "order"))
    unsubscribe = email_unsubscribe_url(email="ann.longname@example.com").split("/email/")[1]
    customer_pages = {
        "catalog": "/",
        "category": f"/category/{seeds.category.slug}/",
        "product": f"/products/{seeds.sku}/",
        "product-sold-out": f"/products/{sold_out.sku}/",
        "cart": "/cart/",
        "checkout": "/checkout/",
        "order": f"/orders/{order.pk}/",
        "not-found": "/orders/no-such-order/",
        "server-error": "/a-page-with-a-bug/",
        "unsubscribe": f"/email/{unsubscribe}",
    }
    staff_pages = {
        "ops": "/ops/",
        "failure-lab": "/ops/lab/",
        "admin-follow-ups": "/admin/follow_ups/followup/",
    }
    serious = {}
    for width in WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        missing = []
        page.on("response", lambda r, missing=missing: r.status == 404 and missing.append(r.url))
        try:
            page.goto(f"{live_server.url}/products/{seeds.sku}/")
            page.get_by_role("button", name="Add to cart").click()
            page.goto(f"{live_server.url}/admin/login/?next=/admin/")
            page.fill("#id_username", "ops")
            page.fill("#id_password", "ops-password-123")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url("**/admin/")
            for name, path in {**customer_pages, **staff_pages}.items():
                missing.clear()
                page.goto(f"{live_server.url}{path}")
                page.wait_for_load_state("networkidle")
                found = [v for v in axe_violations(page) if v["impact"] in ("serious", "critical")]
                if found:
                    serious[f"{name} at {width}"] = found
                expected = [f"{live_server.url}{path}"] if name == "not-found" else []
                assert missing == expected, (name, width, missing)  # the favicon is found, too
                if not name.startswith("admin"):  # Django's own pages are Django's
                    assert page.evaluate("document.documentElement.scrollWidth") <= width, name
                screenshot(page, f"{name}-{width}")
                if name in ("not-found", "server-error"):
                    text = page.locator("main").inner_text()
                    assert "We could not find that page" in text or "Something went wrong" in text
                    assert "URLconf" not in page.content() and "Traceback" not in page.content()
                if name == "checkout":
                    check_the_checkbox_sits_at_its_labels_first_line(page, width)
                if name == "admin-follow-ups":
                    check_the_follow_up_list_keeps_headings_and_numbers_whole(page, width)

            # The checkout sent back with a sentence beside each wrong part of the address.
            page.goto(f"{live_server.url}/checkout/")
            page.fill("#id_email", "ann@example.com")
            page.fill("#id_name", "Ann Example")
            page.fill("#id_line1", "x")
            page.fill("#id_city", "Amsterdam")
            page.fill("#id_postal_code", "!!!")
            page.fill("#id_card_number", "4242424242424242")
            page.get_by_role("button", name="place order").click()
            page.locator(".errorlist").first.wait_for()
            errors = page.locator(".field .errorlist").all_inner_texts()
            assert errors == [
                "Enter the street and house number, such as Kerkstraat 1.",
                "Enter a postal code as written in Netherlands, such as 1017 GA.",
            ]
            found = [v for v in axe_violations(page) if v["impact"] in ("serious", "critical")]
            if found:
                serious[f"checkout with errors at {width}"] = found
            screenshot(page, f"checkout-errors-{width}")
        finally:
            context.close()

    assert serious == {}, json.dumps(serious, indent=1)


def check_the_checkbox_sits_at_its_labels_first_line(page, width):
    geometry = page.evaluate(CHECKBOX_AND_LABEL)
    assert geometry["boxRight"] <= geometry["labelLeft"], (width, geometry)
    assert geometry["lineTop"] <= geometry["boxCentre"] <= geometry["lineBottom"], (width, geometry)
    if width == 390:
        assert geometry["labelLines"] >= 2, geometry  # the case that matters: a wrapped label


def check_the_follow_up_list_keeps_headings_and_numbers_whole(page, width):
    if width < 1280:
        return  # on a phone the admin's table scrolls sideways, as Django's admin does
    layout = page.evaluate(ADMIN_LIST)
    assert layout == {"scrolled": [], "clipped": [], "wrapped": []}, layout
