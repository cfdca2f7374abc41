"""The failure lab's faults move here from notifications and ops, keeping their tables and rows.

Each model is first declared on its existing table (state only), then the table is renamed to this
app's name. On a fresh database the tables come from notifications 0003 and ops 0001, which run
first; the old apps drop the models from their state afterwards (notifications 0005, ops 0003).
The content types move too, so permissions given on them carry over.
"""

from django.db import migrations, models

MOVED = {"emailfaults": "notifications", "warehousefaults": "ops"}


def content_types_move(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model, app_label in MOVED.items():
        ContentType.objects.filter(app_label=app_label, model=model).update(app_label="devtools")


def content_types_move_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model, app_label in MOVED.items():
        ContentType.objects.filter(app_label="devtools", model=model).update(app_label=app_label)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('notifications', '0003_email_faults'),
        ('ops', '0001_warehouse_faults'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='EmailFaults',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('latency_ms', models.PositiveIntegerField(default=0)),
                        ('error_rate', models.FloatField(default=0.0)),
                        ('poison_recipient', models.EmailField(blank=True, max_length=254)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'verbose_name_plural': 'email faults',
                        'db_table': 'notifications_emailfaults',
                    },
                ),
                migrations.CreateModel(
                    name='WarehouseFaults',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('latency_ms', models.PositiveIntegerField(default=5)),
                        ('failure_rate', models.FloatField(default=0.0)),
                        ('outage', models.BooleanField(default=False)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'verbose_name_plural': 'warehouse faults',
                        'db_table': 'ops_warehousefaults',
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.AlterModelTable(name='EmailFaults', table=None),
        migrations.AlterModelTable(name='WarehouseFaults', table=None),
        migrations.RunPython(content_types_move, content_types_move_back),
    ]
