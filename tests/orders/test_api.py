"""The JSON API contract: shapes, status codes, and a clear answer to every bad input."""

import json
import uuid

import pytest

from devtools.models import SimulatedCharge
from orders.models import Order
from tests.factories import (
    DECLINED_CARD,
    INSUFFICIENT_FUNDS_CARD,
    ProductFactory,
    checkout_payload,
)

pytestmark = pytest.mark.django_db


def post_order(client, body, **headers):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post("/api/orders/", data=data, content_type="application/json", headers=headers)


def test_products_list_shape(client):
    ProductFactory(sku="SEED-X", name="Seeds", price="3.50", stock=7, category__slug="seeds")
    response = client.get("/api/products/")
    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {"sku": "SEED-X", "name": "Seeds", "category": "seeds", "price": "3.50", "stock": 7}
        ]
    }


def test_placing_an_order_answers_201_with_the_contract_shape(client):
    product = ProductFactory(price="3.50", stock=5)
    response = post_order(client, checkout_payload((product.sku, 2)))
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "number", "status", "total", "follow_ups"}
    assert uuid.UUID(body["id"]) == Order.objects.get().pk
    assert body["status"] == "placed"
    assert body["total"] == "7.00"
    assert body["follow_ups"] == [
        {"kind": "confirmation_email", "status": "pending", "attempts": 0},
        {"kind": "warehouse_sync", "status": "pending", "attempts": 0},
        {"kind": "invoice", "status": "pending", "attempts": 0},
    ]


def test_client_prices_are_ignored(client):
    product = ProductFactory(price="10.00")
    body = checkout_payload((product.sku, 1))
    body["items"][0]["price"] = "0.01"
    body["total"] = "0.01"
    response = post_order(client, body)
    assert response.status_code == 201
    assert response.json()["total"] == "10.00"


def test_get_order_returns_current_statuses(client):
    product = ProductFactory()
    order_id = post_order(client, checkout_payload((product.sku, 1))).json()["id"]
    response = client.get(f"/api/orders/{order_id}/")
    assert response.status_code == 200
    assert response.json()["id"] == order_id
    assert [f["kind"] for f in response.json()["follow_ups"]] == [
        "confirmation_email",
        "warehouse_sync",
        "invoice",
    ]


@pytest.mark.parametrize(
    "order_id", [str(uuid.uuid4()), "not-a-uuid", "1", "00000000-0000-0000-0000-00000000000g"]
)
def test_unknown_or_malformed_order_id_is_404(client, order_id):
    response = client.get(f"/api/orders/{order_id}/")
    assert response.status_code == 404
    assert response.json()["detail"]


@pytest.mark.parametrize(
    ("card", "code"),
    [(DECLINED_CARD, "card_declined"), (INSUFFICIENT_FUNDS_CARD, "insufficient_funds")],
)
def test_refused_payment_is_402_and_writes_nothing(client, card, code):
    product = ProductFactory(stock=3)
    response = post_order(client, checkout_payload((product.sku, 1), card_number=card))
    assert response.status_code == 402
    assert response.json()["code"] == code
    assert not Order.objects.exists()
    product.refresh_from_db()
    assert product.stock == 3


def test_not_enough_stock_is_409(client):
    product = ProductFactory(stock=1)
    response = post_order(client, checkout_payload((product.sku, 2)))
    assert response.status_code == 409
    assert "only 1 left" in response.json()["detail"]
    assert not Order.objects.exists()


def field_errors(response) -> dict[str, str]:
    return {
        ".".join(str(part) for part in error["loc"][2:]): error["msg"]
        for error in response.json()["detail"]
    }


def test_unknown_sku_is_422_naming_the_item(client):
    product = ProductFactory()
    response = post_order(client, checkout_payload((product.sku, 1), ("NOPE", 1)))
    assert response.status_code == 422
    assert field_errors(response) == {"items.1.sku": "Unknown SKU 'NOPE'."}


@pytest.mark.parametrize("quantity", [0, -1, 100, 1.5, "2", None, True])
def test_bad_quantity_is_422(client, quantity):
    product = ProductFactory()
    body = checkout_payload((product.sku, 1))
    body["items"][0]["quantity"] = quantity
    response = post_order(client, body)
    assert response.status_code == 422
    assert "items.0.quantity" in field_errors(response)


@pytest.mark.parametrize("email", ["", "not-an-email", "a@", "@b.com", 42])
def test_bad_email_is_422(client, email):
    body = checkout_payload((ProductFactory().sku, 1), email=email)
    response = post_order(client, body)
    assert response.status_code == 422
    assert "email" in field_errors(response)


@pytest.mark.parametrize("missing", ["email", "name", "address", "items", "card_number"])
def test_missing_field_is_422_naming_it(client, missing):
    body = checkout_payload((ProductFactory().sku, 1))
    del body[missing]
    response = post_order(client, body)
    assert response.status_code == 422
    assert field_errors(response)[missing] == "Field required"


@pytest.mark.parametrize("missing", ["line1", "city", "postal_code", "country"])
def test_missing_address_part_is_422_naming_it(client, missing):
    body = checkout_payload((ProductFactory().sku, 1))
    del body["address"][missing]
    response = post_order(client, body)
    assert response.status_code == 422
    assert f"address.{missing}" in field_errors(response)


def test_empty_items_is_422(client):
    body = checkout_payload()
    response = post_order(client, body)
    assert response.status_code == 422
    assert "items" in field_errors(response)


@pytest.mark.parametrize("card", ["abc", "4242", "4242-4242-4242-4242-4242-4242"])
def test_malformed_card_number_is_422(client, card):
    body = checkout_payload((ProductFactory().sku, 1), card_number=card)
    response = post_order(client, body)
    assert response.status_code == 422
    assert "card_number" in field_errors(response)


# Digits str.isdigit() accepts and no gateway reads: Arabic-Indic, fullwidth, superscript.
NON_ASCII_CARDS = [
    "\u0664\u0662\u0664\u0662" * 4,
    "\uff14\uff12\uff14\uff12" * 4,
    "424242424242424\u00b2",
]


@pytest.mark.parametrize("card", NON_ASCII_CARDS)
def test_a_card_number_in_other_digits_than_0_to_9_is_422_and_never_charged(client, card):
    body = checkout_payload((ProductFactory().sku, 1), card_number=card)
    response = post_order(client, body)
    assert response.status_code == 422
    assert "digits (0 to 9)" in field_errors(response)["card_number"]
    assert not SimulatedCharge.objects.exists()


@pytest.mark.parametrize("raw", ["{bad json", "", "[]", "null", '"text"'])
def test_malformed_json_is_a_client_error(client, raw):
    response = post_order(client, raw)
    assert response.status_code in (400, 422)
    assert response.json()["detail"]
    assert not Order.objects.exists()


def test_idempotency_key_replays_the_same_order(client):
    product = ProductFactory(stock=5)
    body = checkout_payload((product.sku, 1))
    first = post_order(client, body, **{"Idempotency-Key": "abc-123"})
    second = post_order(client, body, **{"Idempotency-Key": "abc-123"})
    assert first.status_code == 201
    assert second.status_code in (200, 201)
    assert second.json()["id"] == first.json()["id"]
    assert Order.objects.count() == 1


def test_idempotency_key_with_a_different_body_is_422(client):
    product = ProductFactory(stock=5)
    post_order(client, checkout_payload((product.sku, 1)), **{"Idempotency-Key": "abc-123"})
    response = post_order(
        client, checkout_payload((product.sku, 2)), **{"Idempotency-Key": "abc-123"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1


def test_openapi_document_describes_the_endpoints(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/products/", "/api/orders/", "/api/orders/{order_id}/"} <= set(paths)


@pytest.mark.parametrize("field", ["name", "address.city", "items.0.sku"])
def test_a_nul_character_is_422_not_a_database_error(client, field):
    body = checkout_payload((ProductFactory().sku, 1))
    if field == "name":
        body["name"] = "Ann\x00"
    elif field == "address.city":
        body["address"]["city"] = "Amster\x00dam"
    else:
        body["items"][0]["sku"] = "SEED\x00"
    response = post_order(client, body)
    assert response.status_code == 422
    assert field in field_errors(response)


@pytest.mark.parametrize(
    ("part", "value", "message"),
    [
        ("country", "Narnia", "We ship to the countries of the European Union"),
        ("postal_code", "!!!", "Enter a postal code as written in Netherlands, such as 1017 GA."),
        ("postal_code", "10115", "such as 1017 GA"),  # a German code for a Dutch address
        ("line1", "x", "Enter the street and house number"),
        ("city", "12", "Enter the town or city."),
    ],
)
def test_an_implausible_address_is_422_with_a_sentence_for_the_part(client, part, value, message):
    body = checkout_payload((ProductFactory().sku, 1))
    body["address"][part] = value

    response = post_order(client, body)

    assert response.status_code == 422
    assert message in field_errors(response)[f"address.{part}"]
    assert not Order.objects.exists()


def test_every_part_of_a_wrong_address_is_named_at_once(client):
    body = checkout_payload((ProductFactory().sku, 1))
    body["address"] = {"line1": "x", "city": "?", "postal_code": "!!!", "country": "Narnia"}

    errors = field_errors(post_order(client, body))

    # The postal code cannot be judged without a country: the country's error says what to do.
    assert set(errors) == {"address.line1", "address.city", "address.country"}


@pytest.mark.parametrize(
    ("country", "postal_code", "stored"),
    [
        ("nl", "1017ga", ("NL", "1017GA")),
        ("Germany", " 10115 ", ("DE", "10115")),
        ("GB", "sw1a 1aa", ("GB", "SW1A 1AA")),
        ("PL", "00-950", ("PL", "00-950")),
    ],
)
def test_a_plausible_address_is_stored_with_its_country_code(client, country, postal_code, stored):
    body = checkout_payload((ProductFactory().sku, 1))
    body["address"].update(country=country, postal_code=postal_code)

    response = post_order(client, body)

    assert response.status_code == 201, response.json()
    order = Order.objects.get()
    assert (order.address_country, order.address_postal_code) == stored
