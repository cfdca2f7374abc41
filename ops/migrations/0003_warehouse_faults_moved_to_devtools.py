"""WarehouseFaults now belongs to devtools, which took over its table (and row) in its 0001."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('ops', '0002_queue_sample'),
        ('devtools', '0001_lab_faults_moved_here'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='WarehouseFaults')],
            database_operations=[],
        ),
    ]
