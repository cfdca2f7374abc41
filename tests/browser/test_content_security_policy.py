"""The pages work under the Content Security Policy (config/settings.py, CONTENT_SECURITY_POLICY):
a real browser walks the shop, htmx polls the order page until it is ready, and the browser
reports no violation (an inline script or style, a foreign source)."""

import pytest

from tests.factories import ProductFactory

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.once]

RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', event => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sourceFile}:${event.lineNumber}`);
});
"""


def violations(page) -> list[str]:
    return page.evaluate("window.__violations")


def test_the_storefront_checkout_and_a_polling_order_page_raise_no_violation(
    live_server, live_worker, page, admin_user
):
    page.add_init_script(RECORD_VIOLATIONS)
    console = []
    page.on("console", lambda message: console.append(message.text))
    product = ProductFactory(name="Celery seeds", price="3.50", stock=10)
    seen = {}

    page.goto(f"{live_server.url}/")
    seen["catalog"] = violations(page)
    page.goto(f"{live_server.url}/products/{product.sku}/")
    seen["product"] = violations(page)
    page.get_by_role("button", name="Add to cart").click()
    seen["cart"] = violations(page)
    page.get_by_role("link", name="Check out").click()
    page.fill("#id_email", "ann@example.com")
    page.fill("#id_name", "Ann Example")
    page.fill("#id_line1", "Kerkstraat 1")
    page.fill("#id_city", "Amsterdam")
    page.fill("#id_postal_code", "1017 GA")
    page.fill("#id_card_number", "4242424242424242")
    seen["checkout"] = violations(page)
    page.get_by_role("button", name="place order").click()
    page.wait_for_url("**/orders/*/")
    # htmx (a script from our static files) polls until every follow-up succeeded.
    page.locator('#order-progress[data-status="ready"]').wait_for(timeout=30_000)
    seen["order"] = violations(page)

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/admin/orders/order/")
    seen["admin"] = violations(page)
    page.goto(f"{live_server.url}/ops/")
    page.locator("table.metrics").first.wait_for()
    seen["ops"] = violations(page)
    page.goto(f"{live_server.url}/ops/lab/")
    seen["failure lab"] = violations(page)
    page.goto(f"{live_server.url}/no-such-page/")
    seen["404"] = violations(page)

    assert seen == dict.fromkeys(seen, [])
    assert not [text for text in console if "Content Security Policy" in text]
