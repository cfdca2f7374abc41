"""Stock edits in the admin are adjustments: sales made while the form was open are never undone."""

import pytest

from shop.models import Product
from tests.factories import ProductFactory, place_order

pytestmark = pytest.mark.django_db


def form_as_opened(admin_client, product) -> dict:
    """The change form's fields as the browser would submit them, read when the page was opened."""
    response = admin_client.get(f"/admin/shop/product/{product.pk}/change/")
    form = response.context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        data[name] = "" if value is None else value
    return data


def test_a_form_opened_before_three_sales_does_not_write_the_old_stock_back(admin_client):
    product = ProductFactory(stock=10, name="Trowel")
    opened = form_as_opened(admin_client, product)
    assert "stock" not in opened  # read-only once the product exists

    for _ in range(3):
        place_order((product, 1))
    opened["name"] = "Garden trowel"
    response = admin_client.post(f"/admin/shop/product/{product.pk}/change/", opened)

    assert response.status_code == 302, response.context["adminform"].form.errors
    product.refresh_from_db()
    assert (product.name, product.stock) == ("Garden trowel", 7)


def test_a_stock_change_is_added_to_what_is_left_after_concurrent_sales(admin_client):
    product = ProductFactory(stock=10)
    opened = form_as_opened(admin_client, product)
    for _ in range(3):
        place_order((product, 1))
    opened["stock_change"] = "12"  # a delivery of twelve

    admin_client.post(f"/admin/shop/product/{product.pk}/change/", opened)

    product.refresh_from_db()
    assert product.stock == 19


def test_a_change_below_zero_is_refused_with_a_message(admin_client):
    product = ProductFactory(stock=2, name="Rake")
    opened = form_as_opened(admin_client, product)
    opened["stock_change"] = "-5"

    response = admin_client.post(f"/admin/shop/product/{product.pk}/change/", opened, follow=True)

    assert "Stock not changed: Rake has 2 in stock" in response.content.decode()
    assert Product.objects.get(pk=product.pk).stock == 2


def test_a_new_product_gets_its_opening_stock(admin_client):
    category = ProductFactory().category
    response = admin_client.post(
        "/admin/shop/product/add/",
        {
            "sku": "NEW-1",
            "name": "Watering can",
            "category": category.pk,
            "price": "12.00",
            "stock": "40",
            "description": "For the seedlings.",
            "hue": "120",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Product.objects.get(sku="NEW-1").stock == 40
