"""Test data factories (factory_boy)."""

from decimal import Decimal

import factory

from orders import services
from shop.models import Category, Product


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"category-{n}")
    name = factory.Sequence(lambda n: f"Category {n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product
        django_get_or_create = ("sku",)

    sku = factory.Sequence(lambda n: f"SKU-{n:04d}")
    name = factory.Sequence(lambda n: f"Product {n}")
    category = factory.SubFactory(CategoryFactory)
    description = "A fine thing."
    price = Decimal("10.00")
    stock = 100


GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
INSUFFICIENT_FUNDS_CARD = "4000000000009995"


def checkout_payload(
    *items: tuple[str, int], email="ann@example.com", card_number=GOOD_CARD
) -> dict:
    """A valid POST /api/orders/ body for the given (sku, quantity) pairs."""
    return {
        "email": email,
        "name": "Ann Example",
        "address": {
            "line1": "Kerkstraat 1",
            "city": "Amsterdam",
            "postal_code": "1017 GA",
            "country": "NL",
        },
        "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
        "card_number": card_number,
    }


def place_order(
    *items: tuple[Product, int],
    card_number=GOOD_CARD,
    idempotency_key=None,
    email="ann@example.com",
):
    """Place an order through the real service."""
    return services.order_place(
        email=email,
        name="Ann Example",
        address=services.Address(
            line1="Kerkstraat 1", city="Amsterdam", postal_code="1017 GA", country="NL"
        ),
        lines=[
            services.LineRequest(sku=product.sku, quantity=quantity) for product, quantity in items
        ],
        card_number=card_number,
        idempotency_key=idempotency_key,
    )
