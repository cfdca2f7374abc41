"""A publishing design measured, not shipped: one message per order, fanned out by a worker.

The web's share is one message naming the order's follow-ups (``fan_out_after_commit``); a worker
of the email's queue takes it and publishes each follow-up's message, then marks them handed over,
as the web does under the default (``follow_ups_fan_out``). Measure 8 sets its commit → email
against the default's, order by order; ``bench.publish`` measures its web share (``one_message``).
A fan-out message that is lost leaves its rows to the relay, after its grace.
"""

from celery import current_app, shared_task
from django.db import transaction

from follow_ups.models import FollowUp
from follow_ups.relay import _publish

FAN_OUT_TASK = "bench.follow_ups_fan_out"
FAN_OUT_QUEUE = "critical"  # the confirmation email's queue: the effect a shopper waits for


@shared_task(name=FAN_OUT_TASK, ignore_result=True)
def follow_ups_fan_out(follow_up_ids: list[int]) -> int:
    """Publish the rows not yet handed over, over one connection, and mark them: as the relay
    does (``follow_ups.relay._publish``)."""
    published, _ = _publish(
        FollowUp.objects.filter(
            pk__in=follow_up_ids, status=FollowUp.Status.PENDING, published_at__isnull=True
        )
    )
    return published


def fan_out_after_commit(follow_ups) -> None:
    """In place of ``follow_ups_publish_after_commit``: one message per order, after commit."""
    ids = [follow_up.pk for follow_up in follow_ups]
    if ids:
        transaction.on_commit(
            lambda: current_app.send_task(FAN_OUT_TASK, args=[ids], queue=FAN_OUT_QUEUE),
            robust=True,
        )
