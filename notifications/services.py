"""Sending email once per purpose, through whatever Django email backend is configured."""

import contextlib
import random
import smtplib
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from notifications.models import EmailDelivery, EmailFaults


class EmailTemporaryFailure(Exception):
    """The mail server could not take the message now (4xx, timeout, refused): try again later."""


class EmailPermanentFailure(Exception):
    """The mail server refused the message for good (5xx, bad recipient): retrying will not help."""


@dataclass(frozen=True)
class EmailSent:
    message_id: str
    already_sent: bool


def staff_recipients() -> list[str]:
    """Who gets staff mail (reports, alerts, digests): active staff users with an email, plus
    ``STAFF_EMAILS``. A job writes one follow-up per recipient, so one refused address delays
    nobody else's copy."""
    users = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)) | set(settings.STAFF_EMAILS))


def email_send(*, purpose_key: str, recipient: str, subject: str, body: str) -> EmailSent:
    """Send one email for ``purpose_key``; if it was sent before, send nothing and say so.

    The Message-ID is derived from the purpose key, so even a resend after a crash between the
    server's acceptance and our log update carries the same ID for the receiving side to fold.
    """
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].rstrip(">") or "localhost"
    delivery, _ = EmailDelivery.objects.get_or_create(
        purpose_key=purpose_key,
        defaults={
            "recipient": recipient,
            "subject": subject,
            "message_id": f"<{purpose_key}@{domain}>",
        },
    )
    if delivery.status == EmailDelivery.Status.SENT:
        return EmailSent(message_id=delivery.message_id, already_sent=True)
    if not _delivery_claim(delivery):  # sent by someone else since we looked
        return EmailSent(message_id=delivery.message_id, already_sent=True)

    _faults_apply(delivery)
    connection = get_connection()
    message = EmailMessage(
        subject=subject,
        body=body,
        to=[recipient],
        headers={"Message-ID": delivery.message_id},
        connection=connection,
    )
    try:
        connection.open()
        message.send()
        # Recorded before the QUIT round trip: the only window in which a crash makes a resend is
        # between the server's "250 OK" and this update, and the resend carries the same Message-ID.
        EmailDelivery.objects.filter(pk=delivery.pk).update(
            status=EmailDelivery.Status.SENT, sent_at=timezone.now(), last_error=""
        )
    except smtplib.SMTPResponseException as exc:
        error = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        _delivery_failed(delivery, error)
        if 400 <= exc.smtp_code < 500:
            raise EmailTemporaryFailure(error) from exc
        raise EmailPermanentFailure(error) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        _delivery_failed(delivery, f"recipient refused: {exc.recipients!r}")
        raise EmailPermanentFailure(f"recipient refused: {exc.recipients!r}") from exc
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        _delivery_failed(delivery, repr(exc))
        raise EmailTemporaryFailure(repr(exc)) from exc
    finally:
        _connection_close_quietly(connection)
    return EmailSent(message_id=delivery.message_id, already_sent=False)


def _delivery_claim(delivery: EmailDelivery) -> bool:
    """Mark the delivery as being sent, unless it was sent meanwhile.

    Who may send is decided by the caller (a follow-up's claim, a job's run key), so a delivery
    left "sending" by a crashed worker is simply sent again, with the same Message-ID; the
    attempts count shows it happened.
    """
    return bool(
        EmailDelivery.objects.filter(pk=delivery.pk)
        .exclude(status=EmailDelivery.Status.SENT)
        .update(
            status=EmailDelivery.Status.SENDING,
            claimed_at=timezone.now(),
            attempts=F("attempts") + 1,
        )
    )


def _connection_close_quietly(connection) -> None:
    # The message's fate was decided before QUIT; a failed goodbye changes nothing.
    with contextlib.suppress(smtplib.SMTPException, OSError):
        connection.close()


def _delivery_failed(delivery: EmailDelivery, error: str) -> None:
    EmailDelivery.objects.filter(pk=delivery.pk).update(
        status=EmailDelivery.Status.FAILED, last_error=error[:2000]
    )


def _faults_apply(delivery: EmailDelivery) -> None:
    """Act out the faults the failure lab switched on, as a real provider would fail."""
    faults = EmailFaults.objects.first()
    if faults is None:
        return
    if faults.latency_ms:
        time.sleep(faults.latency_ms / 1000)
    if faults.poison_recipient and delivery.recipient == faults.poison_recipient:
        error = "SMTP 550: mailbox unavailable (failure lab: poison recipient)"
        _delivery_failed(delivery, error)
        raise EmailPermanentFailure(error)
    if faults.error_rate and random.random() < faults.error_rate:
        error = "SMTP 451: try again later (failure lab: error rate)"
        _delivery_failed(delivery, error)
        raise EmailTemporaryFailure(error)


def email_faults_set(
    *, latency_ms: int, error_rate: float, poison_recipient: str = ""
) -> EmailFaults:
    """Store the email provider faults the failure lab asks for (zeroes switch them off)."""
    with transaction.atomic():
        faults, _ = EmailFaults.objects.select_for_update().get_or_create(pk=1)
        faults.latency_ms = latency_ms
        faults.error_rate = error_rate
        faults.poison_recipient = poison_recipient
        faults.save()
    return faults
