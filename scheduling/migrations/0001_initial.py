"""Beat's bookkeeping moves out of ``orders``: the lease (renamed ``Lease``: beat and the relay each
hold one by name), the run records and the schedule-sync fingerprints. The tables are renamed, so
every row stays where it is; the content types follow the models."""

from django.db import migrations, models

RENAMES = [
    ("orders_beatlease", "scheduling_lease", "beatlease", "lease"),
    ("orders_jobrun", "scheduling_jobrun", "jobrun", "jobrun"),
    ("orders_schedulesync", "scheduling_schedulesync", "schedulesync", "schedulesync"),
]


def rename_tables(apps, schema_editor):
    for old, new, _, _ in RENAMES:
        schema_editor.alter_db_table(None, old, new)


def rename_tables_back(apps, schema_editor):
    for old, new, _, _ in RENAMES:
        schema_editor.alter_db_table(None, new, old)


def move_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for _, _, old_model, new_model in RENAMES:
        if not ContentType.objects.filter(app_label="scheduling", model=new_model).exists():
            ContentType.objects.filter(app_label="orders", model=old_model).update(
                app_label="scheduling", model=new_model
            )


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0003_recurring_jobs_and_delayed_work"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='Lease',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=64, unique=True)),
                    ('holder', models.CharField(max_length=200)),
                    ('expires_at', models.DateTimeField()),
                    ('acquired_at', models.DateTimeField()),
                ],
            ),
            migrations.CreateModel(
                name='ScheduleSync',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=200, unique=True)),
                    ('fingerprint', models.CharField(max_length=64)),
                    ('synced_at', models.DateTimeField(auto_now=True)),
                ],
            ),
            migrations.CreateModel(
                name='JobRun',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('job', models.CharField(max_length=64)),
                    ('period', models.CharField(max_length=64)),
                    ('outcome', models.CharField(choices=[('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='running', max_length=16)),
                    ('attempts', models.PositiveIntegerField(default=1)),
                    ('started_at', models.DateTimeField()),
                    ('finished_at', models.DateTimeField(blank=True, null=True)),
                    ('counts', models.JSONField(blank=True, default=dict)),
                    ('error', models.TextField(blank=True)),
                ],
                options={
                    'ordering': ['-started_at'],
                    'constraints': [models.UniqueConstraint(fields=('job', 'period'), name='job_run_one_per_period')],
                },
            ),
            ],
            database_operations=[migrations.RunPython(rename_tables, rename_tables_back)],
        ),
        migrations.RunPython(move_content_types, migrations.RunPython.noop),
    ]
