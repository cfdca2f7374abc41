"""Stock that changes while the shopper fills in the checkout form: the cart takes what is left,
the form keeps what was typed, and nothing is ordered until the shopper has seen the new total."""

import re

import pytest

from orders.models import Order
from shop.cart import SESSION_KEY
from tests.factories import GOOD_CARD, ProductFactory

pytestmark = pytest.mark.django_db

TYPED = {
    "email": "ann@example.com",
    "name": "Ann Example",
    "line1": "Kerkstraat 1",
    "city": "Amsterdam",
    "postal_code": "1017 GA",
    "country": "NL",
    "card_number": GOOD_CARD,
}


def form_token(response) -> str:
    return re.search(rb'name="token" value="([^"]+)"', response.content).group(1).decode()


@pytest.fixture
def seeds():
    return ProductFactory(name="Celery seeds", price="3.50", stock=10)


@pytest.fixture
def checkout_token(client, seeds):
    client.post(f"/cart/add/{seeds.sku}/", {"quantity": 2}, follow=True)
    return form_token(client.get("/checkout/"))


def test_stock_that_falls_during_checkout_keeps_the_form_and_shows_the_new_total(
    client, seeds, checkout_token
):
    seeds.stock = 1
    seeds.save()

    response = client.post("/checkout/", TYPED | {"token": checkout_token})

    assert response.status_code == 200  # the checkout page again, not a bounce to the cart
    page = response.content.decode()
    for name, value in TYPED.items():
        if name == "card_number":  # a card number is never written back into a page
            assert f'value="{value}"' not in page
        else:
            assert f'value="{value}"' in page
    assert [str(m) for m in response.context["messages"]] == [
        "Only 1 of Celery seeds in stock, so your cart has 1."
    ]
    assert "Pay €\u00a03.50 and place order" in page
    assert client.session[SESSION_KEY] == {seeds.sku: 1}
    assert not Order.objects.exists()


def test_the_same_form_submitted_again_places_the_order_for_what_is_left(
    client, seeds, checkout_token
):
    seeds.stock = 1
    seeds.save()
    client.post("/checkout/", TYPED | {"token": checkout_token})

    response = client.post("/checkout/", TYPED | {"token": checkout_token})

    order = Order.objects.get()
    assert response["Location"] == f"/orders/{order.pk}/"
    assert [(line.quantity, str(line.unit_price)) for line in order.lines.all()] == [(1, "3.50")]
    seeds.refresh_from_db()
    assert seeds.stock == 0


def test_stock_gone_entirely_during_checkout_sends_the_shopper_to_the_empty_cart(
    client, seeds, checkout_token
):
    seeds.stock = 0
    seeds.save()

    response = client.post("/checkout/", TYPED | {"token": checkout_token}, follow=True)

    assert response.redirect_chain[-1][0] == "/cart/"
    assert [str(m) for m in response.context["messages"]] == [
        "Sorry, Celery seeds is sold out, so it is not in your cart."
    ]
    assert not Order.objects.exists()


def test_opening_checkout_fits_the_cart_to_the_stock_first(client, seeds):
    client.post(f"/cart/add/{seeds.sku}/", {"quantity": 4}, follow=True)
    seeds.stock = 3
    seeds.save()

    response = client.get("/checkout/")

    assert [str(m) for m in response.context["messages"]] == [
        "Only 3 of Celery seeds in stock, so your cart has 3."
    ]
    assert "Pay €\u00a010.50 and place order" in response.content.decode()


def test_the_checkout_form_tells_browsers_how_to_fill_it(client, seeds, checkout_token):
    page = client.get("/checkout/").content.decode()

    for field, token in {
        "email": "email",
        "name": "shipping name",
        "line1": "shipping address-line1",
        "city": "shipping address-level2",
        "postal_code": "shipping postal-code",
        "country": "shipping country",
        "card_number": "cc-number",
    }.items():
        tag = re.search(rf'<(input|select)[^>]*name="{field}"[^>]*>', page).group(0)
        assert f'autocomplete="{token}"' in tag, field
