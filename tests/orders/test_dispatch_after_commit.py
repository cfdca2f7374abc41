"""Follow-ups are published only after the order commits, and never when it rolls back."""

import pytest
from django.db import transaction

from follow_ups.models import FollowUp
from follow_ups.services import RUN_TASK_NAME, publish_breaker
from orders.models import Order
from orders.services import order_subject
from tests.factories import ProductFactory, place_order


def follow_ups_of(order: Order):
    return FollowUp.objects.filter(subject=order_subject(order.pk))


def one_run_per_follow_up(order: Order) -> list:
    """What the broker should have received: one ``follow_ups.run`` per row, carrying its id."""
    return sorted((RUN_TASK_NAME, [pk]) for pk in follow_ups_of(order).values_list("pk", flat=True))


@pytest.mark.django_db
def test_one_publish_per_follow_up_is_registered_for_after_commit(
    django_capture_on_commit_callbacks, published_tasks
):
    product = ProductFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        order = place_order((product, 1)).order
    # One callback per follow-up, then the one that marks them published.
    assert len(callbacks) == 4
    assert published_tasks == []
    for callback in callbacks[:3]:
        callback()
    assert sorted(published_tasks) == one_run_per_follow_up(order)
    assert set(follow_ups_of(order).values_list("published_at", flat=True)) == {None}
    callbacks[3]()
    assert None not in set(follow_ups_of(order).values_list("published_at", flat=True))


@pytest.mark.django_db
def test_the_published_follow_ups_are_marked_in_one_update(
    django_capture_on_commit_callbacks, django_assert_num_queries, published_tasks
):
    with django_capture_on_commit_callbacks() as callbacks:
        place_order((ProductFactory(), 1))
    for publish in callbacks[:3]:
        publish()
    with django_assert_num_queries(1) as queries:
        callbacks[3]()
    assert queries.captured_queries[0]["sql"].startswith('UPDATE "follow_ups_followup"')


@pytest.mark.django_db
def test_a_follow_up_whose_publish_failed_is_not_marked_published(
    django_capture_on_commit_callbacks, published_tasks
):
    """The relay must see it as never published, and publish it after the grace period."""
    with django_capture_on_commit_callbacks() as callbacks:
        order = place_order((ProductFactory(), 1)).order
    callbacks[0]()
    publish_breaker.trip()  # the broker went away after the first publish
    try:
        for callback in callbacks[1:]:
            callback()
    finally:
        publish_breaker.closed_again_at = 0.0
    assert len(published_tasks) == 1
    published_id = published_tasks[0][1][0]
    marked = dict(follow_ups_of(order).values_list("pk", "published_at"))
    assert marked.pop(published_id) is not None
    assert set(marked.values()) == {None}


@pytest.mark.django_db(transaction=True)
def test_nothing_is_published_before_commit(published_tasks):
    product = ProductFactory()
    with transaction.atomic():
        order = place_order((product, 1)).order
        assert published_tasks == []
    assert sorted(published_tasks) == one_run_per_follow_up(order)


@pytest.mark.django_db(transaction=True)
def test_nothing_is_published_when_the_transaction_rolls_back(published_tasks):
    product = ProductFactory(stock=5)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        place_order((product, 1))
        raise Abort

    assert published_tasks == []
    assert not Order.objects.exists()
    assert not FollowUp.objects.exists()
    product.refresh_from_db()
    assert product.stock == 5


@pytest.mark.django_db(transaction=True)
def test_published_follow_ups_are_marked_published(published_tasks):
    order = place_order((ProductFactory(), 1)).order
    assert all(f.published_at is not None for f in follow_ups_of(order))


@pytest.mark.django_db
def test_while_the_publish_breaker_is_open_checkouts_leave_publishing_to_the_relay(
    django_capture_on_commit_callbacks, published_tasks
):
    publish_breaker.trip()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            order = place_order((ProductFactory(), 1)).order
        assert published_tasks == []
        assert set(follow_ups_of(order).values_list("status", "published_at")) == {
            ("pending", None)
        }
    finally:
        publish_breaker.closed_again_at = 0.0
    with django_capture_on_commit_callbacks(execute=True):
        place_order((ProductFactory(), 1))
    assert len(published_tasks) == 3


@pytest.mark.django_db(transaction=True)
def test_each_follow_up_is_published_to_the_queue_of_its_urgency():
    """One task runs every kind; the queue says how urgent it is, and Flower shows what it is."""
    from celery.signals import before_task_publish

    sent: dict[int, tuple[str, str]] = {}

    def record(sender=None, body=None, headers=None, routing_key=None, **kwargs):
        sent[body[0][0]] = (routing_key, headers["argsrepr"])

    before_task_publish.connect(record, weak=False)
    try:
        order = place_order((ProductFactory(), 1)).order
    finally:
        before_task_publish.disconnect(record)

    queues = {f.kind: sent[f.pk] for f in follow_ups_of(order)}
    assert {kind: queue for kind, (queue, _) in queues.items()} == {
        "confirmation_email": "critical",
        "warehouse_sync": "default",
        "invoice": "bulk",
    }
    for kind, (_, argsrepr) in queues.items():
        assert argsrepr.endswith(f"{kind} {order.number}")
