"""The ledger's move out of ``orders``: every existing row is carried over, with its id."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

MOVE = ("orders", "0004_follow_ups_move_to_their_app")


def migrate(targets):
    """Migrate the test database to ``targets``; return the models as they are there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


@pytest.mark.django_db(transaction=True)
def test_existing_follow_ups_and_notices_are_carried_over_with_their_ids():
    executor = MigrationExecutor(connection)
    before = [node.key for node in executor.loader.graph.node_map[MOVE].parents]
    latest = executor.loader.graph.leaf_nodes()
    try:
        old = migrate(before)
        Order = old.get_model("orders", "Order")
        OldFollowUp = old.get_model("orders", "FollowUp")
        OldNotice = old.get_model("orders", "DeadLetterNotice")
        order = Order.objects.create(
            number="CS-MIGRATE1",
            email="ann@example.com",
            name="Ann",
            address_line1="Kerkstraat 1",
            address_city="Amsterdam",
            address_postal_code="1017 GA",
            address_country="NL",
            total="7.00",
            payment_reference="pay-1",
        )
        long_ago = timezone.now() - timedelta(days=3)
        done = OldFollowUp.objects.create(
            order=order, kind="invoice", status="succeeded", attempts=1, result={"invoice_id": 9}
        )
        dead = OldFollowUp.objects.create(
            order=order, kind="warehouse_sync", status="dead", attempts=8, last_error="HTTP 422"
        )
        running = OldFollowUp.objects.create(
            order=order, kind="confirmation_email", status="running", attempts=2
        )
        OldFollowUp.objects.filter(pk=done.pk).update(created_at=long_ago)
        OldNotice.objects.create(follow_up=dead, digest_period="2026-11-01", created_at=long_ago)
    finally:
        new = migrate(latest)

    FollowUp = new.get_model("follow_ups", "FollowUp")
    Notice = new.get_model("follow_ups", "DeadLetterNotice")
    rows = {row.pk: row for row in FollowUp.objects.all()}
    assert set(rows) == {done.pk, dead.pk, running.pk}
    subject = f"order:{order.pk}"
    assert rows[done.pk].key == f"{subject}:invoice"
    assert (rows[done.pk].subject, rows[done.pk].label) == (subject, "CS-MIGRATE1")
    assert rows[done.pk].result == {"invoice_id": 9}
    assert abs(rows[done.pk].created_at - long_ago) < timedelta(seconds=1)
    assert (rows[dead.pk].status, rows[dead.pk].attempts) == ("dead", 8)
    # A row a worker held when the release went out has a lapsed lease: the relay takes it back.
    assert rows[running.pk].lease_expires_at <= timezone.now()
    assert list(Notice.objects.values_list("follow_up_id", flat=True)) == [dead.pk]
    # New rows get ids past the carried-over ones.
    assert FollowUp.objects.create(key="after-the-move", kind="invoice").pk > running.pk
