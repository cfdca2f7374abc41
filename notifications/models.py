"""Email delivery: a log that makes each purpose send once, and a dev outbox for mail kept locally."""

from django.db import models


class EmailDelivery(models.Model):
    """One email per purpose key ("order-<id>-confirmation"): a second send for the key is a no-op.

    ``data_started_at`` is committed just before the SMTP DATA command: a row found ``sending``
    without it never reached the point where the server could have the message. ``unknown`` means
    DATA was issued and no reply recorded (a timeout, a lost connection, a killed worker): the
    server may have the message, so nothing is sent again before ``hold_until``.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"
        UNKNOWN = "unknown"

    purpose_key = models.CharField(max_length=200, unique=True)
    recipient = models.EmailField()
    subject = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    message_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    data_started_at = models.DateTimeField(null=True, blank=True)
    hold_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "email deliveries"

    def __str__(self) -> str:
        return f"{self.purpose_key} to {self.recipient}: {self.status}"


class OutboxMessage(models.Model):
    """A message the development email backend kept instead of sending (no EMAIL_HOST set)."""

    from_email = models.CharField(max_length=255, blank=True)
    recipients = models.TextField()
    subject = models.CharField(max_length=255)
    body = models.TextField()
    message_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.subject} to {self.recipients}"


class Unsubscribe(models.Model):
    """An address that asked for no more optional mail (reminders). Transactional mail (the order
    confirmation, the "shipped" email) still goes out: the customer asked for the order."""

    email = models.EmailField(unique=True)  # stored lower-cased
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.email
