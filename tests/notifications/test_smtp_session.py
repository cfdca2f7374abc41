"""One SMTP connection per worker child, kept from one email to the next, never at the cost of a
duplicate (docs/reliability.md, "Email at the SMTP boundary"), against a real SMTP server."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import EmailDelivery
from notifications.services import EmailTemporaryFailure, email_connection_discard, email_send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def smtp(smtp):
    email_connection_discard()  # each test starts without a kept connection
    yield smtp
    email_connection_discard()


def send(key: str):
    return email_send(purpose_key=key, recipient="ann@example.com", subject=key, body="Hi")


def peers(smtp) -> list:
    with smtp.lock:
        return [message["peer"] for message in smtp.messages]


def test_emails_one_after_another_share_one_smtp_connection(smtp):
    for number in range(3):
        send(f"session-{number}")

    assert len(smtp.message_ids()) == 3
    assert len(set(peers(smtp))) == 1


def test_a_connection_the_server_closed_is_replaced_before_anything_is_sent(smtp):
    send("before-close")
    smtp.close_connections()  # an idle timeout, a restarted server

    assert send("after-close").already_sent is False

    assert smtp.message_ids() == ["<before-close@example.com>", "<after-close@example.com>"]
    first, second = peers(smtp)
    assert first != second
    after = EmailDelivery.objects.get(purpose_key="after-close")
    assert (after.status, after.attempts, after.last_error) == ("sent", 1, "")


def test_after_a_refusal_the_next_email_gets_a_new_connection(smtp):
    send("first")
    smtp.refuse_next("451 4.3.0 Try again later")
    with pytest.raises(EmailTemporaryFailure):
        send("refused")

    send("next")

    assert smtp.message_ids() == ["<first@example.com>", "<next@example.com>"]
    first, following = peers(smtp)
    assert first != following


def test_a_first_send_writes_its_delivery_three_times_claim_marker_and_250(smtp):
    with CaptureQueriesContext(connection) as queries:
        send("writes")

    table = EmailDelivery._meta.db_table
    writes = [
        query["sql"].split(None, 1)[0]
        for query in queries.captured_queries
        if table in query["sql"] and not query["sql"].startswith("SELECT")
    ]
    # Created already claimed, the DATA marker, the 250: the marker and the 250 each in their own
    # commit (autocommit), as the boundary needs.
    assert writes == ["INSERT", "UPDATE", "UPDATE"]
    # Nothing is read before the insert, and no transaction is opened around it.
    statements = [query["sql"].split(None, 1)[0] for query in queries.captured_queries]
    assert statements == ["INSERT", "UPDATE", "UPDATE"]
    sent = EmailDelivery.objects.get(purpose_key="writes")
    assert (sent.status, sent.attempts) == ("sent", 1)
    assert sent.claimed_at is not None and sent.data_started_at is not None


def test_a_send_for_a_delivery_already_sent_finds_it_and_sends_nothing(smtp):
    send("once")
    first = EmailDelivery.objects.get(purpose_key="once")

    again = email_send(
        purpose_key="once", recipient="someone-else@example.com", subject="Changed", body="x"
    )

    assert again.already_sent and again.message_id == first.message_id
    assert smtp.message_ids() == ["<once@example.com>"]
    kept = EmailDelivery.objects.get(purpose_key="once")  # the insert changed nothing
    assert (kept.recipient, kept.subject, kept.attempts) == (first.recipient, first.subject, 1)
