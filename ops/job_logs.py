"""JSON log lines for every job event, and a request id that follows a click into its jobs.

The web side gives each request an id (``ops.middleware.RequestIdMiddleware``); when a task is
published during that request, ``before_task_publish`` copies the id into the message headers. On
the worker, ``task_prerun`` binds it to the log context, so the job's lines carry the same id:

    {"event": "job.finished", "job": "follow_ups.run", "task_id": "…",
     "request_id": "…", "kind": "invoice", "label": "CS-…", "attempt": 1, "duration_ms": 41.2,
     "outcome": "succeeded", "error": null, ...}

A follow-up's ``job.started`` is written once its claim has decided, with the kind, label and
attempt of the row the claim took (or read): the job log reads no row of its own.

``grep <request id>`` follows an order from the click to its invoice. The lines are written to the
``jobs`` logger, which settings send to stderr as one JSON object per line.
"""

import logging
import time

import structlog
from celery.signals import before_task_publish, task_postrun, task_prerun

from follow_ups.models import FollowUp
from follow_ups.services import RUN_TASK_NAME, AttemptFailed
from follow_ups.signals import follow_up_claim_decided

REQUEST_ID_HEADER = "request_id"
JOB_LOGGER = "jobs"

logger = structlog.get_logger(JOB_LOGGER)

FOLLOW_UP_TASKS = frozenset({RUN_TASK_NAME})
# Start times of the tasks running in this worker process, by task id.
_started: dict[str, float] = {}
# Follow-up tasks whose job.started waits for their claim to name the row.
_awaiting_claim: set[str] = set()


def configure() -> None:
    """JSON lines through the standard library, so Django's LOGGING decides where they go."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


def connect() -> None:
    configure()
    before_task_publish.connect(_add_request_id_header, weak=False, dispatch_uid="ops-publish")
    task_prerun.connect(_job_started, weak=False, dispatch_uid="ops-prerun")
    task_postrun.connect(_job_finished, weak=False, dispatch_uid="ops-postrun")
    follow_up_claim_decided.connect(
        _follow_up_claim_decided, weak=False, dispatch_uid="ops-follow-up-claim"
    )


def _add_request_id_header(sender=None, headers=None, body=None, **kwargs) -> None:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if headers is None:
        return
    if request_id and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = request_id
    logger.info(
        "job.published",
        job=sender,
        task_id=headers.get("id"),
        request_id=headers.get(REQUEST_ID_HEADER),
    )


def _job_started(sender=None, task_id=None, task=None, args=None, **kwargs) -> None:
    _started[task_id] = time.monotonic()
    structlog.contextvars.clear_contextvars()
    # Bound for every line of the job, job.finished included.
    structlog.contextvars.bind_contextvars(
        request_id=_request_id_of(task.request), task_id=task_id, job=task.name
    )
    follow_up_id = _follow_up_id_of(task.name, args)
    if follow_up_id is None:
        logger.info("job.started")
        return
    structlog.contextvars.bind_contextvars(follow_up_id=follow_up_id)
    _awaiting_claim.add(task_id)


def _follow_up_claim_decided(
    sender=None, follow_up_id=None, follow_up: FollowUp | None = None, claimed=False, **kwargs
) -> None:
    """job.started for a follow-up task, named from the row its claim took or read."""
    context = structlog.contextvars.get_contextvars()
    task_id = context.get("task_id")
    if task_id not in _awaiting_claim or context.get("follow_up_id") != follow_up_id:
        return  # not a job's claim (a test, a shell): nothing to log
    _awaiting_claim.discard(task_id)
    if follow_up is not None:
        structlog.contextvars.bind_contextvars(
            kind=follow_up.kind,
            label=follow_up.label,
            # The attempt this run is (claimed), or would have been (a copy that was skipped).
            attempt=follow_up.attempts if claimed else follow_up.attempts + 1,
        )
    logger.info("job.started")


def _job_finished(
    sender=None, task_id=None, task=None, args=None, retval=None, state=None, **kwargs
) -> None:
    if task_id in _awaiting_claim:  # it failed before its claim decided (the database away)
        _awaiting_claim.discard(task_id)
        logger.info("job.started")
    started = _started.pop(task_id, None)
    duration_ms = round((time.monotonic() - started) * 1000, 1) if started else None
    outcome, error = _outcome(state, retval)
    log = logger.error if outcome in ("failed", "dead") else logger.info
    log(
        "job.finished",
        duration_ms=duration_ms,
        outcome=outcome,
        error=error,
    )
    structlog.contextvars.clear_contextvars()


def _outcome(state: str | None, retval) -> tuple[str, str | None]:
    if state == "RETRY":
        reason = getattr(retval, "exc", None) or retval
        return "retrying", f"{type(reason).__name__}: {reason}"
    if isinstance(retval, AttemptFailed) and retval.dead:  # expected: the row is a dead letter
        return "dead", f"{type(retval).__name__}: {retval}"
    if state == "FAILURE" or isinstance(retval, BaseException):
        return "failed", f"{type(retval).__name__}: {retval}"
    if isinstance(retval, dict) and retval.get("skipped"):
        return "skipped", None
    return "succeeded", None


def _request_id_of(request) -> str | None:
    # Custom message headers show up as request attributes; older protocols nest them.
    return getattr(request, REQUEST_ID_HEADER, None) or (
        getattr(request, "headers", None) or {}
    ).get(REQUEST_ID_HEADER)


def _follow_up_id_of(job: str, args) -> int | None:
    """The row id a follow-up task takes, or ``None`` for any other job or message."""
    if job not in FOLLOW_UP_TASKS or not args or type(args[0]) is not int:
        return None
    return args[0]
