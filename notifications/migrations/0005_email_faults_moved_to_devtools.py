"""EmailFaults now belongs to devtools, which took over its table (and row) in its 0001."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0004_delivery_data_started_and_unknown'),
        ('devtools', '0001_lab_faults_moved_here'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='EmailFaults')],
            database_operations=[],
        ),
    ]
