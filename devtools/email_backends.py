"""The failure lab's email faults, acted out in front of the real email backend.

Settings make ``FaultInjectingEmailBackend`` the ``EMAIL_BACKEND`` only while ``FAILURE_LAB`` is on,
wrapping ``FAILURE_LAB_REAL_EMAIL_BACKEND``; with the lab off no email reads the faults. A fault
looks exactly like a real server's: latency before connecting, and refusals as SMTP replies (451 to
MAIL, 550 to RCPT), which reach ``notifications`` as smtplib's own exceptions.
"""

import random
import smtplib
import threading
import time
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend

from devtools.models import EmailFaults
from devtools.selectors import email_faults_get

ERROR_RATE_REPLY = (451, b"4.3.0 Try again later (failure lab: error rate)")
POISON_REPLY = (550, b"5.1.1 Mailbox unavailable (failure lab: poison recipient)")


class _FaultsCache:
    """The lab's faults, per process. While a latency or an error rate is in force they are read
    at every send, so healing them in the lab takes effect at once in every worker (the first
    replay after it goes through); while none is, the read is kept for
    ``FAILURE_LAB_FAULTS_CACHE_SECONDS``, so a healthy shop pays no query per email. Switching a
    fault on therefore reaches a worker within those seconds."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: EmailFaults | None = None
        self._expires_at = 0.0

    def get(self) -> EmailFaults:
        with self._lock:
            if (
                self._faults is None
                or _in_force(self._faults)
                or time.monotonic() >= self._expires_at
            ):
                self._faults = email_faults_get()
                self._expires_at = time.monotonic() + settings.FAILURE_LAB_FAULTS_CACHE_SECONDS
            return self._faults

    def clear(self) -> None:
        with self._lock:
            self._faults = None


faults_cache = _FaultsCache()


def _in_force(faults: EmailFaults) -> bool:
    return bool(faults.latency_ms or faults.error_rate)


def _mail_reply(faults: EmailFaults) -> tuple[int, bytes] | None:
    if faults.error_rate and random.random() < faults.error_rate:
        return ERROR_RATE_REPLY
    return None


def _rcpt_reply(faults: EmailFaults, recipient: str) -> tuple[int, bytes] | None:
    poison = faults.poison_recipient.lower()
    if poison and parseaddr(recipient)[1].lower() == poison:
        return POISON_REPLY
    return None


def _latency(faults: EmailFaults) -> None:
    if faults.latency_ms:
        time.sleep(faults.latency_ms / 1000)


class _FaultySMTP:
    """The real backend's SMTP connection, whose MAIL and RCPT replies the lab may replace.

    The faults are read (through the cache) at each message's MAIL, so a connection kept from one
    email to the next follows the lab as a new one would.
    """

    def __init__(self, smtp: smtplib.SMTP):
        self._smtp = smtp
        self._faults: EmailFaults | None = None

    def __getattr__(self, name):
        return getattr(self._smtp, name)

    def mail(self, sender, options=()):
        self._faults = faults_cache.get()
        _latency(self._faults)
        return _mail_reply(self._faults) or self._smtp.mail(sender, options)

    def rcpt(self, recipient, options=()):
        faults = self._faults or faults_cache.get()
        return _rcpt_reply(faults, recipient) or self._smtp.rcpt(recipient, options)


class FaultInjectingEmailBackend(BaseEmailBackend):
    """``FAILURE_LAB_REAL_EMAIL_BACKEND``, failing as the failure lab asks."""

    def __init__(self, fail_silently=False, **kwargs):
        super().__init__(fail_silently=fail_silently)
        self.real = get_connection(
            settings.FAILURE_LAB_REAL_EMAIL_BACKEND, fail_silently=fail_silently, **kwargs
        )
        self.connection = None  # the real SMTP connection, behind the lab's faults, while open

    def open(self):
        if self.connection is not None:
            return False
        self.real.open()
        smtp = getattr(self.real, "connection", None)
        self.connection = None if smtp is None else _FaultySMTP(smtp)
        return True

    def close(self):
        try:
            self.real.close()
        finally:
            self.connection = None

    def send_messages(self, email_messages):
        """For backends without an SMTP connection (and ``send_mail``): refuse as a server would."""
        faults = faults_cache.get()
        _latency(faults)
        opened = self.open()
        try:
            for message in email_messages:
                if reply := _mail_reply(faults):
                    raise smtplib.SMTPSenderRefused(*reply, message.from_email)
                refused = {
                    recipient: reply
                    for recipient in message.recipients()
                    if (reply := _rcpt_reply(faults, recipient))
                }
                if refused:
                    raise smtplib.SMTPRecipientsRefused(refused)
            return self.real.send_messages(email_messages)
        finally:
            if opened:
                self.close()
