"""Follow-ups are published only after the order commits, and never when it rolls back."""

import pytest
from django.db import transaction

from orders.models import FollowUp, Order
from orders.services import TASK_NAME_BY_KIND
from tests.factories import ProductFactory, place_order


@pytest.mark.django_db
def test_one_publish_per_follow_up_is_registered_for_after_commit(
    django_capture_on_commit_callbacks, published_tasks
):
    product = ProductFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        order = place_order((product, 1)).order
    assert len(callbacks) == 3
    assert published_tasks == []
    for callback in callbacks:
        callback()
    expected = sorted((TASK_NAME_BY_KIND[f.kind], [f.pk]) for f in order.follow_ups.all())
    assert sorted(published_tasks) == expected


@pytest.mark.django_db(transaction=True)
def test_nothing_is_published_before_commit(published_tasks):
    product = ProductFactory()
    with transaction.atomic():
        order = place_order((product, 1)).order
        assert published_tasks == []
    expected = sorted((TASK_NAME_BY_KIND[f.kind], [f.pk]) for f in order.follow_ups.all())
    assert sorted(published_tasks) == expected


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
    assert all(f.published_at is not None for f in order.follow_ups.all())


@pytest.mark.django_db
def test_while_the_publish_breaker_is_open_checkouts_leave_publishing_to_the_relay(
    django_capture_on_commit_callbacks, published_tasks
):
    from orders.services import publish_breaker

    publish_breaker.trip()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            order = place_order((ProductFactory(), 1)).order
        assert published_tasks == []
        assert set(order.follow_ups.values_list("status", "published_at")) == {("pending", None)}
    finally:
        publish_breaker.closed_again_at = 0.0
    with django_capture_on_commit_callbacks(execute=True):
        place_order((ProductFactory(), 1))
    assert len(published_tasks) == 3
