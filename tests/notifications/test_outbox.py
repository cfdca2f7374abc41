"""Without EMAIL_HOST, mail is kept in the dev outbox and readable in the browser (DEBUG only)."""

import pytest

from notifications.models import OutboxMessage
from notifications.services import email_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def outbox_backend(settings):
    settings.EMAIL_BACKEND = "notifications.backends.OutboxEmailBackend"


def test_mail_is_kept_in_the_outbox_once_per_purpose(outbox_backend):
    email_send(purpose_key="welcome-1", recipient="ann@example.com", subject="Hello", body="Hi Ann")
    again = email_send(
        purpose_key="welcome-1", recipient="ann@example.com", subject="Hello", body="Hi Ann"
    )
    assert again.already_sent
    message = OutboxMessage.objects.get()
    assert (message.recipients, message.subject, message.body) == (
        "ann@example.com",
        "Hello",
        "Hi Ann",
    )
    assert message.message_id == again.message_id


def test_outbox_page_lists_and_shows_messages(client, settings, outbox_backend):
    settings.DEBUG = True
    email_send(
        purpose_key="welcome-2", recipient="bob@example.com", subject="Hi Bob", body="Body text"
    )
    message = OutboxMessage.objects.get()
    assert b"Hi Bob" in client.get("/dev/outbox/").content
    assert b"Body text" in client.get(f"/dev/outbox/{message.pk}/").content


def test_outbox_page_does_not_exist_without_debug(client, settings):
    settings.DEBUG = False
    assert client.get("/dev/outbox/").status_code == 404


def test_an_email_whose_sender_crashed_before_handing_it_over_is_kept_once_after_all(
    outbox_backend,
):
    from notifications.models import EmailDelivery

    # The worker died after claiming the delivery, before the hand-over (no DATA marker):
    EmailDelivery.objects.create(
        purpose_key="welcome-4",
        recipient="ann@example.com",
        message_id="<welcome-4@example.com>",
        status="sending",
        attempts=1,
    )
    sent = email_send(purpose_key="welcome-4", recipient="ann@example.com", subject="Hi", body="x")

    assert not sent.already_sent
    assert [m.message_id for m in OutboxMessage.objects.all()] == ["<welcome-4@example.com>"]
    assert EmailDelivery.objects.get(purpose_key="welcome-4").attempts == 2


def test_the_outbox_shows_who_sent_a_message_and_its_links_are_clickable(
    client, settings, outbox_backend
):
    settings.DEBUG = True
    settings.DEFAULT_FROM_EMAIL = "Celery Shop <shop@example.com>"
    email_send(
        purpose_key="welcome-5",
        recipient="ann@example.com",
        subject="Your order",
        body="Follow it here:\nhttp://127.0.0.1:8000/orders/1234/\n",
    )
    message = OutboxMessage.objects.get()

    listing = client.get("/dev/outbox/").content.decode()
    shown = client.get(f"/dev/outbox/{message.pk}/").content.decode()

    assert message.from_email == "Celery Shop <shop@example.com>"
    assert "Celery Shop &lt;shop@example.com&gt;" in listing
    assert "<strong>From:</strong> Celery Shop &lt;shop@example.com&gt;" in shown
    assert (
        '<a href="http://127.0.0.1:8000/orders/1234/" rel="nofollow">'
        "http://127.0.0.1:8000/orders/1234/</a>" in shown
    )
