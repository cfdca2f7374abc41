"""What the broker holds: messages ready per queue, and follow-ups reserved or running in workers.

The relay asks both to tell a lost message from a queued one; /ops/ shows the depths. Every question
has a short timeout: a broker or worker that is away makes the answer "unknown" (``None``), never
a hang.
"""

import logging

from celery import current_app

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 1.0
INSPECT_TIMEOUT_SECONDS = 1.0


def queue_depths(queues: list[str]) -> dict[str, int | None]:
    """Messages ready in each queue, asked of the broker itself (a passive declare)."""
    depths: dict[str, int | None] = dict.fromkeys(queues)
    try:
        with current_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
            for queue in queues:
                # A channel per queue: on AMQP a passive declare of a missing queue closes it.
                channel = conn.channel()
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except conn.channel_errors:
                    depths[queue] = 0  # never declared: nothing was ever published to it
                finally:
                    try:
                        channel.close()
                    except conn.channel_errors + conn.connection_errors:  # closed by the broker
                        logger.debug("channel for %s already closed", queue)
    except Exception:
        logger.warning("broker unreachable for queue depths", exc_info=True)
    return depths


def follow_ups_held_by_workers(task_name: str) -> set[int] | None:
    """Ids of the follow-ups whose messages a worker has taken but not finished (reserved or
    active); ``None`` when no worker could be asked."""
    try:
        inspect = current_app.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS)
        replies = [inspect.reserved() or {}, inspect.active() or {}]
    except Exception:
        logger.warning("could not ask the workers what they hold", exc_info=True)
        return None
    held: set[int] = set()
    for reply in replies:
        for requests in reply.values():
            for request in requests:
                args = request.get("args") or []
                if request.get("name") == task_name and args and isinstance(args[0], int):
                    held.add(args[0])
    return held
