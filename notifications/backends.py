"""How a message leaves: handed to an email backend one SMTP step at a time, or kept in the dev outbox.

``message_hand_over`` drives an SMTP backend's connection itself (MAIL, RCPT, then DATA) instead of
``sendmail``, for one reason: to tell its caller the last moment at which the server cannot yet
have the message, just before DATA.

A backend's connection may be kept open from one message to the next (``notifications.services``
keeps one per thread). Before a kept connection carries a message it is asked RSET; a connection
the server closed, or that does not answer 250, is replaced before MAIL, so nothing of the message
was sent on it.
"""

import contextlib
import smtplib
from collections.abc import Callable

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import sanitize_address

from notifications.models import OutboxMessage


def message_hand_over(
    backend: BaseEmailBackend, message: EmailMessage, *, before_data: Callable[[], None]
) -> None:
    """Hand ``message`` to ``backend``, calling ``before_data`` just before it can reach the server.

    An SMTP backend (one whose open ``connection`` is an SMTP client, as Django's is) is driven
    command by command and ``before_data`` runs right before DATA: whatever fails earlier, the
    server has nothing. A backend without a connection (the outbox, locmem) takes the message in
    one call, so ``before_data`` runs before that call. Refusals raise smtplib's exceptions, as
    ``smtplib.SMTP.sendmail`` does. The connection is left open: the caller may hand it the next
    message, and must close it after any exception (the session's state is then unknown).
    """
    if getattr(backend, "connection", None) is not None and not _session_ready(backend.connection):
        connection_close_quietly(backend)
    backend.open()
    smtp = getattr(backend, "connection", None)
    if smtp is None:
        before_data()
        backend.send_messages([message])
        return
    encoding = message.encoding or settings.DEFAULT_CHARSET
    sender = sanitize_address(message.from_email, encoding)
    recipients = [sanitize_address(address, encoding) for address in message.recipients()]
    content = message.message().as_bytes(linesep="\r\n")

    smtp.ehlo_or_helo_if_needed()
    code, reply = smtp.mail(sender)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    refused = {}
    for recipient in recipients:
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = (code, reply)
    if len(refused) == len(recipients):
        raise smtplib.SMTPRecipientsRefused(refused)
    before_data()
    code, reply = smtp.data(content)  # raises SMTPDataError itself only if DATA gets no 354
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)


def _session_ready(smtp) -> bool:
    """Whether a kept connection can take a new message: RSET answered 250. A server that closed
    it (idle timeout, restart) raises here, before anything of the message is sent."""
    try:
        code, _ = smtp.rset()
    except (smtplib.SMTPException, OSError):
        return False
    return code == 250


def connection_close_quietly(backend: BaseEmailBackend) -> None:
    """Close ``backend``'s connection; a failed goodbye changes nothing (the message's fate was
    decided before QUIT)."""
    try:
        backend.close()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        if getattr(backend, "connection", None) is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                backend.connection.close()  # the socket, without a QUIT
            backend.connection = None


class OutboxEmailBackend(BaseEmailBackend):
    """For development without EMAIL_HOST: messages are stored and shown at /dev/outbox/."""

    def send_messages(self, email_messages):
        for message in email_messages:
            OutboxMessage.objects.create(
                from_email=message.from_email,
                recipients=", ".join(message.recipients()),
                subject=message.subject,
                body=message.body,
                message_id=message.extra_headers.get("Message-ID", ""),
            )
        return len(email_messages)
