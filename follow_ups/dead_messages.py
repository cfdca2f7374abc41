"""Messages no task can use (an unknown task name, arguments no task accepts, an undecodable body)
become dead letters in the ledger: counted on /ops/, listed in the digest, replayable.

Each is a follow-up of the engine's own kind ``dead_message`` whose effect is to publish the
original message again, so replaying it after a deploy that fixed the cause runs it.
"""

import logging

from celery import current_app
from celery.signals import task_rejected, task_unknown
from django.db import DatabaseError
from django.utils import timezone

from follow_ups import registry
from follow_ups.models import FollowUp

logger = logging.getLogger(__name__)

DEAD_MESSAGE = "dead_message"


def dead_message_record(
    *, task_name: str, task_id: str, args, kwargs, queue: str, error: str
) -> None:
    """Keep the message as a dead letter (once per task id)."""
    now = timezone.now()
    FollowUp.objects.get_or_create(
        key=f"message:{task_id}",
        defaults={
            "kind": DEAD_MESSAGE,
            "label": task_name[:100],
            "payload": {"task": task_name, "args": args, "kwargs": kwargs, "queue": queue},
            "status": FollowUp.Status.DEAD,
            "finished_at": now,
            "last_error": error[:2000],
        },
    )
    logger.error("message %s for %s kept as a dead letter: %s", task_id, task_name, error)


def dead_message_publish(follow_up: FollowUp) -> dict:
    """The replay of a dead message: publish the original task again, as it was."""
    message = follow_up.payload
    result = current_app.send_task(
        message["task"],
        args=message.get("args") or [],
        kwargs=message.get("kwargs") or {},
        queue=message.get("queue") or None,
    )
    return {"republished_as": result.id}


def _on_unknown_task(sender=None, message=None, exc=None, name=None, id=None, **kwargs) -> None:
    _record_quietly(message, task_name=name or "?", task_id=id, error=f"unknown task: {exc}")


def _on_rejected(sender=None, message=None, exc=None, **kwargs) -> None:
    headers = getattr(message, "headers", None) or {}
    _record_quietly(
        message,
        task_name=headers.get("task", "?"),
        task_id=headers.get("id") or getattr(message, "delivery_tag", "?"),
        error=f"message rejected: {exc!r}",
    )


def _record_quietly(message, *, task_name: str, task_id, error: str) -> None:
    try:
        args, kwargs = _arguments(message)
        queue = (getattr(message, "delivery_info", None) or {}).get("routing_key", "")
        dead_message_record(
            task_name=task_name,
            task_id=str(task_id),
            args=args,
            kwargs=kwargs,
            queue=queue,
            error=error,
        )
    except (DatabaseError, ValueError, TypeError):  # never take the consumer down with it
        logger.exception("could not keep the dead message %s", task_id)


def _arguments(message) -> tuple[list, dict]:
    try:
        body = message.decode()
    except Exception:  # undecodable: keep what can be shown
        return [repr(getattr(message, "body", b""))[:1000]], {}
    if isinstance(body, (list, tuple)) and len(body) >= 2:
        return list(body[0]), dict(body[1])
    return [repr(body)[:1000]], {}


def connect() -> None:
    registry.register(
        registry.Kind(
            name=DEAD_MESSAGE,
            label="Dead message",
            queue="default",
            perform=dead_message_publish,
            max_crashes=1,
        )
    )
    task_unknown.connect(_on_unknown_task, weak=False, dispatch_uid="follow-ups-unknown-task")
    task_rejected.connect(_on_rejected, weak=False, dispatch_uid="follow-ups-rejected-task")
