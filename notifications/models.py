"""Email delivery: a log that makes each purpose send once, and a dev outbox for mail kept locally."""

from django.db import models


class EmailDelivery(models.Model):
    """One email per purpose key ("order-<id>-confirmation"): a second send for the key is a no-op."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    purpose_key = models.CharField(max_length=200, unique=True)
    recipient = models.EmailField()
    subject = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    message_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "email deliveries"

    def __str__(self) -> str:
        return f"{self.purpose_key} to {self.recipient}: {self.status}"


class OutboxMessage(models.Model):
    """A message the development email backend kept instead of sending (no EMAIL_HOST set)."""

    recipients = models.TextField()
    subject = models.CharField(max_length=255)
    body = models.TextField()
    message_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.subject} to {self.recipients}"


class EmailFaults(models.Model):
    """Faults the failure lab switched on for the email provider; one row, read before each send.

    Latency is slept before sending; ``error_rate`` is the share of sends refused as temporary
    failures (retried); mail to ``poison_recipient`` is refused for good (a dead letter at once).
    """

    latency_ms = models.PositiveIntegerField(default=0)
    error_rate = models.FloatField(default=0.0)
    poison_recipient = models.EmailField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "email faults"

    def __str__(self) -> str:
        return f"email: {self.latency_ms} ms, {self.error_rate:.0%} errors"
