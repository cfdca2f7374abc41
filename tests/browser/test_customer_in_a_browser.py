"""The customer's side in a real browser (Playwright driving Debian's Chromium): the order's final
states as the customer sees them, the cart's stock messages, and every page on a 390 px phone.

The browser, its pages and screenshots come from tests/browser/conftest.py.
"""

import re

import pytest

from follow_ups.models import FollowUp
from notifications.services import email_send, email_unsubscribe_url
from orders.models import Order
from tests.factories import ProductFactory, place_order

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.once]

# Every element's box must lie within the viewport: a table spilling out of its card, or a header
# pushed wider, shows up here even when the page itself hides the overflow.
OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  return [...document.querySelectorAll('body *')].filter(element => {
    const box = element.getBoundingClientRect();
    return box.width > 0 && (box.right > width + 0.5 || box.left < -0.5);
  }).map(element => `${element.tagName.toLowerCase()}.${element.className} ${Math.round(element.getBoundingClientRect().right)}`);
}"""

# How far apart, vertically, the header's brand and links sit (0 when they share one line).
HEADER_LINE_TOPS = """() => {
  const centres = [...document.querySelectorAll('.site-header a')].map(link => {
    const box = link.getBoundingClientRect();
    return box.top + box.height / 2;
  });
  return Math.max(...centres) - Math.min(...centres);
}"""


def fill_checkout(page, email="ann@example.com"):
    page.fill("#id_email", email)
    page.fill("#id_name", "Ann Example")
    page.fill("#id_line1", "Kerkstraat 1")
    page.fill("#id_city", "Amsterdam")
    page.fill("#id_postal_code", "1017 GA")
    page.fill("#id_card_number", "4242424242424242")


def messages(page) -> list[str]:
    return [text.strip() for text in page.locator(".messages .message").all_inner_texts()]


def test_an_order_whose_confirmation_is_refused_needs_our_attention_and_stops_polling(
    live_server, live_worker, page, screenshot, smtp_server
):
    smtp_server.refuse_recipient("nobody@example.com", "550 5.1.1 Mailbox unavailable")
    product = ProductFactory(name="Celery seeds", price="3.50", stock=10)

    page.goto(f"{live_server.url}/products/{product.sku}/")
    page.get_by_role("button", name="Add to cart").click()
    page.get_by_role("link", name="Check out").click()
    fill_checkout(page, email="nobody@example.com")
    page.get_by_role("button", name="place order").click()
    page.wait_for_url("**/orders/*/")

    polls = []
    page.on(
        "request",
        lambda request: polls.append(request.url) if request.headers.get("hx-request") else None,
    )
    page.locator('#order-progress[data-status="needs_attention"]').wait_for()
    # Wait until nothing is in flight (the warehouse sync and invoice succeed): polling ends.
    page.locator("#order-progress:not([hx-trigger])").wait_for()
    state = page.locator("#order-state")
    assert state.get_attribute("role") == "status"
    assert state.get_attribute("aria-live") == "polite"
    assert "Needs our attention" in state.inner_text()
    assert "We could not email your confirmation to nobody@example.com." in state.inner_text()
    text = page.locator("main").inner_text()
    row = page.locator('tr[data-kind="confirmation_email"]').inner_text()
    assert "Confirmation email" in row and "Needs our attention" in row
    assert "We could not deliver it; our team is on it" in row
    assert "ttempt" not in text and "dead" not in text
    for internal in ("550", "Mailbox unavailable", "SMTPRecipientsRefused"):
        assert internal not in text
    screenshot(page, "order-needs-attention")

    asked = len(polls)
    page.wait_for_timeout(5_000)
    assert len(polls) == asked  # nothing in flight: the page asks no more
    assert smtp_server.for_subject("confirmed") == []


def test_a_delayed_order_says_so_and_turns_ready_in_its_live_region_without_a_reload(
    live_server, page
):
    order = place_order((ProductFactory(), 1)).order
    rows = FollowUp.objects.filter(label=order.number)
    rows.filter(kind="confirmation_email").update(
        status="retrying", attempts=1, last_error="EmailTemporaryFailure: SMTP 451 busy"
    )
    rows.exclude(kind="confirmation_email").update(status="succeeded", attempts=1)

    page.goto(f"{live_server.url}/orders/{order.pk}/")
    state = page.locator("#order-state")
    assert "Delayed" in state.inner_text()
    assert "We will keep trying; there is nothing you need to do." in state.inner_text()
    assert "Taking longer than usual; we keep trying" in page.locator("main").inner_text()
    assert "retrying" not in page.locator("main").inner_text()
    assert "451" not in page.locator("main").inner_text()
    # Markers survive only if neither the page nor its live region is replaced.
    page.evaluate("window.stillTheSamePage = true")
    page.evaluate("document.getElementById('order-state').stillTheSameRegion = true")

    rows.filter(kind="confirmation_email").update(status="succeeded", attempts=2, last_error="")

    page.locator('#order-progress[data-status="ready"]').wait_for()
    page.locator("#order-state", has_text="Order ready").wait_for()
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.evaluate("document.getElementById('order-state').stillTheSameRegion") is True


def test_the_cart_caps_what_it_cannot_sell_and_checkout_keeps_what_was_typed(live_server, page):
    product = ProductFactory(name="Clay pot", price="1250.00", stock=15)

    page.goto(f"{live_server.url}/products/{product.sku}/")
    page.fill("#quantity", "99")
    page.get_by_role("button", name="Add to cart").click()
    page.wait_for_url("**/cart/")
    assert messages(page) == ["Only 15 of Clay pot in stock, so your cart has 15."]
    assert page.get_by_label("Quantity of Clay pot").input_value() == "15"
    assert "€\u00a018,750.00" in page.locator("main").inner_text()

    page.get_by_label("Quantity of Clay pot").fill("-1")
    page.get_by_role("button", name="Update").click()
    assert messages(page) == ["A quantity cannot be negative. Clay pot was not changed."]

    page.get_by_role("link", name="Check out").click()
    fill_checkout(page)
    product.stock = 2  # another shopper bought most of them while this form was filled in
    product.save()
    page.get_by_role("button", name="place order").click()

    assert page.url == f"{live_server.url}/checkout/"
    assert messages(page) == ["Only 2 of Clay pot in stock, so your cart has 2."]
    assert page.input_value("#id_email") == "ann@example.com"
    assert page.input_value("#id_line1") == "Kerkstraat 1"
    assert page.input_value("#id_card_number") == ""  # never written back into a page
    assert not Order.objects.exists()
    page.fill("#id_card_number", "4242424242424242")

    page.get_by_role("button", name="Pay €\u00a02,500.00 and place order").click()
    page.wait_for_url("**/orders/*/")
    assert [line.quantity for line in Order.objects.get().lines.all()] == [2]


@pytest.mark.urls("tests.shop.urls_with_a_bug")  # the shop's URLs, and one whose view raises
def test_every_page_fits_a_390_px_phone(live_server, phone_page, screenshot, settings):
    seeds = ProductFactory(name="Butterhead lettuce seeds", price="1234.50", stock=50)
    order = place_order(
        (seeds, 3),
        (ProductFactory(name="Cherry tomato seeds"), 2),
        email="ann.longname@example.com",
    ).order
    rows = FollowUp.objects.filter(label=order.number)
    rows.filter(kind="warehouse_sync").update(status="dead", attempts=8)
    rows.filter(kind="invoice").update(status="succeeded", attempts=1)
    rows.filter(kind="confirmation_email").update(status="retrying", attempts=3)
    page = phone_page

    page.goto(f"{live_server.url}/products/{seeds.sku}/")
    page.get_by_role("button", name="Add to cart").click()
    unsubscribe = email_unsubscribe_url(email="ann.longname@example.com").split("/email/")[1]
    pages = {
        "catalog": "/",
        "category": f"/category/{seeds.category.slug}/",
        "product": f"/products/{seeds.sku}/",
        "cart": "/cart/",
        "checkout": "/checkout/",
        "order": f"/orders/{order.pk}/",
        "not found": "/no-such-page/",
        "server error": "/a-page-with-a-bug/",
        "unsubscribe": f"/email/{unsubscribe}",
    }
    for name, path in pages.items():
        page.goto(f"{live_server.url}{path}")
        assert page.evaluate(OVERFLOWING) == [], name
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
        assert page.evaluate(HEADER_LINE_TOPS) <= 4, name  # the header stays on one line
        if name == "order":
            screenshot(page, "order-page-phone")
        if name == "server error":
            assert "Something went wrong on our side" in page.locator("main").inner_text()

    page.goto(f"{live_server.url}/checkout/")  # a form sent back with its errors
    page.fill("#id_email", "not an address")
    page.get_by_role("button", name="place order").click()
    page.locator(".errorlist").first.wait_for()
    assert page.evaluate(OVERFLOWING) == [], "checkout with errors"

    settings.DEBUG = True  # the outbox exists in development only
    settings.EMAIL_BACKEND = "notifications.backends.OutboxEmailBackend"
    email_send(
        purpose_key="phone-test",
        recipient="ann.longname@example.com",
        subject=f"Order {order.number} confirmed",
        body=f"Follow your order: {live_server.url}/orders/{order.pk}/",
    )
    page.goto(f"{live_server.url}/dev/outbox/")
    page.get_by_role("link", name=re.compile(order.number)).click()
    assert page.evaluate(OVERFLOWING) == [], "outbox"
    page.locator(".mail-body a").click()  # the link in the message is a link
    page.wait_for_url(f"**/orders/{order.pk}/")


# Every "Total" label and the amount beside it: their boxes, as the browser lays them out.
TOTALS = """() => [...document.querySelectorAll('main *')]
  .filter(element => element.children.length === 0 && element.textContent.trim() === 'Total')
  .map(label => {
    const amount = [...label.parentElement.children].find(other => other !== label);
    const a = label.getBoundingClientRect(), b = amount.getBoundingClientRect();
    return {amount: amount.textContent.trim(), labelTop: a.top, amountTop: b.top,
            labelHeight: a.height, amountHeight: b.height};
  })"""


@pytest.mark.parametrize("width", [390, 1440])
def test_total_and_its_amount_stay_on_one_line(live_server, browser, width):
    seeds = ProductFactory(name="Butterhead lettuce seeds", price="1234.50", stock=50)
    order = place_order((seeds, 9)).order
    context = browser.new_context(viewport={"width": width, "height": 844})
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/products/{seeds.sku}/")
        page.fill("#quantity", "9")
        page.get_by_role("button", name="Add to cart").click()
        for path in ("/cart/", "/checkout/", f"/orders/{order.pk}/"):
            page.goto(f"{live_server.url}{path}")
            totals = page.evaluate(TOTALS)
            assert totals, path
            for total in totals:
                assert total["amount"] == "€\u00a011,110.50", (path, total)
                assert abs(total["labelTop"] - total["amountTop"]) < 6, (path, total)
                assert total["amountHeight"] < 1.5 * total["labelHeight"], (path, total)
    finally:
        context.close()


# WCAG 2 contrast of each badge and message: its text colour on its own background, as computed.
CONTRASTS = """(classes) => {
  const luminance = colour => {
    const [r, g, b] = colour.match(/[\\d.]+/g).slice(0, 3).map(Number).map(value => {
      value /= 255;
      return value <= 0.03928 ? value / 12.92 : ((value + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const main = document.querySelector('main');
  return Object.fromEntries(classes.map(name => {
    const element = document.createElement('span');
    element.className = name;
    element.textContent = 'succeeded';
    main.appendChild(element);
    const style = getComputedStyle(element);
    const [fg, bg] = [luminance(style.color), luminance(style.backgroundColor)];
    element.remove();
    return [name, (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05)];
  }));
}"""
BADGES = [
    f"status {state}"
    for state in (
        "pending",
        "running",
        "retrying",
        "succeeded",
        "dead",
        "placed",
        "delayed",
        "needs_attention",
        "ready",
    )
] + ["message", "message success", "message warning", "message error", "badge"]


def test_every_badge_and_message_reaches_4_5_to_1_contrast(live_server, page):
    page.goto(f"{live_server.url}/")

    contrasts = page.evaluate(CONTRASTS, BADGES)

    assert {name: ratio for name, ratio in contrasts.items() if ratio < 4.5} == {}
    assert len(contrasts) == len(BADGES)
