"""The low-stock job: it opens one alert per crossing under the threshold and hands each alert to
one email follow-up per staff recipient; the emails are the rows' effects (run here through the
engine's own service, tests/ledger.py)."""

import pytest

from follow_ups.models import FollowUp
from shop import tasks
from shop.models import LowStockAlert, Product
from shop.services import LOW_STOCK_ALERT_EMAIL
from tests.factories import ProductFactory, place_order
from tests.ledger import follow_ups_run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def staff(settings):
    settings.STAFF_EMAILS = ["ops@example.com"]
    settings.LOW_STOCK_THRESHOLD = 5


def alert_emails() -> list[FollowUp]:
    return list(FollowUp.objects.filter(kind=LOW_STOCK_ALERT_EMAIL).order_by("pk"))


def test_low_stock_alerts_staff_once_per_crossing_below_the_threshold(mailoutbox):
    product = ProductFactory(name="Celery seeds", stock=6)
    ProductFactory(stock=50)

    tasks.low_stock_alert_task(period="p1")
    assert alert_emails() == []

    place_order((product, 2))  # 4 left: under 5
    tasks.low_stock_alert_task(period="p2")
    tasks.low_stock_alert_task(period="p3")
    place_order((product, 1))  # still under: no second email
    tasks.low_stock_alert_task(period="p4")
    follow_ups_run(kind=LOW_STOCK_ALERT_EMAIL)
    assert [m.subject for m in mailoutbox] == [f"Low stock: Celery seeds ({product.sku})"]
    assert "down to 4" in mailoutbox[0].body

    Product.objects.filter(pk=product.pk).update(stock=20)  # restocked
    tasks.low_stock_alert_task(period="p5")
    place_order((product, 17))  # crosses again
    tasks.low_stock_alert_task(period="p6")
    follow_ups_run(kind=LOW_STOCK_ALERT_EMAIL)

    assert len(mailoutbox) == 2
    assert LowStockAlert.objects.filter(product=product).count() == 2
    assert LowStockAlert.objects.filter(product=product, resolved_at__isnull=True).count() == 1


def test_an_alert_is_one_email_row_per_staff_recipient_written_as_it_is_marked(
    django_user_model,
):
    django_user_model.objects.create_user("ann", "ann@example.com", "x", is_staff=True)
    product = ProductFactory(sku="POT-1", stock=1)

    result = tasks.low_stock_alert_task(period="p1")
    again = tasks.low_stock_alert_task(period="p2")

    alert = LowStockAlert.objects.get(product=product)
    assert alert.notified_at is not None
    assert [(f.key, f.label, f.status) for f in alert_emails()] == [
        (f"low_stock_alert:{alert.pk}:to:ann@example.com", "Low stock POT-1", "pending"),
        (f"low_stock_alert:{alert.pk}:to:ops@example.com", "Low stock POT-1", "pending"),
    ]
    assert (result["opened"], result["notified"], result["emails"]) == (1, 1, 2)
    assert (again["opened"], again["notified"], again["emails"]) == (0, 0, 0)


def test_a_refused_staff_address_does_not_hold_up_the_other_recipients(django_user_model, smtp):
    django_user_model.objects.create_user("ann", "ann@example.com", "x", is_staff=True)
    ProductFactory(stock=0)
    smtp.refuse_recipient("ann@example.com")

    tasks.low_stock_alert_task(period="p1")
    outcomes = {f.payload["recipient"]: f.status for f in follow_ups_run()}

    assert outcomes == {"ann@example.com": "dead", "ops@example.com": "succeeded"}
    assert [m["to"] for m in smtp.messages] == [["ops@example.com"]]


def test_alerts_wait_unmarked_while_there_is_no_staff_recipient(settings):
    settings.STAFF_EMAILS = []
    product = ProductFactory(stock=0)

    tasks.low_stock_alert_task(period="p1")
    assert LowStockAlert.objects.get(product=product).notified_at is None
    assert alert_emails() == []

    settings.STAFF_EMAILS = ["ops@example.com"]
    tasks.low_stock_alert_task(period="p2")
    assert LowStockAlert.objects.get(product=product).notified_at is not None
    assert len(alert_emails()) == 1


def test_alerts_are_handed_over_in_chunks_past_the_chunk_size(settings):
    settings.JOB_CHUNK_SIZE = 2
    ProductFactory.create_batch(5, stock=1)

    result = tasks.low_stock_alert_task(period="p1")

    assert (result["opened"], result["notified"], result["emails"]) == (5, 5, 5)
    assert not LowStockAlert.objects.filter(notified_at__isnull=True).exists()
