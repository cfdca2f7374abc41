"""Email faults set by the failure lab are acted out by email delivery, as a real provider fails."""

import pytest
from django.core import mail

from notifications.models import EmailDelivery
from notifications.services import (
    EmailPermanentFailure,
    EmailTemporaryFailure,
    email_faults_set,
    email_send,
)

pytestmark = pytest.mark.django_db


def send(recipient="ann@example.com", key="purpose-1"):
    return email_send(purpose_key=key, recipient=recipient, subject="Hello", body="Hi")


def test_with_no_faults_mail_goes_out(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    send()
    assert len(mail.outbox) == 1


def test_an_error_rate_of_one_refuses_every_send_as_temporary(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    email_faults_set(latency_ms=0, error_rate=1.0)

    with pytest.raises(EmailTemporaryFailure):
        send()

    assert mail.outbox == []
    assert EmailDelivery.objects.get().status == "failed"


def test_mail_to_the_poison_recipient_is_refused_for_good(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    email_faults_set(latency_ms=0, error_rate=0, poison_recipient="poison@example.invalid")

    with pytest.raises(EmailPermanentFailure, match="550"):
        send(recipient="poison@example.invalid")
    send(recipient="ann@example.com", key="purpose-2")

    assert [message.to for message in mail.outbox] == [["ann@example.com"]]


def test_switching_faults_off_lets_mail_through_again(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    email_faults_set(latency_ms=0, error_rate=1.0)
    with pytest.raises(EmailTemporaryFailure):
        send()

    email_faults_set(latency_ms=0, error_rate=0.0)
    send()

    assert len(mail.outbox) == 1
