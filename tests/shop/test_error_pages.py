"""A page that is not there, or a server error, still looks like the shop and offers a way back."""

import pytest
from django.test import RequestFactory
from django.views.defaults import server_error

from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_an_unknown_address_is_a_styled_404_with_a_way_back(client, settings):
    settings.DEBUG = False

    response = client.get("/no-such-page/")

    page = response.content.decode()
    assert response.status_code == 404
    assert "We could not find that page" in page
    assert "shop/shop.css" in page and 'class="site-header"' in page
    assert 'href="/"' in page


def test_a_server_error_is_a_styled_500_with_a_way_back(settings):
    settings.DEBUG = False

    # Django renders 500.html without a request context: the page must need none.
    response = server_error(RequestFactory().get("/checkout/"))

    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in page
    assert "shop/shop.css" in page and 'class="site-header"' in page
    assert 'href="/"' in page


@pytest.mark.urls("tests.shop.urls_with_a_bug")
def test_a_view_that_raises_answers_with_the_styled_500_and_no_internal_detail(settings):
    from django.test import Client

    settings.DEBUG = False
    client = Client(raise_request_exception=False)  # as a browser meets it: the page, no traceback

    response = client.get("/a-page-with-a-bug/")

    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in page
    assert "shop/shop.css" in page and 'href="/"' in page
    assert "internal detail" not in page and "RuntimeError" not in page


@pytest.mark.parametrize(
    "path",
    [
        "/no-such-page/",
        "/orders/00000000-0000-0000-0000-000000000000/",
        "/orders/not-an-order/",
        "/products/NO-SUCH-SKU/",
        "/products/NO-SUCH-SKU/image.svg",
    ],
)
def test_in_development_a_customer_meets_the_shops_404_not_the_url_list(client, settings, path):
    settings.DEBUG = True

    response = client.get(path)

    page = response.content.decode()
    assert response.status_code == 404
    assert "We could not find that page" in page
    assert "URLconf" not in page and "ops/" not in page and "dev/outbox" not in page


def test_in_development_a_missing_slash_is_still_redirected_not_a_404(client, settings):
    settings.DEBUG = True
    ProductFactory(sku="SEED-A")

    response = client.get("/products/SEED-A")

    assert response.status_code == 301
    assert response["Location"] == "/products/SEED-A/"


def test_in_development_staff_routes_keep_djangos_debug_404(admin_client, settings):
    settings.DEBUG = True

    response = admin_client.get("/ops/no-such-page/")

    assert response.status_code == 404
    assert "URLconf" in response.content.decode()


@pytest.mark.urls("tests.shop.urls_with_a_bug")
def test_in_development_a_bug_shows_the_customer_the_shops_500_and_logs_the_traceback(
    settings, caplog
):
    from django.test import Client

    settings.DEBUG = True
    client = Client(raise_request_exception=False)

    response = client.get("/a-page-with-a-bug/")

    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in page
    assert "internal detail" not in page and "Traceback" not in page
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info[0] is RuntimeError


def test_favicon_ico_is_the_shops_icon_and_every_page_links_it(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"] == "/static/shop/favicon.svg"
    assert client.get(response["Location"]).status_code in (200, 404)  # served by staticfiles
    page = client.get("/").content.decode()
    assert '<link rel="icon" href="/static/shop/favicon.svg" type="image/svg+xml">' in page
