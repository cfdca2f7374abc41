"""Follow-ups are published only after the order commits, and never when it rolls back."""

import pytest
from django.db import transaction

from orders.models import FollowUp, Order
from orders.services import TASK_NAME_BY_KIND
from tests.factories import ProductFactory, place_order


@pytest.mark.django_db
def test_one_publish_per_follow_up_is_registered_for_after_commit(
    django_capture_on_commit_callbacks,
):
    product = ProductFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        order = place_order((product, 1)).order
    follow_ups = {f.pk: f.kind for f in order.follow_ups.all()}
    assert len(callbacks) == 3
    assert {cb.keywords["follow_up_id"]: cb.keywords["kind"] for cb in callbacks} == follow_ups


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
