"""The lease, run records and schedule-sync fingerprints now belong to the ``scheduling`` app, whose
first migration renamed their tables: here they leave ``orders``' state only."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0005_low_stock_alerts_move_to_shop_and_warehouse_cursor"),
        ("scheduling", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="BeatLease"),
                migrations.DeleteModel(name="JobRun"),
                migrations.DeleteModel(name="ScheduleSync"),
            ],
            database_operations=[],
        ),
    ]
