"""Invoices get their own gap-free numbers: existing invoices are numbered in the order they were
issued, and the sequence row starts after the last of them. Their stored PDFs are left as issued."""

from django.db import migrations, models


def number_existing_invoices(apps, schema_editor):
    Invoice = apps.get_model("orders", "Invoice")
    InvoiceSequence = apps.get_model("orders", "InvoiceSequence")
    number = 0
    for invoice in Invoice.objects.order_by("created_at", "pk").only("pk"):
        number += 1
        Invoice.objects.filter(pk=invoice.pk).update(number=number)
    InvoiceSequence.objects.update_or_create(pk=1, defaults={"last": number})


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0010_checkout_request_claim"),
    ]

    operations = [
        migrations.CreateModel(
            name="InvoiceSequence",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("last", models.PositiveIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name="invoice",
            name="number",
            field=models.PositiveIntegerField(null=True, unique=True),
        ),
        migrations.RunPython(number_existing_invoices, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="invoice",
            name="number",
            field=models.PositiveIntegerField(unique=True),
        ),
    ]
