"""Invoices issued before they had numbers of their own are numbered in the order they were issued."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = ("orders", "0010_checkout_request_claim")
NUMBERING = ("orders", "0011_invoice_number_sequence")


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_existing_invoices_are_numbered_in_the_order_they_were_issued_and_the_sequence_follows():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        old = migrate([BEFORE])
        Order = old.get_model("orders", "Order")
        OldInvoice = old.get_model("orders", "Invoice")
        orders = [
            Order.objects.create(
                number=f"CS-MIGRATE{index}",
                email="ann@example.com",
                name="Ann",
                address_line1="Kerkstraat 1",
                address_city="Amsterdam",
                address_postal_code="1017 GA",
                address_country="NL",
                total="7.00",
                payment_reference=f"pay-{index}",
            )
            for index in range(3)
        ]
        invoices = [
            OldInvoice.objects.create(order_id=order.pk, pdf=b"%PDF-old") for order in orders
        ]
        # Issued in the order 2, 0, 1.
        for invoice, days_ago in zip(invoices, (2, 1, 3), strict=True):
            OldInvoice.objects.filter(pk=invoice.pk).update(
                created_at=timezone.now() - timedelta(days=days_ago)
            )
        new = migrate([NUMBERING])
        Invoice = new.get_model("orders", "Invoice")
        InvoiceSequence = new.get_model("orders", "InvoiceSequence")
        numbers = dict(Invoice.objects.values_list("order_id", "number"))
        assert [numbers[order.pk] for order in orders] == [2, 3, 1]
        assert InvoiceSequence.objects.get(pk=1).last == 3
        assert (
            bytes(Invoice.objects.get(order_id=orders[0].pk).pdf) == b"%PDF-old"
        )  # left as issued
    finally:
        migrate(latest)
