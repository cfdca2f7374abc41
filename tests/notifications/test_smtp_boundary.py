"""Email at the SMTP boundary, against a real SMTP server (aiosmtpd): what is sent once, what may be
sent twice, and when (docs/reliability.md, "Email at the SMTP boundary")."""

import logging
import os
import signal
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from notifications import services
from notifications.models import EmailDelivery
from notifications.services import EmailPermanentFailure, EmailTemporaryFailure, email_send
from tests.conftest import database_url
from tests.processes import BIN, Process, free_port, wait_until


@pytest.fixture
def smtp(settings, smtp_server):
    """Mail goes to the test SMTP server through Django's SMTP backend, the failure lab out of it."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_TIMEOUT = 10
    smtp_server.clear()
    yield smtp_server
    smtp_server.clear()


def send(key="order-1-confirmation", recipient="ann@example.com"):
    return email_send(purpose_key=key, recipient=recipient, subject="Order confirmed", body="Hi")


def delivery(key="order-1-confirmation") -> EmailDelivery:
    return EmailDelivery.objects.get(purpose_key=key)


@pytest.mark.django_db
def test_an_accepted_email_is_recorded_sent_after_its_data_marker_and_never_sent_again(smtp):
    first = send()
    again = send()

    assert (first.already_sent, again.already_sent) == (False, True)
    assert smtp.message_ids() == [first.message_id]
    row = delivery()
    assert (row.status, row.attempts) == ("sent", 1)
    assert row.claimed_at <= row.data_started_at <= row.sent_at


@pytest.mark.django_db
def test_a_250_delayed_past_the_clients_timeout_sends_nothing_before_the_hold_and_the_same_message_id_after(
    smtp, settings
):
    assert settings.EMAIL_UNKNOWN_HOLD_SECONDS == 900  # the default: 15 minutes
    settings.EMAIL_TIMEOUT = 1
    smtp.delay_next_reply(3)  # the server keeps the message, then answers 250 too late

    with pytest.raises(EmailTemporaryFailure) as first:
        send()

    assert len(smtp.message_ids()) == 1
    row = delivery()
    assert row.status == "unknown"
    assert (row.hold_until - timezone.now()).total_seconds() == pytest.approx(900, abs=5)
    assert first.value.retry_after == pytest.approx(900, abs=5)

    # 600 s later (on the database's clock): nothing is sent, and the caller is told how long to
    # wait.
    EmailDelivery.objects.update(hold_until=F("hold_until") - timedelta(seconds=600))
    with pytest.raises(EmailTemporaryFailure) as held:
        send()
    assert held.value.retry_after == pytest.approx(300, abs=5)
    time.sleep(3)  # let the late 250 go by: still one message at the server
    assert len(smtp.message_ids()) == 1
    assert delivery().attempts == 1

    # A sender whose own clock runs 15 minutes ahead still sees the hold: holds are judged on the
    # database's clock, never the sender's.
    with (
        time_machine.travel(timezone.now() + timedelta(minutes=15)),
        pytest.raises(EmailTemporaryFailure),
    ):
        send()
    assert len(smtp.message_ids()) == 1

    # After the hold: sent again, with the same Message-ID, and counted.
    EmailDelivery.objects.update(hold_until=F("hold_until") - timedelta(seconds=301))
    resent = send()
    assert not resent.already_sent
    assert smtp.message_ids() == [resent.message_id, resent.message_id]
    row = delivery()
    assert (row.status, row.attempts, row.hold_until) == ("sent", 2, None)


def lock_the_deliveries_for(seconds: float) -> threading.Thread:
    """Hold every delivery row locked from another connection (SQLite: the whole database)."""
    locked = threading.Event()

    def hold():
        try:
            with transaction.atomic():
                list(EmailDelivery.objects.select_for_update())
                locked.set()
                time.sleep(seconds)
        finally:
            connection.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(10), "could not lock the deliveries"
    return holder


@pytest.fixture
def impatient_database_connection(transactional_db):
    """This test's connection gives up waiting for a lock after 0.1 s: a database error at once."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET lock_timeout = '100ms'")
        else:
            cursor.execute("PRAGMA busy_timeout = 100")
    yield
    connection.close()  # the next connection has the usual patience


def test_a_database_error_right_after_the_250_retries_the_record_and_never_the_send(
    smtp, impatient_database_connection, caplog
):
    smtp.before_next_reply(lambda: lock_the_deliveries_for(1.5))

    with caplog.at_level(logging.WARNING, logger="notifications.services"):
        sent = send()

    assert "recording it failed, retrying" in caplog.text  # the database did fail after the 250
    assert smtp.message_ids() == [sent.message_id]
    row = delivery()
    assert (row.status, row.attempts) == ("sent", 1)
    assert send().already_sent
    assert len(smtp.message_ids()) == 1


@pytest.mark.postgres
def test_a_database_down_longer_than_the_patience_leaves_the_email_unknown_not_resent(
    smtp, impatient_database_connection, settings, caplog
):
    settings.EMAIL_RECORD_SENT_PATIENCE_SECONDS = 0.5
    holders = []
    smtp.before_next_reply(lambda: holders.append(lock_the_deliveries_for(3)))

    with caplog.at_level(logging.WARNING, logger="notifications.services"):
        sent = send()  # no exception: the server said 250

    assert "could not be recorded" in caplog.text
    holders[0].join()  # the database is back
    row = delivery()
    assert row.data_started_at is not None and row.sent_at is None
    with pytest.raises(EmailTemporaryFailure) as held:
        send()
    assert held.value.retry_after == pytest.approx(settings.EMAIL_UNKNOWN_HOLD_SECONDS, abs=5)
    assert delivery().status == "unknown"
    assert smtp.message_ids() == [sent.message_id]


@pytest.mark.django_db
def test_a_delivery_found_sending_without_the_data_marker_is_sent_again_at_once(smtp):
    # Its sender died before DATA (while connecting, at MAIL or RCPT): the server has nothing.
    EmailDelivery.objects.create(
        purpose_key="order-1-confirmation",
        recipient="ann@example.com",
        subject="Order confirmed",
        message_id="<order-1-confirmation@example.com>",
        status="sending",
        attempts=1,
    )

    sent = send()

    assert smtp.message_ids() == ["<order-1-confirmation@example.com>"] == [sent.message_id]
    assert (delivery().status, delivery().attempts) == ("sent", 2)


@pytest.mark.django_db
def test_a_sender_stalled_before_data_whose_delivery_was_sent_by_another_meanwhile_sends_nothing(
    smtp, monkeypatch
):
    # The first sender has claimed the delivery and stalls before DATA (its host is cut off from
    # the network); its follow-up's lease lapses and another host's execution sends the email.
    # When the first goes on, its DATA marker finds the delivery claimed by the other: no DATA.
    hand_over = services.message_hand_over
    stalled = []

    def stalled_then_overtaken(backend, message, *, before_data):
        if not stalled:
            stalled.append(True)
            assert send().already_sent is False  # the other sender, while this one stalls
        return hand_over(backend, message, before_data=before_data)

    monkeypatch.setattr(services, "message_hand_over", stalled_then_overtaken)

    late = send()

    assert late.already_sent is True
    assert len(smtp.message_ids()) == 1
    assert (delivery().status, delivery().attempts) == ("sent", 2)


@pytest.mark.django_db
def test_a_delivery_found_sending_with_the_data_marker_is_held_as_unknown(smtp, settings):
    # Its sender died after DATA with no reply recorded: the server may have the message.
    EmailDelivery.objects.create(
        purpose_key="order-1-confirmation",
        recipient="ann@example.com",
        subject="Order confirmed",
        message_id="<order-1-confirmation@example.com>",
        status="sending",
        attempts=1,
        data_started_at=timezone.now() - timedelta(seconds=40),
    )

    with pytest.raises(EmailTemporaryFailure) as held:
        send()

    assert held.value.retry_after == pytest.approx(settings.EMAIL_UNKNOWN_HOLD_SECONDS, abs=5)
    assert (delivery().status, delivery().attempts) == ("unknown", 1)
    assert smtp.message_ids() == []


@pytest.mark.django_db
def test_a_refusal_after_data_is_a_failure_sent_again_at_once_not_an_unknown(smtp):
    smtp.refuse_next("451 4.3.0 Try again later")

    with pytest.raises(EmailTemporaryFailure) as refused:
        send()
    assert refused.value.retry_after is None
    assert delivery().status == "failed"

    send()
    assert len(smtp.message_ids()) == 1
    assert (delivery().status, delivery().attempts) == ("sent", 2)


@pytest.mark.django_db
def test_a_permanent_refusal_after_data_is_permanent(smtp):
    smtp.refuse_next("554 5.7.1 Rejected as spam")

    with pytest.raises(EmailPermanentFailure, match="554"):
        send()
    assert delivery().status == "failed"


@pytest.mark.django_db
def test_a_server_that_cannot_be_reached_is_a_failure_before_data(smtp, settings):
    settings.EMAIL_PORT = free_port()  # nothing listens there

    with pytest.raises(EmailTemporaryFailure) as unreachable:
        send()

    assert unreachable.value.retry_after is None
    row = delivery()
    assert (row.status, row.data_started_at) == ("failed", None)


def sender_process(smtp_server, log_dir) -> Process:
    """A worker-like process sending the email, with the failure lab out of the way."""
    script = (
        "from notifications.services import email_send; "
        "email_send(purpose_key='order-1-confirmation', recipient='ann@example.com', "
        "subject='Order confirmed', body='Hi')"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": database_url(connection.settings_dict),
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
        "FAILURE_LAB": "0",
    }
    return Process(
        "sender", [str(BIN / "python"), "manage.py", "shell", "-c", script], env, log_dir
    )


def kill(process: Process) -> None:
    os.killpg(process.popen.pid, signal.SIGKILL)
    process.stop()


@pytest.mark.integration
def test_a_sender_killed_after_data_leaves_the_email_unknown_and_held_not_resent(
    smtp, transactional_db, process_log_dir, settings
):
    smtp.delay_next_reply(60)  # the server has the message and has not answered yet
    sender = sender_process(smtp, process_log_dir)
    wait_until(smtp.message_ids, timeout=60, message="the message to reach the server")
    kill(sender)

    row = delivery()
    assert row.status == "sending" and row.data_started_at is not None
    with pytest.raises(EmailTemporaryFailure) as held:
        send()

    assert held.value.retry_after == pytest.approx(settings.EMAIL_UNKNOWN_HOLD_SECONDS, abs=5)
    assert delivery().status == "unknown"
    assert len(smtp.message_ids()) == 1


@pytest.mark.integration
def test_a_sender_killed_before_data_leaves_an_email_that_is_sent_at_once(
    smtp, transactional_db, process_log_dir
):
    smtp.delay_next_reply(60, command="RCPT")  # the sender can never get past RCPT
    sender = sender_process(smtp, process_log_dir)
    wait_until(
        lambda: EmailDelivery.objects.filter(status="sending").exists(),
        timeout=60,
        message="the sender to claim the delivery",
    )
    time.sleep(0.5)  # on its way to RCPT, or waiting there: before DATA either way
    kill(sender)

    assert delivery().data_started_at is None
    sent = send()

    assert smtp.message_ids() == [sent.message_id]
    assert (delivery().status, delivery().attempts) == ("sent", 2)
