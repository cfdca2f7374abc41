"""A page that is not there, or a server error, still looks like the shop and offers a way back."""

import pytest
from django.test import RequestFactory
from django.views.defaults import server_error

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
