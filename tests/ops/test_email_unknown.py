"""Emails of unknown fate (the server may have them) are counted on /ops/ and in /metrics."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import EmailDelivery
from notifications.selectors import deliveries_unknown, deliveries_unknown_count

pytestmark = pytest.mark.django_db


def delivery(key: str, status: str, hold_until=None) -> EmailDelivery:
    return EmailDelivery.objects.create(
        purpose_key=key, recipient="ann@example.com", status=status, hold_until=hold_until
    )


@pytest.fixture
def two_unknown():
    now = timezone.now().replace(microsecond=0)
    delivery("a", "unknown", now + timedelta(minutes=5))
    delivery("b", "unknown", now + timedelta(minutes=12))
    delivery("c", "sent")
    delivery("d", "failed")
    return now


def test_the_selector_counts_unknown_deliveries_and_when_their_holds_end(two_unknown):
    assert deliveries_unknown_count() == 2
    unknown = deliveries_unknown()
    assert unknown.count == 2
    assert unknown.first_hold_ends_at == two_unknown + timedelta(minutes=5)
    assert unknown.last_hold_ends_at == two_unknown + timedelta(minutes=12)


def test_the_ops_page_shows_the_unknown_count_and_the_first_hold_end(admin_client, two_unknown):
    page = admin_client.get("/ops/").content.decode()

    assert 'data-metric="email-unknown">2<' in page
    first_end = (two_unknown + timedelta(minutes=5)).strftime("%H:%M:%S")
    assert f"the first hold ends at {first_end} UTC" in page


def test_metrics_expose_the_unknown_count(admin_client, two_unknown):
    text = admin_client.get("/metrics").content.decode()

    assert "# TYPE shop_email_deliveries_unknown gauge" in text
    assert "shop_email_deliveries_unknown 2.0" in text
