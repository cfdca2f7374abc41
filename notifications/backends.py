"""An email backend for development: messages are stored and shown at /dev/outbox/."""

from django.core.mail.backends.base import BaseEmailBackend

from notifications.models import OutboxMessage


class OutboxEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        for message in email_messages:
            OutboxMessage.objects.create(
                recipients=", ".join(message.recipients()),
                subject=message.subject,
                body=message.body,
                message_id=message.extra_headers.get("Message-ID", ""),
            )
        return len(email_messages)
