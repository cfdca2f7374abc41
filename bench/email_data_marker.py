"""`python -m bench.email_data_marker`: what the DATA marker's commit costs per email.

``email_send`` commits ``EmailDelivery.data_started_at`` just before DATA (docs/reliability.md,
"Email at the SMTP boundary"). This times that UPDATE's own commit in a loop against the database
of ``DATABASE_URL`` (PostgreSQL is the one that matters), the same with ``synchronous_commit = off``
(the cheaper variant considered), and whole sends to a local SMTP server for scale. It writes and
then deletes rows whose purpose key starts with "bench-marker-".
"""

import logging
import os
import statistics
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from notifications.models import EmailDelivery  # noqa: E402
from notifications.services import email_send  # noqa: E402
from tests.processes import SMTPRecorder  # noqa: E402

MARKER_ROUNDS = 2000
SENDS = 300


def per_call_ms(action, rounds: int) -> tuple[float, float]:
    timings = []
    for number in range(rounds):
        started = time.perf_counter()
        action(number)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), statistics.mean(timings)


def main() -> None:
    EmailDelivery.objects.filter(purpose_key__startswith="bench-marker-").delete()  # a failed run's
    delivery = EmailDelivery.objects.create(
        purpose_key="bench-marker-row", recipient="bench@example.com", subject="bench"
    )

    def mark(_):
        EmailDelivery.objects.filter(pk=delivery.pk).update(data_started_at=timezone.now())

    durable = per_call_ms(mark, MARKER_ROUNDS)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
        asynchronous = per_call_ms(mark, MARKER_ROUNDS)
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = on")
    else:
        asynchronous = (float("nan"), float("nan"))

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command
    smtp = SMTPRecorder().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    run = time.time_ns()

    def send(number):
        email_send(
            purpose_key=f"bench-marker-{run}-{number}",
            recipient="bench@example.com",
            subject="bench",
            body="bench",
        )

    sends = per_call_ms(send, SENDS)
    smtp.stop()
    EmailDelivery.objects.filter(purpose_key__startswith="bench-marker-").delete()

    print(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    for label, (median, mean) in (
        ("marker UPDATE + commit", durable),
        ("the same, synchronous_commit = off", asynchronous),
        ("a whole email_send to a local SMTP server", sends),
    ):
        print(f"{label:<44} median {median:7.3f} ms, mean {mean:7.3f} ms")


if __name__ == "__main__":
    main()
