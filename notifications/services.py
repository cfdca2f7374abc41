"""Sending email once per purpose, through whatever Django email backend is configured.

What happens at the SMTP boundary (docs/reliability.md, "Email at the SMTP boundary"):

- ``data_started_at`` is committed just before DATA. A failure or a crash before it means the
  server has nothing: the next attempt sends at once.
- The server's 250 is recorded at once, in its own commit, before QUIT. If the database fails
  there, the write is retried for ``EMAIL_RECORD_SENT_PATIENCE_SECONDS``; the send never is.
- No reply to DATA (a timeout, a lost connection, a sender killed after DATA) makes the delivery
  ``unknown``: the server may have the message. Nothing is sent for ``EMAIL_UNKNOWN_HOLD_SECONDS``;
  after that it is sent again with the same Message-ID, for the receiving side to fold.

Each thread (a worker child runs its tasks in one) keeps its SMTP connection from one email to the
next: a kept connection is checked with RSET before MAIL and replaced if the server closed it, and
it is dropped after any error, whose session state nobody knows.

``email_send`` must run outside a transaction (tasks do), so that each of those writes is its own
commit.
"""

import logging
import os
import smtplib
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.mail import EmailMessage, get_connection
from django.db import DatabaseError, connection
from django.db.models import F, Q

from notifications.backends import connection_close_quietly, message_hand_over
from notifications.models import EmailDelivery, Unsubscribe
from scheduling import clock

logger = logging.getLogger(__name__)


class EmailTemporaryFailure(Exception):
    """The mail server could not take the message now (4xx, timeout, refused): try again later.

    ``retry_after`` is set when no attempt can do anything for that many seconds (a delivery held
    as unknown); a retry policy should wait at least that long.
    """

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class EmailHeld(EmailTemporaryFailure):
    """Nothing may be sent now for a reason of ours: the delivery is held as unknown until
    ``retry_after``, or another sender holds it. Says nothing about the mail server's health, so
    a circuit breaker does not count it."""


# How any background job that sends email treats its failures: retry the temporary ones, behind
# the one circuit breaker every email shares (the SMTP server), which a hold does not trip.
EMAIL_DELIVERY_TRAITS = {
    "transient": (EmailTemporaryFailure,),
    "provider": "smtp",
    "breaker_ignores": (EmailHeld,),
}


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


def email_send(
    *, purpose_key: str, recipient: str, subject: str, body: str, headers: dict | None = None
) -> EmailSent:
    """Send one email for ``purpose_key``; if it was sent before, send nothing and say so.

    The Message-ID is derived from the purpose key, so any resend carries the same ID for the
    receiving side to fold. Raises ``EmailTemporaryFailure`` (retry later, not before its
    ``retry_after``) or ``EmailPermanentFailure``; never raises once the server answered 250.
    """
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].rstrip(">") or "localhost"
    # A delivery that did not exist is created already claimed by this sender: the claim's UPDATE
    # would change nothing a crash in between could tell apart (both mean "send at once").
    delivery, created = _delivery_create_or_get(
        EmailDelivery(
            purpose_key=purpose_key,
            recipient=recipient,
            subject=subject,
            message_id=f"<{purpose_key}@{domain}>",
            status=EmailDelivery.Status.SENDING,
            claimed_at=clock.now(),
            attempts=1,
        )
    )
    if delivery.status == EmailDelivery.Status.SENDING and delivery.data_started_at is not None:
        # The last sender issued DATA and recorded no reply: it was killed, or lost its database.
        raise _delivery_hold(delivery, error="the sender stopped after DATA with no reply recorded")
    if delivery.status == EmailDelivery.Status.SENT:
        return EmailSent(message_id=delivery.message_id, already_sent=True)
    if _is_held(delivery):
        raise _held_failure(delivery)
    claimed_at = delivery.claimed_at if created else _delivery_claim(delivery)
    if claimed_at is None:
        delivery.refresh_from_db()
        if delivery.status == EmailDelivery.Status.SENT:
            return EmailSent(message_id=delivery.message_id, already_sent=True)
        if _is_held(delivery):
            raise _held_failure(delivery)
        raise EmailHeld(f"{purpose_key} changed hands while claiming it")

    backend = _email_connection()
    message = EmailMessage(
        subject=subject,
        body=body,
        to=[recipient],
        headers={**(headers or {}), "Message-ID": delivery.message_id},
    )
    data_started = accepted = False

    def data_start() -> None:
        nonlocal data_started
        # Only while the delivery is still this sender's claim. A sender that stalled before DATA
        # (its host cut off from the network, frozen) may find, when it goes on, that another
        # sender claimed the delivery since and sent it: it must not send it again.
        marked = EmailDelivery.objects.filter(
            pk=delivery.pk,
            status=EmailDelivery.Status.SENDING,
            claimed_at=claimed_at,
            data_started_at__isnull=True,
        ).update(data_started_at=clock.now())
        if not marked:
            raise _DeliveryTakenOver
        data_started = True

    try:
        message_hand_over(backend, message, before_data=data_start)
        accepted = True
    except _DeliveryTakenOver:
        delivery.refresh_from_db()
        if delivery.status == EmailDelivery.Status.SENT:
            return EmailSent(message_id=delivery.message_id, already_sent=True)
        if _is_held(delivery):
            raise _held_failure(delivery) from None
        raise EmailHeld(f"{purpose_key} was taken over before DATA") from None
    except smtplib.SMTPRecipientsRefused as exc:
        error = f"recipient refused: {exc.recipients!r}"
        _delivery_failed(delivery, error)
        if all(400 <= code < 500 for code, _ in exc.recipients.values()):
            raise EmailTemporaryFailure(error) from exc
        raise EmailPermanentFailure(error) from exc
    except smtplib.SMTPResponseException as exc:
        # A reply that refuses, to MAIL, RCPT or DATA: the server did not take the message.
        error = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        _delivery_failed(delivery, error)
        if 400 <= exc.smtp_code < 500:
            raise EmailTemporaryFailure(error) from exc
        raise EmailPermanentFailure(error) from exc
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        if data_started:
            raise _delivery_hold(delivery, error=f"no reply to DATA: {exc!r}") from exc
        _delivery_failed(delivery, repr(exc))
        raise EmailTemporaryFailure(repr(exc)) from exc
    else:
        # In its own commit, before anything else is said on the connection: from here on the
        # caller must not send again.
        _delivery_record_sent(delivery)
    finally:
        if not accepted:  # after an error the session's state is unknown: never reuse it
            email_connection_discard()
    return EmailSent(message_id=delivery.message_id, already_sent=False)


def _delivery_create_or_get(new: EmailDelivery) -> tuple[EmailDelivery, bool]:
    """``new`` inserted, or the delivery that already has its purpose key; and whether it was new.

    A first send takes one statement, ``INSERT … ON CONFLICT DO NOTHING RETURNING``, where
    ``get_or_create`` takes four (SELECT, BEGIN, INSERT, COMMIT); the existing row is read only
    when the insert found one. Two senders racing both get the one row, as with get_or_create.
    """
    if not connection.features.can_return_columns_from_insert:
        defaults = {f.name: getattr(new, f.attname) for f in _INSERTED_FIELDS}
        defaults.pop("purpose_key")
        return EmailDelivery.objects.get_or_create(purpose_key=new.purpose_key, defaults=defaults)
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(EmailDelivery._meta.db_table)} "  # noqa: S608 (names, not input)
        f"({', '.join(quote(f.column) for f in _INSERTED_FIELDS)}) "
        f"VALUES ({', '.join(['%s'] * len(_INSERTED_FIELDS))}) "
        f"ON CONFLICT ({quote('purpose_key')}) DO NOTHING RETURNING {quote('id')}"
    )
    values = [f.get_db_prep_save(f.pre_save(new, add=True), connection) for f in _INSERTED_FIELDS]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return EmailDelivery.objects.get(purpose_key=new.purpose_key), False
    new.pk = row[0]
    new._state.adding, new._state.db = False, connection.alias
    return new, True


_INSERTED_FIELDS = [f for f in EmailDelivery._meta.concrete_fields if not f.primary_key]


class _KeptConnection(threading.local):
    backend = None
    settings_key: tuple = ()
    pid = 0


_kept = _KeptConnection()


def _email_settings_key() -> tuple:
    return tuple(
        getattr(settings, name, None)
        for name in (
            "EMAIL_BACKEND", "FAILURE_LAB_REAL_EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT",
            "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "EMAIL_USE_TLS", "EMAIL_USE_SSL",
            "EMAIL_SSL_CERTFILE", "EMAIL_SSL_KEYFILE", "EMAIL_TIMEOUT",
        )
    )  # fmt: skip


def _email_connection():
    """This thread's email backend, its SMTP connection kept open between emails: one session per
    worker child instead of one per email. Made anew after a fork (a prefork child never talks on
    its parent's socket) and when the email settings change."""
    key, pid = _email_settings_key(), os.getpid()
    if _kept.backend is not None and (_kept.pid != pid or _kept.settings_key != key):
        if _kept.pid == pid:
            email_connection_discard()
        _kept.backend = None  # a parent's connection: left to the parent
    if _kept.backend is None:
        _kept.backend, _kept.settings_key, _kept.pid = get_connection(), key, pid
    return _kept.backend


def email_connection_discard() -> None:
    """Close and forget this thread's kept connection; the next email opens a new one."""
    backend, _kept.backend = _kept.backend, None
    if backend is not None:
        connection_close_quietly(backend)


class _DeliveryTakenOver(Exception):
    """Another sender claimed the delivery after this one did, before this one's DATA."""


def _delivery_claim(delivery: EmailDelivery):
    """Mark the delivery as being sent by us, if it may be sent now; returns the claim's
    ``claimed_at`` (what the DATA marker is conditioned on), or ``None``.

    Who may send is decided by the caller (a follow-up's claim, a job's run key), so a delivery left
    ``sending`` without a DATA marker (its sender died before DATA) is simply sent again.
    """
    now = clock.now()
    may_send = (
        Q(status__in=[EmailDelivery.Status.PENDING, EmailDelivery.Status.FAILED])
        | Q(status=EmailDelivery.Status.SENDING, data_started_at__isnull=True)
        | Q(status=EmailDelivery.Status.UNKNOWN, hold_until__lte=now)
        | Q(status=EmailDelivery.Status.UNKNOWN, hold_until__isnull=True)  # hold lifted by hand
    )
    claimed = EmailDelivery.objects.filter(may_send, pk=delivery.pk).update(
        status=EmailDelivery.Status.SENDING,
        claimed_at=now,
        attempts=F("attempts") + 1,
        data_started_at=None,
        hold_until=None,
    )
    return now if claimed else None


def _delivery_record_sent(delivery: EmailDelivery) -> None:
    """Record the server's 250; on a database error retry the write, never the send.

    After ``EMAIL_RECORD_SENT_PATIENCE_SECONDS`` of errors it gives up and leaves the row
    ``sending`` with its DATA marker: the next attempt holds it as unknown instead of sending.
    """
    deadline = time.monotonic() + settings.EMAIL_RECORD_SENT_PATIENCE_SECONDS
    pause = 0.1
    while True:
        try:
            EmailDelivery.objects.filter(pk=delivery.pk).update(
                status=EmailDelivery.Status.SENT,
                sent_at=clock.now(),
                last_error="",
                hold_until=None,
            )
            return
        except DatabaseError:
            if time.monotonic() + pause > deadline:
                logger.exception(
                    "email %s was accepted (250) but could not be recorded; left as sent after DATA",
                    delivery.purpose_key,
                )
                return
            logger.warning(
                "email %s was accepted (250); recording it failed, retrying in %.1f s",
                delivery.purpose_key,
                pause,
                exc_info=True,
            )
            if not connection.in_atomic_block:
                # As Django does between requests: a broken connection is replaced on the next query.
                connection.close_if_unusable_or_obsolete()
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _delivery_hold(delivery: EmailDelivery, *, error: str) -> EmailHeld:
    """Mark a delivery whose DATA got no recorded reply as unknown, held; return what to raise."""
    hold_until = clock.now() + timedelta(seconds=settings.EMAIL_UNKNOWN_HOLD_SECONDS)
    EmailDelivery.objects.filter(pk=delivery.pk, status=EmailDelivery.Status.SENDING).update(
        status=EmailDelivery.Status.UNKNOWN, hold_until=hold_until, last_error=error[:2000]
    )
    delivery.refresh_from_db()
    if not _is_held(delivery):  # recorded sent, or claimed again, meanwhile
        return EmailHeld(f"{delivery.purpose_key} changed hands while holding it")
    return _held_failure(delivery)


def _is_held(delivery: EmailDelivery) -> bool:
    return (
        delivery.status == EmailDelivery.Status.UNKNOWN
        and delivery.hold_until is not None
        and delivery.hold_until > clock.now()
    )


def _held_failure(delivery: EmailDelivery) -> EmailHeld:
    remaining = max(0.0, (delivery.hold_until - clock.now()).total_seconds())
    return EmailHeld(
        f"{delivery.purpose_key}: the server may have it ({delivery.last_error}); "
        f"held until {delivery.hold_until:%Y-%m-%d %H:%M:%S} UTC",
        retry_after=remaining,
    )


def _delivery_failed(delivery: EmailDelivery, error: str) -> None:
    EmailDelivery.objects.filter(pk=delivery.pk).update(
        status=EmailDelivery.Status.FAILED, last_error=error[:2000]
    )


# --- Optional mail: consent and one-click unsubscribe (RFC 8058) ---------------------------------

UNSUBSCRIBE_SALT = "notifications.unsubscribe"


def email_unsubscribe_url(*, email: str) -> str:
    """The link in optional mail: signed, so only the mail's reader can unsubscribe the address."""
    token = signing.dumps(email.lower(), salt=UNSUBSCRIBE_SALT, compress=True)
    return f"{settings.SITE_URL}/email/unsubscribe/{token}/"


def email_unsubscribe_headers(*, email: str) -> dict[str, str]:
    """``List-Unsubscribe`` with one-click ``POST`` (RFC 8058), as mailbox providers expect."""
    return {
        "List-Unsubscribe": f"<{email_unsubscribe_url(email=email)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def email_unsubscribe_token_read(*, token: str) -> str | None:
    """The address a token was made for, or ``None`` if the token is not ours."""
    try:
        return signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None


def email_unsubscribe(*, email: str) -> None:
    Unsubscribe.objects.get_or_create(email=email.lower())


def email_unsubscribed(*, email: str) -> bool:
    return Unsubscribe.objects.filter(email=email.lower()).exists()
