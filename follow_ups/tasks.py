"""The engine's Celery entry points: run a follow-up by its row id, and the dead-letter digest job.

Every kind runs through this task, published to the kind's queue; the row says what to do. It keeps
no result of its own (the row is the result). A message that carries anything but one row id cannot
be run by any code and becomes a dead letter (``follow_ups.dead_messages``), never a silent failure.
"""

from celery import Task, shared_task
from celery.exceptions import Retry

from follow_ups import dead_letter_digest, dead_messages, services
from scheduling.services import job_run, manual_period


# ``throws``: a dead letter or a lost lease is an expected outcome, logged in a line, not a traceback.
@shared_task(
    bind=True,
    name=services.RUN_TASK_NAME,
    ignore_result=True,
    throws=(services.AttemptFailed, services.LeaseLost),
)
def follow_up_run_task(self: Task, *args, **kwargs) -> dict:
    if kwargs or len(args) != 1 or type(args[0]) is not int:
        dead_messages.dead_message_record(
            task_name=self.name,
            task_id=self.request.id,
            args=list(args),
            kwargs=kwargs,
            queue=(self.request.delivery_info or {}).get("routing_key", ""),
            error="the message does not carry one follow-up id",
        )
        return {"skipped": True, "dead_message": True}
    try:
        return services.follow_up_run(follow_up_id=args[0])
    except services.AttemptFailed as failed:
        if failed.dead:
            raise
        # Shown as RETRY in Flower and the job log. Nothing is re-sent from here: the retry waits
        # in the database and the relay publishes it once it is due.
        raise Retry(str(failed), exc=failed.__cause__, when=failed.retry_in) from failed


# Scheduled in config/schedules.py. Beat passes ``period``; ``job_run`` makes a second run for the
# same period a no-op. The job only writes rows: the digest emails are follow-ups.
@shared_task(soft_time_limit=120, time_limit=150)
def dead_letter_digest_task(period: str | None = None) -> dict:
    period = period or manual_period()
    return job_run(
        job="dead-letter-digest",
        period=period,
        work=lambda: dead_letter_digest.dead_letter_digest_create(period=period),
    )
