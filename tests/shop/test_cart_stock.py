"""The cart holds no more than the shop can sell: it caps or refuses, and says so once."""

import pytest

from shop.cart import SESSION_KEY
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def pots():
    return ProductFactory(name="Clay pot", stock=15)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_adding_more_than_in_stock_caps_the_cart_and_says_so_once(client, pots):
    response = client.post(f"/cart/add/{pots.sku}/", {"quantity": 99}, follow=True)

    assert client.session[SESSION_KEY] == {pots.sku: 15}
    assert messages_of(response) == ["Only 15 of Clay pot in stock, so your cart has 15."]
    assert response.content.decode().count("Only 15") == 1
    assert b"Added Clay pot to your cart" not in response.content


def test_adding_within_the_stock_says_it_was_added(client, pots):
    response = client.post(f"/cart/add/{pots.sku}/", {"quantity": 15}, follow=True)

    assert client.session[SESSION_KEY] == {pots.sku: 15}
    assert messages_of(response) == ["Added Clay pot to your cart."]


def test_adding_again_caps_what_the_cart_holds_in_all(client, pots):
    client.post(f"/cart/add/{pots.sku}/", {"quantity": 10}, follow=True)
    response = client.post(f"/cart/add/{pots.sku}/", {"quantity": 10}, follow=True)

    assert client.session[SESSION_KEY] == {pots.sku: 15}
    assert messages_of(response) == ["Only 15 of Clay pot in stock, so your cart has 15."]


def test_a_sold_out_product_is_refused(client):
    sold_out = ProductFactory(name="Rare pot", stock=0)

    response = client.post(f"/cart/add/{sold_out.sku}/", {"quantity": 1}, follow=True)

    assert client.session.get(SESSION_KEY, {}) == {}
    assert messages_of(response) == ["Sorry, Rare pot is sold out, so it is not in your cart."]


def test_updating_past_the_stock_caps_the_line(client, pots):
    client.post(f"/cart/add/{pots.sku}/", {"quantity": 2}, follow=True)

    response = client.post(f"/cart/update/{pots.sku}/", {"quantity": 40}, follow=True)

    assert client.session[SESSION_KEY] == {pots.sku: 15}
    assert messages_of(response) == ["Only 15 of Clay pot in stock, so your cart has 15."]


def test_a_negative_quantity_in_the_cart_gets_a_message_and_changes_nothing(client, pots):
    client.post(f"/cart/add/{pots.sku}/", {"quantity": 2}, follow=True)

    response = client.post(f"/cart/update/{pots.sku}/", {"quantity": -3}, follow=True)

    assert client.session[SESSION_KEY] == {pots.sku: 2}
    assert messages_of(response) == ["A quantity cannot be negative. Clay pot was not changed."]


def test_the_cart_follows_stock_that_fell_since_and_says_so_once(client, pots):
    client.post(f"/cart/add/{pots.sku}/", {"quantity": 5}, follow=True)
    pots.stock = 3
    pots.save()

    first = client.get("/cart/")
    second = client.get("/cart/")

    assert client.session[SESSION_KEY] == {pots.sku: 3}
    assert messages_of(first) == ["Only 3 of Clay pot in stock, so your cart has 3."]
    assert messages_of(second) == []
    assert b"Check out" in second.content


def test_a_line_whose_product_sold_out_since_leaves_the_cart(client, pots):
    other = ProductFactory(name="Trowel", stock=4)
    client.post(f"/cart/add/{pots.sku}/", {"quantity": 5})
    client.post(f"/cart/add/{other.sku}/", {"quantity": 1}, follow=True)
    pots.stock = 0
    pots.save()

    response = client.get("/cart/")

    assert client.session[SESSION_KEY] == {other.sku: 1}
    assert messages_of(response) == ["Sorry, Clay pot is sold out, so it is not in your cart."]
