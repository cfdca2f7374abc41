"""The order page tells the customer what they need to recognise the order: when it was placed,
where the confirmation went, the card's last four digits, and amounts written as people read them."""

import pytest
from django.forms.models import model_to_dict

from tests.factories import GOOD_CARD, ProductFactory, place_order

pytestmark = pytest.mark.django_db


def test_the_order_keeps_the_cards_last_four_digits_and_never_the_number():
    order = place_order((ProductFactory(), 1), card_number=GOOD_CARD).order
    order.refresh_from_db()

    assert order.card_last4 == "4242"
    stored = " ".join(str(value) for value in model_to_dict(order).values())
    assert GOOD_CARD not in stored
    assert GOOD_CARD[:12] not in stored


def test_the_order_page_shows_the_date_the_email_and_the_card(client):
    order = place_order((ProductFactory(), 1), email="bea@example.com").order

    page = client.get(f"/orders/{order.pk}/").content.decode()

    assert f'datetime="{order.created_at.isoformat()}"' in page
    assert order.created_at.strftime("%B %Y") in page
    assert "bea@example.com" in page
    assert "Card ending in 4242" in page


def test_amounts_have_thousands_separators_and_stay_with_their_sign(client):
    product = ProductFactory(name="Greenhouse", price="1234.50", stock=10)
    order = place_order((product, 2)).order

    page = client.get(f"/orders/{order.pk}/").content.decode()

    # The line and the total; a no-break space keeps "€" from wrapping away from its amount.
    assert page.count("€\u00a02,469.00") == 2
    assert "2469" not in page


def test_the_confirmation_email_writes_amounts_with_thousands_separators(settings):
    from django.core import mail

    from orders import services

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    order = place_order((ProductFactory(price="1234.50", stock=10), 2)).order

    services.confirmation_email_send(order=order)

    assert "Total: EUR 2,469.00" in mail.outbox[0].body


def test_the_order_page_names_the_country_it_ships_to(client):
    order = place_order((ProductFactory(), 1)).order

    page = client.get(f"/orders/{order.pk}/").content.decode()

    assert "Kerkstraat 1, 1017 GA Amsterdam, Netherlands</dd>" in page
