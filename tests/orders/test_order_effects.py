"""The order's own effects (confirmation email, shipment, invoice): each happens once, however often
it runs."""

import io

import pytest
from pypdf import PdfReader

from notifications.models import EmailDelivery
from notifications.services import EmailPermanentFailure, EmailTemporaryFailure
from orders import services
from orders.models import Invoice, Order
from orders.warehouse import WarehouseRejected, WarehouseUnavailable
from tests.factories import ProductFactory, place_order

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp(smtp_server, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    smtp_server.clear()
    return smtp_server


@pytest.fixture
def order():
    return place_order((ProductFactory(name="Celery seeds", price="3.50"), 2)).order


def test_confirmation_email_is_sent_once_however_often_it_runs(smtp, order):
    first = services.confirmation_email_send(order=order)
    second = services.confirmation_email_send(order=order)

    assert first["already_sent"] is False and second["already_sent"] is True
    messages = smtp.for_subject(order.number)
    assert len(messages) == 1
    assert messages[0]["to"] == ["ann@example.com"]
    assert messages[0]["subject"] == f"Order {order.number} confirmed"
    assert "2 x Celery seeds" in messages[0]["body"]
    assert "Total: EUR 7.00" in messages[0]["body"]
    assert f"/orders/{order.pk}/" in messages[0]["body"]
    delivery = EmailDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("sent", 1)


def test_confirmation_email_temporary_smtp_refusal_is_transient(smtp, order):
    smtp.refuse_next("451 4.3.0 Mailbox busy, try again later")
    with pytest.raises(EmailTemporaryFailure):
        services.confirmation_email_send(order=order)
    assert EmailDelivery.objects.get().status == "failed"
    services.confirmation_email_send(order=order)
    assert len(smtp.for_subject(order.number)) == 1
    assert EmailDelivery.objects.get().status == "sent"


def test_confirmation_email_permanent_smtp_refusal_is_permanent(smtp, order):
    smtp.refuse_next("554 5.7.1 Message rejected")
    with pytest.raises(EmailPermanentFailure):
        services.confirmation_email_send(order=order)
    assert smtp.for_subject(order.number) == []


def test_shipment_is_created_once_even_after_losing_our_own_record_of_it(warehouse, order):
    first = services.shipment_create(order=order)
    # A worker killed after the warehouse answered but before our row was updated:
    Order.objects.filter(pk=order.pk).update(shipment_reference="")
    order.refresh_from_db()
    second = services.shipment_create(order=order)

    assert first == second
    shipments = [s for s in warehouse.shipments() if s["order_number"] == order.number]
    assert len(shipments) == 1
    order.refresh_from_db()
    assert order.shipment_reference == first["shipment_reference"]


def test_warehouse_outage_is_transient_and_honours_retry_after(warehouse, order):
    warehouse.configure(outage=True)
    with pytest.raises(WarehouseUnavailable) as unavailable:
        services.shipment_create(order=order)
    assert unavailable.value.retry_after == 5


def test_warehouse_unreachable_is_transient(settings, order):
    from tests.processes import free_port

    settings.WAREHOUSE_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(WarehouseUnavailable):
        services.shipment_create(order=order)


def test_warehouse_rejection_is_permanent(warehouse, order):
    warehouse.configure(reject=True)
    with pytest.raises(WarehouseRejected):
        services.shipment_create(order=order)


def test_invoice_is_a_real_pdf_with_its_own_number_rendered_once(order):
    first = services.invoice_create(order=order)
    second = services.invoice_create(order=order)

    assert first["already_rendered"] is False and second["already_rendered"] is True
    assert Invoice.objects.count() == 1
    reader = PdfReader(io.BytesIO(bytes(Invoice.objects.get().pdf)))
    text = "".join(page.extract_text() for page in reader.pages)
    assert "Invoice INV-000001" in text
    assert f"Order {order.number} of" in text
    assert "Ann Example" in text
    assert "Celery seeds" in text
    assert "7.00" in text


def test_invoice_escapes_customer_text():
    order = place_order((ProductFactory(), 1)).order
    Order.objects.filter(pk=order.pk).update(name="<b>Bobby</b> & <script>")
    order.refresh_from_db()
    services.invoice_create(order=order)
    text = PdfReader(io.BytesIO(bytes(Invoice.objects.get().pdf))).pages[0].extract_text()
    assert "<b>Bobby</b> & <script>" in text


def test_invoices_drawn_one_after_another_in_a_process_each_carry_only_their_own_order():
    # The styles are built once per process and shared by every invoice it draws.
    first = place_order((ProductFactory(name="First thing"), 1)).order
    second = place_order((ProductFactory(name="Second thing"), 2)).order
    for order in (first, second):
        services.invoice_create(order=order)

    def text_of(order):
        pdf = bytes(Invoice.objects.get(order=order).pdf)
        return "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)

    assert f"Order {first.number}" in text_of(first) and "Second thing" not in text_of(first)
    assert f"Order {second.number}" in text_of(second) and "First thing" not in text_of(second)


def test_invoice_amounts_have_thousands_separators():
    order = place_order((ProductFactory(name="Greenhouse", price="1234.50", stock=10), 2)).order
    services.invoice_create(order=order)

    text = PdfReader(io.BytesIO(bytes(Invoice.objects.get().pdf))).pages[0].extract_text()

    assert "1,234.50" in text and "2,469.00" in text
    assert "2469.00" not in text


def test_an_invoice_names_the_seller_its_vat_number_and_the_vat_its_total_includes(settings):
    settings.INVOICE_SELLER_NAME = "Groene Vingers B.V."
    settings.INVOICE_SELLER_ADDRESS = "Tuinstraat 9\n3511 AA Utrecht\nNetherlands"
    settings.INVOICE_SELLER_VAT_NUMBER = "NL123456789B01"
    settings.INVOICE_VAT_PERCENT = 21
    order = place_order((ProductFactory(price="121.00", stock=5), 1)).order

    services.invoice_create(order=order)

    text = PdfReader(io.BytesIO(bytes(Invoice.objects.get().pdf))).pages[0].extract_text()
    for line in ("Groene Vingers B.V.", "Tuinstraat 9", "3511 AA Utrecht", "NL123456789B01"):
        assert line in text
    assert "Net (EUR)\n100.00" in text
    assert "VAT 21%\n21.00" in text
    assert "Total (EUR)\n121.00" in text
    assert "Prices include VAT at 21%." in text


def test_invoice_numbers_follow_one_another_without_gaps_even_when_a_render_fails(monkeypatch):
    orders = [place_order((ProductFactory(), 1)).order for _ in range(3)]
    services.invoice_create(order=orders[0])

    def broken(*args, **kwargs):
        raise RuntimeError("the renderer broke")

    with monkeypatch.context() as patched:
        patched.setattr(services, "invoice_pdf", broken)
        with pytest.raises(RuntimeError):
            services.invoice_create(order=orders[1])  # its number is given back
    services.invoice_create(order=orders[2])
    services.invoice_create(order=orders[1])

    numbers = {invoice.order_id: invoice.display_number for invoice in Invoice.objects.all()}
    assert [numbers[order.pk] for order in orders] == ["INV-000001", "INV-000003", "INV-000002"]
