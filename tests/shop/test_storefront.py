"""Storefront pages: catalog, product, product image, cart."""

import pytest

from shop.cart import SESSION_KEY
from tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db


def test_catalog_lists_products_by_category(client):
    seeds = CategoryFactory(slug="seeds", name="Seeds")
    tools = CategoryFactory(slug="tools", name="Tools")
    ProductFactory(name="Celery seeds", category=seeds)
    ProductFactory(name="Trowel", category=tools)

    everything = client.get("/")
    only_tools = client.get("/category/tools/")

    assert everything.status_code == 200
    assert b"Celery seeds" in everything.content and b"Trowel" in everything.content
    assert b"Trowel" in only_tools.content and b"Celery seeds" not in only_tools.content


@pytest.mark.parametrize("sku", ["NO%00PE", "%00", "a%20b", "x" * 40])
def test_a_malformed_sku_in_a_url_is_404(client, sku):
    assert client.get(f"/products/{sku}/").status_code == 404
    assert client.post(f"/cart/add/{sku}/", {"quantity": 1}).status_code == 404
    assert client.post(f"/cart/remove/{sku}/").status_code == 404


def test_unknown_category_and_product_are_404(client):
    assert client.get("/category/nope/").status_code == 404
    assert client.get("/products/NOPE/").status_code == 404
    assert client.get("/products/NOPE/image.svg").status_code == 404


def test_product_page_shows_price_stock_and_add_form(client):
    product = ProductFactory(name="Trowel", price="18.00", stock=4)
    response = client.get(f"/products/{product.sku}/")
    assert response.status_code == 200
    assert b"18.00" in response.content
    assert b"4 in stock" in response.content
    assert f'action="/cart/add/{product.sku}/"'.encode() in response.content


def test_product_image_is_a_generated_svg(client):
    product = ProductFactory(name="Trowel")
    response = client.get(f"/products/{product.sku}/image.svg")
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg") and b"Trowel" in response.content


def test_adding_to_the_cart_keeps_sku_and_quantity_in_the_session(client):
    product = ProductFactory(price="2.50")
    client.post(f"/cart/add/{product.sku}/", {"quantity": 2})
    client.post(f"/cart/add/{product.sku}/", {"quantity": 1})
    assert client.session[SESSION_KEY] == {product.sku: 3}
    cart = client.get("/cart/")
    assert b"7.50" in cart.content


def test_changing_and_removing_cart_lines(client):
    first, second = ProductFactory(), ProductFactory()
    client.post(f"/cart/add/{first.sku}/", {"quantity": 1})
    client.post(f"/cart/add/{second.sku}/", {"quantity": 1})
    client.post(f"/cart/update/{first.sku}/", {"quantity": 5})
    client.post(f"/cart/remove/{second.sku}/")
    assert client.session[SESSION_KEY] == {first.sku: 5}
    client.post(f"/cart/update/{first.sku}/", {"quantity": 0})
    assert client.session[SESSION_KEY] == {}


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        ("0", b"Choose a quantity of 1 or more."),
        ("-1", b"A quantity cannot be negative."),
        ("100", b"Choose at most 99."),
        ("abc", b"Enter a quantity as a whole number."),
        ("", b"Enter a quantity."),
    ],
)
def test_a_bad_quantity_is_a_message_not_an_error(client, quantity, message):
    product = ProductFactory(name="Trowel")
    response = client.post(f"/cart/add/{product.sku}/", {"quantity": quantity}, follow=True)
    assert response.status_code == 200
    assert message + b" Trowel was not added." in response.content
    assert client.session.get(SESSION_KEY, {}) == {}


def test_adding_an_unknown_product_is_404(client):
    assert client.post("/cart/add/NOPE/", {"quantity": 1}).status_code == 404


def test_cart_forms_require_csrf():
    from django.test import Client

    product = ProductFactory()
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(f"/cart/add/{product.sku}/", {"quantity": 1}).status_code == 403


def test_seed_catalog_is_idempotent_and_keeps_stock():
    from django.core.management import call_command

    from shop.models import Category, Product

    call_command("seed_catalog")
    Product.objects.filter(sku="SEED-CEL").update(stock=3)
    call_command("seed_catalog")

    assert Product.objects.count() >= 24
    assert Category.objects.count() >= 4
    assert Product.objects.get(sku="SEED-CEL").stock == 3
    assert not Product.objects.filter(sku="").exists()
