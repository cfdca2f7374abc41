"""The follow-up ledger moves to its own app (follow_ups): every row is carried over with its id, so
ids in logs, Flower and the admin keep meaning the same row. An order's follow-ups are keyed
``order:<id>:<kind>`` with subject ``order:<id>`` and the order number as label. A row left
``running`` gets a lapsed lease, so the relay takes it back at once; dead-letter notices follow
their rows.
"""

from django.db import connection, migrations
from django.utils import timezone


def copy_forward(apps, schema_editor):
    OldFollowUp = apps.get_model("orders", "FollowUp")
    OldNotice = apps.get_model("orders", "DeadLetterNotice")
    FollowUp = apps.get_model("follow_ups", "FollowUp")
    Notice = apps.get_model("follow_ups", "DeadLetterNotice")
    now = timezone.now()
    batch = []
    for old in OldFollowUp.objects.select_related("order").order_by("pk").iterator(chunk_size=2000):
        subject = f"order:{old.order_id}"
        batch.append(
            FollowUp(
                pk=old.pk,
                key=f"{subject}:{old.kind}",
                kind=old.kind,
                subject=subject,
                label=old.order.number,
                status=old.status,
                attempts=old.attempts,
                published_at=old.published_at,
                started_at=old.started_at,
                finished_at=old.finished_at,
                next_attempt_at=old.next_attempt_at,
                lease_expires_at=now if old.status == "running" else None,
                last_error=old.last_error,
                result=old.result,
            )
        )
        if len(batch) >= 2000:
            FollowUp.objects.bulk_create(batch)
            batch = []
    FollowUp.objects.bulk_create(batch)
    # created_at/updated_at are auto fields: carry the originals over in one statement.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE follow_ups_followup SET created_at = (SELECT o.created_at FROM orders_followup o"
            " WHERE o.id = follow_ups_followup.id), updated_at = (SELECT o.updated_at FROM"
            " orders_followup o WHERE o.id = follow_ups_followup.id)"
        )
    Notice.objects.bulk_create(
        Notice(pk=n.pk, follow_up_id=n.follow_up_id, digest_period=n.digest_period, created_at=n.created_at)
        for n in OldNotice.objects.all()
    )
    # Rows were written with explicit ids: move the sequences past them (PostgreSQL).
    from django.core.management.color import no_style

    sequences = connection.ops.sequence_reset_sql(no_style(), [FollowUp, Notice])
    with connection.cursor() as cursor:
        for sql in sequences:
            cursor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0003_recurring_jobs_and_delayed_work"),
        ("follow_ups", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(copy_forward, migrations.RunPython.noop),
        migrations.DeleteModel(name="DeadLetterNotice"),
        migrations.DeleteModel(name="FollowUp"),
    ]
