"""The checkout form and the order page."""

import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from devtools.models import SimulatedCharge
from follow_ups.models import FollowUp
from orders.models import CheckoutRequest, Invoice, Order
from tests.factories import DECLINED_CARD, GOOD_CARD, ProductFactory

pytestmark = pytest.mark.django_db


def form_token(response) -> str:
    return re.search(rb'name="token" value="([^"]+)"', response.content).group(1).decode()


def checkout_form(token, card=GOOD_CARD, **overrides):
    data = {
        "email": "ann@example.com",
        "name": "Ann Example",
        "line1": "Kerkstraat 1",
        "city": "Amsterdam",
        "postal_code": "1017 GA",
        "country": "NL",
        "card_number": card,
        "token": token,
    }
    return data | overrides


@pytest.fixture
def product():
    return ProductFactory(name="Celery seeds", price="3.50", stock=10)


@pytest.fixture
def cart_client(client, product):
    client.post(f"/cart/add/{product.sku}/", {"quantity": 2})
    return client


def test_checkout_page_shows_the_cart_and_the_test_cards(cart_client):
    response = cart_client.get("/checkout/")
    assert response.status_code == 200
    for text in (
        b"Celery seeds",
        b"7.00",
        b"4242424242424242",
        b"4000000000000002",
        b"4000000000009995",
    ):
        assert text in response.content


def test_checkout_with_an_empty_cart_sends_you_back_and_says_so_once(client):
    response = client.get("/checkout/", follow=True)

    assert response.redirect_chain == [("/cart/", 302)]
    assert response.content.decode().count("Your cart is empty.") == 1


def test_checkout_places_the_order_and_shows_its_page(cart_client, product):
    token = form_token(cart_client.get("/checkout/"))
    response = cart_client.post("/checkout/", checkout_form(token), follow=True)

    order = Order.objects.get()
    assert response.redirect_chain[-1][0] == f"/orders/{order.pk}/"
    assert f"Order {order.number}".encode() in response.content
    assert b"Order placed" in response.content
    assert order.total == 7
    assert cart_client.session["cart"] == {}


def test_a_double_submit_of_one_form_makes_one_order(cart_client):
    token = form_token(cart_client.get("/checkout/"))
    first = cart_client.post("/checkout/", checkout_form(token))
    second = cart_client.post("/checkout/", checkout_form(token))
    assert Order.objects.count() == 1
    assert first["Location"] == second["Location"] == f"/orders/{Order.objects.get().pk}/"


def test_a_forged_form_token_is_refused(cart_client):
    cart_client.get("/checkout/")
    response = cart_client.post("/checkout/", checkout_form("made-up"), follow=True)
    assert b"This checkout form has expired." in response.content
    assert not Order.objects.exists()


def test_a_declined_card_is_a_form_error_and_nothing_is_written(cart_client, product):
    token = form_token(cart_client.get("/checkout/"))
    response = cart_client.post("/checkout/", checkout_form(token, card=DECLINED_CARD))
    assert response.status_code == 200
    assert b"Your card was declined." in response.content
    assert not Order.objects.exists()
    product.refresh_from_db()
    assert product.stock == 10


def test_a_second_click_while_the_first_still_pays_is_told_to_wait_and_charges_nothing(
    cart_client, product
):
    token = form_token(cart_client.get("/checkout/"))
    # The first click's request holds the form's key and has not saved its order yet.
    CheckoutRequest.objects.create(
        key=f"checkout-form:{token}",
        request_hash="the first click's",
        owner="the first click",
        claimed_until=timezone.now() + timedelta(seconds=60),
    )

    response = cart_client.post("/checkout/", checkout_form(token))

    assert response.status_code == 409
    assert b"This order is already being placed." in response.content
    assert not SimulatedCharge.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "nope", b"Enter a valid email address."),
        ("name", "", b"This field is required."),
        ("card_number", "12ab", b"Enter a card number of 12 to 19 digits (0 to 9)."),
        # Arabic-Indic and fullwidth digits: str.isdigit() takes them, a gateway does not.
        ("card_number", "\u0664\u0662" * 8, b"Enter a card number of 12 to 19 digits (0 to 9)."),
        ("card_number", "\uff14\uff12" * 8, b"Enter a card number of 12 to 19 digits (0 to 9)."),
    ],
)
def test_bad_fields_are_form_errors(cart_client, field, value, message):
    token = form_token(cart_client.get("/checkout/"))
    response = cart_client.post("/checkout/", checkout_form(token, **{field: value}))
    assert response.status_code == 200
    assert message in response.content
    assert not Order.objects.exists()


def test_checkout_requires_csrf(product):
    strict = Client(enforce_csrf_checks=True)
    strict.post(f"/cart/add/{product.sku}/", {"quantity": 1})  # refused too, so the cart is empty
    response = strict.post("/checkout/", checkout_form("x"))
    assert response.status_code == 403


def test_order_page_shows_every_follow_up_and_says_ready_when_all_succeeded(cart_client):
    token = form_token(cart_client.get("/checkout/"))
    cart_client.post("/checkout/", checkout_form(token))
    order = Order.objects.get()
    FollowUp.objects.filter(label=order.number, kind="warehouse_sync").update(
        status="retrying", attempts=2, last_error="HTTP 503"
    )
    page = cart_client.get(f"/orders/{order.pk}/").content
    assert b"Delayed" in page and b"Our warehouse is slow to answer; we keep trying" in page
    assert b"HTTP 503" not in page  # the error is for staff (admin, /ops/), not the customer

    FollowUp.objects.filter(label=order.number).update(status="succeeded")
    page = cart_client.get(f"/orders/{order.pk}/").content
    assert b"Order ready" in page
    assert b"Confirmation sent, warehouse notified, invoice ready." in page


def test_another_customers_order_is_unreachable_by_guessing(client):
    for order_id in (str(uuid.uuid4()), "1", "CS-AAAAAAAA", "../admin"):
        assert client.get(f"/orders/{order_id}/").status_code == 404
        assert client.get(f"/orders/{order_id}/invoice.pdf").status_code == 404


def test_invoice_is_404_until_it_is_rendered_then_a_pdf(cart_client):
    token = form_token(cart_client.get("/checkout/"))
    cart_client.post("/checkout/", checkout_form(token))
    order = Order.objects.get()
    assert cart_client.get(f"/orders/{order.pk}/invoice.pdf").status_code == 404
    Invoice.objects.create(order=order, number=1, pdf=b"%PDF-1.4 test")
    response = cart_client.get(f"/orders/{order.pk}/invoice.pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"


def test_an_implausible_address_is_sent_back_with_a_sentence_beside_each_part(cart_client):
    token = form_token(cart_client.get("/checkout/"))

    response = cart_client.post(
        "/checkout/", checkout_form(token, country="Narnia", postal_code="!!!", line1="x")
    )

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert errors["country"] == ["Choose a country we ship to from the list."]
    assert errors["line1"] == ["Enter the street and house number, such as Kerkstraat 1."]
    assert "postal_code" not in errors  # judged once a country is chosen
    assert not Order.objects.exists()


def test_a_postal_code_must_have_the_chosen_countrys_shape(cart_client):
    token = form_token(cart_client.get("/checkout/"))

    response = cart_client.post("/checkout/", checkout_form(token, country="DE"))

    assert response.context["form"].errors["postal_code"] == [
        "Enter a postal code as written in Germany, such as 10115."
    ]
    assert not Order.objects.exists()


def test_the_country_is_a_list_of_the_countries_the_shop_ships_to(cart_client):
    page = cart_client.get("/checkout/").content.decode()

    select = page[page.index('<select name="country"') : page.index("</select>")]
    assert 'autocomplete="shipping country"' in select
    assert '<option value="NL" selected>Netherlands</option>' in select
    assert '<option value="GB">United Kingdom</option>' in select
    assert len(re.findall(r"<option ", select)) == 30


def test_a_sold_out_product_says_so_where_its_button_would_be(client):
    sold_out = ProductFactory(name="Rare pot", stock=0)
    ProductFactory(name="Clay pot", stock=3)

    catalog = client.get("/").content.decode()
    detail = client.get(f"/products/{sold_out.sku}/").content.decode()

    card = catalog[catalog.index('class="card is-sold-out"') :]
    card = card[: card.index("</article>")]
    assert "Rare pot" in card and '<span class="sold-out">Sold out</span>' in card
    assert "Add to cart" not in card
    assert catalog.count("Add to cart") == 1  # the Clay pot's
    assert '<span class="sold-out">Sold out</span>' in detail and "Add to cart" not in detail


def test_form_labels_have_no_trailing_colon(cart_client, admin_client):
    for page in (
        cart_client.get("/checkout/").content.decode(),
        admin_client.get("/ops/lab/").content.decode(),
    ):
        labels = re.findall(r"<label [^>]*>([^<]*)</label>", page)
        assert labels, "no labels"
        assert [label for label in labels if label.rstrip().endswith(":")] == []
