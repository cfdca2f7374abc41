"""The publishing design measure 6 sets against the default and the shop does not ship
(``bench/api.py``): an order's messages on a channel of the thread's own, then one wait for all
their confirms. What it hands over is counted in the real broker's queue."""

import pytest

from follow_ups import services
from follow_ups.broker import queue_depths
from follow_ups.models import FollowUp

pytestmark = [pytest.mark.django_db, pytest.mark.rabbitmq]


@pytest.fixture
def one_confirm_wait(monkeypatch):
    # bench.api wraps the shop's publish when imported (for the benchmark's gunicorn); the
    # wrapper is undone after the test.
    monkeypatch.setattr(
        services, "follow_ups_publish_after_commit", services.follow_ups_publish_after_commit
    )
    from bench import api

    api._batches.batch = None  # each test opens its own channel
    yield api._publish_one_confirm_wait
    if api._batches.batch is not None:
        api._batches.batch.close()
        api._batches.batch = None


def test_one_confirm_wait_hands_every_message_to_the_broker_then_marks_the_rows(
    one_confirm_wait,
    make_follow_up,
    published_tasks,
    test_queue,
    django_capture_on_commit_callbacks,
):
    rows = [make_follow_up() for _ in range(3)]
    published_tasks.clear()

    with django_capture_on_commit_callbacks(execute=True):
        one_confirm_wait(rows)

    assert sorted(args[0] for _, args in published_tasks) == sorted(row.pk for row in rows)
    assert queue_depths([test_queue])[test_queue] == 3
    marked = FollowUp.objects.filter(pk__in=[row.pk for row in rows], published_at__isnull=False)
    assert marked.count() == 3


def test_fan_out_sends_one_message_per_order_and_the_worker_hands_over_each_follow_up_once(
    make_follow_up, published_tasks, test_queue, django_capture_on_commit_callbacks, monkeypatch
):
    """The other design measured and not shipped (bench/tasks.py, measure 8): the web sends one
    message naming the order's follow-ups; the task a worker runs for it publishes each one."""
    from bench import tasks

    monkeypatch.setattr(tasks, "FAN_OUT_QUEUE", test_queue)  # a queue no worker consumes
    rows = [make_follow_up() for _ in range(3)]
    ids = [row.pk for row in rows]
    published_tasks.clear()

    with django_capture_on_commit_callbacks(execute=True):
        tasks.fan_out_after_commit(rows)
    assert published_tasks == [(tasks.FAN_OUT_TASK, [ids])]

    assert tasks.follow_ups_fan_out(ids) == 3  # the task's body, as the worker runs it
    assert tasks.follow_ups_fan_out(ids) == 0  # a re-delivered copy hands over nothing again
    assert sorted(args[0] for name, args in published_tasks[1:]) == sorted(ids)
    assert queue_depths([test_queue])[test_queue] == 1 + 3
    assert FollowUp.objects.filter(pk__in=ids, published_at__isnull=False).count() == 3
