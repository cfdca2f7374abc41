"""The failure lab's email faults: acted out by a backend in front of the real one while the lab is
on, as a real server would fail; with the lab off, no email reads them."""

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devtools.email_backends import faults_cache
from devtools.models import EmailFaults
from devtools.services import email_faults_set
from notifications.models import EmailDelivery, OutboxMessage
from notifications.services import EmailPermanentFailure, EmailTemporaryFailure, email_send
from tests.config.test_production_settings import production_value

pytestmark = pytest.mark.django_db

LAB = "devtools.email_backends.FaultInjectingEmailBackend"
SMTP = "django.core.mail.backends.smtp.EmailBackend"
OUTBOX = "notifications.backends.OutboxEmailBackend"


def send(recipient="ann@example.com", key="purpose-1"):
    return email_send(purpose_key=key, recipient=recipient, subject="Hello", body="Hi")


@pytest.fixture
def lab_in_front_of_smtp(settings, smtp_server):
    settings.EMAIL_BACKEND = LAB
    settings.FAILURE_LAB_REAL_EMAIL_BACKEND = SMTP
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    smtp_server.clear()
    yield smtp_server
    smtp_server.clear()


def test_the_lab_is_on_in_development_in_front_of_the_real_backend():
    from config import settings_test  # as loaded, before the test runner's locmem backend

    assert settings_test.FAILURE_LAB is True  # DEBUG is on by default
    assert settings_test.EMAIL_BACKEND == LAB
    assert settings_test.FAILURE_LAB_REAL_EMAIL_BACKEND == OUTBOX


def test_production_settings_leave_the_lab_out_of_the_email_path(tmp_path):
    # Production has an EMAIL_HOST (it refuses to start without one): the plain SMTP backend.
    assert production_value("(settings.FAILURE_LAB, settings.EMAIL_BACKEND)", tmp_path) == repr(
        (False, SMTP)
    )


def test_with_the_lab_off_an_email_reads_no_faults(settings, smtp_server):
    settings.EMAIL_BACKEND = SMTP
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    smtp_server.clear()
    email_faults_set(latency_ms=0, error_rate=1.0)  # would refuse every email, were it read

    with CaptureQueriesContext(connection) as queries:
        send()

    assert len(smtp_server.message_ids()) == 1
    tables = " ".join(query["sql"] for query in queries.captured_queries)
    assert "faults" not in tables
    assert "notifications_emaildelivery" in tables


def test_the_lab_error_rate_refuses_mail_with_an_smtp_451(lab_in_front_of_smtp):
    email_faults_set(latency_ms=0, error_rate=1.0)

    with pytest.raises(EmailTemporaryFailure, match="451"):
        send()

    assert lab_in_front_of_smtp.message_ids() == []
    assert EmailDelivery.objects.get().status == "failed"


def test_mail_to_the_poison_recipient_is_refused_with_an_smtp_550_and_others_go_through(
    lab_in_front_of_smtp,
):
    email_faults_set(latency_ms=0, error_rate=0, poison_recipient="poison@example.invalid")

    with pytest.raises(EmailPermanentFailure, match="550"):
        send(recipient="poison@example.invalid")
    send(recipient="ann@example.com", key="purpose-2")

    assert [m["to"] for m in lab_in_front_of_smtp.messages] == [["ann@example.com"]]


def test_the_lab_latency_delays_each_email(lab_in_front_of_smtp):
    email_faults_set(latency_ms=300, error_rate=0)

    started = time.monotonic()
    send()

    assert time.monotonic() - started >= 0.3
    assert len(lab_in_front_of_smtp.message_ids()) == 1


def test_switching_faults_off_lets_mail_through_again(lab_in_front_of_smtp):
    email_faults_set(latency_ms=0, error_rate=1.0)
    with pytest.raises(EmailTemporaryFailure):
        send()

    email_faults_set(latency_ms=0, error_rate=0.0)
    send()

    assert len(lab_in_front_of_smtp.message_ids()) == 1


def test_in_front_of_the_outbox_the_lab_refuses_as_a_server_would(settings):
    settings.EMAIL_BACKEND = LAB
    settings.FAILURE_LAB_REAL_EMAIL_BACKEND = OUTBOX
    email_faults_set(latency_ms=0, error_rate=0, poison_recipient="poison@example.invalid")

    with pytest.raises(EmailPermanentFailure, match="550"):
        send(recipient="poison@example.invalid")
    email_faults_set(latency_ms=0, error_rate=1.0)
    with pytest.raises(EmailTemporaryFailure, match="451"):
        send(key="purpose-2")

    assert not OutboxMessage.objects.exists()


def test_the_faults_are_read_once_per_cache_period_not_per_email(settings):
    settings.EMAIL_BACKEND = LAB
    settings.FAILURE_LAB_REAL_EMAIL_BACKEND = OUTBOX
    settings.FAILURE_LAB_FAULTS_CACHE_SECONDS = 60
    faults_cache.clear()

    with CaptureQueriesContext(connection) as queries:
        for number in range(3):
            send(key=f"purpose-{number}")

    reads = [q["sql"] for q in queries.captured_queries if "devtools_emailfaults" in q["sql"]]
    assert len(reads) == 1
    assert OutboxMessage.objects.count() == 3
    faults_cache.clear()


def test_healing_a_fault_in_another_process_takes_effect_at_the_next_email(settings):
    settings.EMAIL_BACKEND = LAB
    settings.FAILURE_LAB_REAL_EMAIL_BACKEND = OUTBOX
    settings.FAILURE_LAB_FAULTS_CACHE_SECONDS = 60
    email_faults_set(latency_ms=0, error_rate=1.0)
    with pytest.raises(EmailTemporaryFailure, match="451"):
        send(key="purpose-1")  # this process has the fault in its cache now

    # The lab's page runs in the web process: this worker's cache is not told.
    EmailFaults.objects.update(error_rate=0)

    send(key="purpose-2")
    assert OutboxMessage.objects.count() == 1
    faults_cache.clear()
