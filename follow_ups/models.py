"""The ledger of side effects: one row per effect on an outside system, written in the transaction
that decides it.

A ``FollowUp`` row is the outbox and the status ledger at once. It is published to Celery after
commit, re-published by the relay when its message was never handed over or was lost, owned by one
live execution at a time (a lease renewed by a heartbeat, with a fencing token), and it records
every attempt. The engine knows nothing of what the effect is about: ``subject`` and ``label`` are
opaque strings the declaring app chooses ("order:<uuid>", "CS-7KQ2M9XD").
"""

from django.db import models


class FollowUp(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        RETRYING = "retrying"
        # Its provider's breaker is open: it waits, spending no attempt, until a probe succeeds.
        WAITING = "waiting"
        SUCCEEDED = "succeeded"
        DEAD = "dead"

    # What makes the effect unique ("order:<uuid>:confirmation_email"): the second row for the same
    # effect cannot exist, so a job that runs twice creates nothing twice.
    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=64)  # a kind declared in follow_ups.registry
    subject = models.CharField(max_length=100, db_index=True, blank=True)
    label = models.CharField(max_length=100, blank=True)  # for people: admin, Flower, logs
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)  # every start counts, finished or not
    # Starts that never recorded an outcome (the worker died, the time limit struck): a poison
    # follow-up is buried after FOLLOW_UP_MAX_CRASHES of them, whatever its deadline.
    crashes = models.PositiveIntegerField(default=0)
    # Since when it has been retrying or waiting for its provider (its first transient failure, or
    # its first wait): the kind's deadline counts from here; cleared when it succeeds or is replayed.
    retrying_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The last transition. The engine's transitions are conditional UPDATEs, which auto_now never
    # sees: each sets it. Lease renewals (a heartbeat) leave it.
    updated_at = models.DateTimeField(auto_now=True)
    # When the current message was handed to the broker; NULL: nothing is owed to the broker yet.
    published_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The live execution: its fencing token, and how long its lease lasts unless renewed.
    lease_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="follow_ups_status_created"),
            models.Index(fields=["status", "published_at"], name="follow_ups_status_published"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.label or self.subject}: {self.status}"

    @property
    def kind_label(self) -> str:
        from follow_ups.registry import UnknownKind, kind_get

        try:
            return kind_get(self.kind).label
        except UnknownKind:
            return self.kind


class Breaker(models.Model):
    """A provider's circuit breaker, shared by every worker on every host (one row a provider).

    Closed: follow-ups run; ``failures`` counts consecutive transient failures. Open: its
    follow-ups wait (``FollowUp.Status.WAITING``) until ``probe_at``. Half-open: one follow-up,
    ``probe_follow_up_id``, tests the provider; its success closes the breaker, its failure
    opens it again.
    """

    class State(models.TextChoices):
        CLOSED = "closed"
        OPEN = "open"
        HALF_OPEN = "half_open", "half-open"

    provider = models.CharField(max_length=64, primary_key=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.CLOSED)
    failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)  # since when it is not closed
    probe_at = models.DateTimeField(null=True, blank=True)  # no probe before this
    probe_follow_up_id = models.BigIntegerField(null=True, blank=True)
    probe_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.provider}: {self.get_state_display()}"


class DeadLetterNotice(models.Model):
    """A dead follow-up that a staff digest has listed; each dead letter is listed once."""

    follow_up = models.OneToOneField(FollowUp, on_delete=models.CASCADE, related_name="+")
    digest_period = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Listed {self.follow_up_id} in {self.digest_period}"


class RelayState(models.Model):
    """What the active relay last did, for /ops/, /metrics and the readiness probe (one row)."""

    holder = models.CharField(max_length=200, blank=True)
    ticked_at = models.DateTimeField(null=True, blank=True)
    published = models.PositiveBigIntegerField(default=0)  # never handed over, or a retry due
    recovered = models.PositiveBigIntegerField(default=0)  # held by an execution whose lease lapsed
    republished = models.PositiveBigIntegerField(default=0)  # messages the broker no longer held
    failed = models.PositiveBigIntegerField(default=0)  # publishes the broker refused
    lag_seconds = models.FloatField(default=0.0)  # age of the oldest row owed to the broker

    def __str__(self) -> str:
        return f"relay {self.holder} at {self.ticked_at}"
