"""The low-stock alerts move to the catalog (``shop.LowStockAlert``): every row is carried over
with its id. Reconciliation keeps its place in the warehouse's shipped feed (``WarehouseCursor``);
it starts from the beginning of the feed, and orders already marked shipped are passed over.
"""

from django.db import migrations, models


def alerts_copy_forward(apps, schema_editor):
    OldAlert = apps.get_model("orders", "LowStockAlert")
    Alert = apps.get_model("shop", "LowStockAlert")
    Alert.objects.bulk_create(
        (
            Alert(
                pk=old.pk,
                product_id=old.product_id,
                stock=old.stock,
                created_at=old.created_at,
                notified_at=old.notified_at,
                resolved_at=old.resolved_at,
            )
            for old in OldAlert.objects.order_by("pk").iterator(chunk_size=2000)
        ),
        batch_size=2000,
    )
    # Rows were written with explicit ids: move the sequence past them (PostgreSQL).
    from django.core.management.color import no_style

    connection = schema_editor.connection
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), [Alert]):
            cursor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0004_follow_ups_move_to_their_app"),
        ("shop", "0002_low_stock_alert_moves_here"),
    ]

    operations = [
        migrations.RunPython(alerts_copy_forward, migrations.RunPython.noop),
        migrations.DeleteModel(name="LowStockAlert"),
        migrations.CreateModel(
            name="WarehouseCursor",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("feed", models.CharField(max_length=32, unique=True)),
                ("position", models.CharField(blank=True, max_length=200)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
        ),
    ]
