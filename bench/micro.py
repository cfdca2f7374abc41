"""`python -m bench.micro <cost> [--rounds N]`: what one piece of the follow-up path costs, alone.

Each cost is timed in a loop, with its former way beside it in the same run and interleaved with
it, so drift on a shared machine hits both alike. The median per call is printed with the machine
and the database. These are micro-measurements: they say what a change saves per follow-up, not
what it does to the benchmark's end-to-end figures (``make bench``).

- ``claim``: ``follow_up_claim`` (one ``UPDATE … RETURNING``) against reading the row, then a
  compare-and-set (the claim before, still the path for rows not claimable at once).
- ``job_log``: the query ``job.started`` made to name the follow-up's order (now read from the
  claimed row).
- ``email``: a whole ``email_send`` to a local SMTP server, on the connection this thread keeps
  against a new SMTP session per email; and the statements it sends to the database.
- ``invoice``: ``invoice_pdf`` with the styles built once per process against built per invoice.
- ``relay_wake``: the relay woken for one order's three rows (as every commit wakes it under
  ``FOLLOW_UP_PUBLISH=relay``): publishing just those rows (``Relay.publish_woken``) against the
  full tick each wake-up ran before (lapsed-lease check, owed-rows scan, lag query). Needs
  ``CELERY_BROKER_URL``: both publish for real.

It uses the database of ``DATABASE_URL`` (migrated first) and removes the rows it writes.
"""

import argparse
import logging
import os
import statistics
import time
import uuid
from collections.abc import Callable

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench.report import machine  # noqa: E402

KEY_PREFIX = "bench-micro-"


def medians(variants: dict[str, Callable[[int], object]], rounds: int) -> dict[str, list[float]]:
    """Call each variant ``rounds`` times, interleaved; the times in ms, by variant."""
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for number in range(rounds):
        for name, action in variants.items():
            started = time.perf_counter()
            action(number)
            timings[name].append((time.perf_counter() - started) * 1000)
    return timings


def statements_of(action: Callable[[], object]) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        action()
    return [query["sql"].split(None, 1)[0].upper() for query in queries.captured_queries]


def print_timings(timings: dict[str, list[float]]) -> None:
    for name, values in timings.items():
        print(
            f"  {name:<58} median {statistics.median(values):8.3f} ms, "
            f"mean {statistics.fmean(values):8.3f} ms (n={len(values)})"
        )


# --- The costs ------------------------------------------------------------------------------------


def follow_ups_make(count: int) -> list[int]:
    """Pending rows of a declared kind, written directly: none is published to a broker."""
    from follow_ups.models import FollowUp

    run = uuid.uuid4().hex[:8]
    rows = FollowUp.objects.bulk_create(
        FollowUp(key=f"{KEY_PREFIX}{run}-{n}", kind="confirmation_email", label="CS-MICRO")
        for n in range(count)
    )
    return [row.pk for row in rows]


def measure_claim(rounds: int) -> None:
    from follow_ups import services

    now_and_token = lambda: {"now": django.utils.timezone.now(), "token": uuid.uuid4().hex}  # noqa: E731
    fresh, former = follow_ups_make(rounds), follow_ups_make(rounds)
    timings = medians(
        {
            "UPDATE … RETURNING (follow_up_claim)": lambda n: services.follow_up_claim(
                follow_up_id=fresh[n]
            ),
            "SELECT, then compare-and-set UPDATE (the claim before)": lambda n: (
                services._follow_up_claim_as_read(follow_up_id=former[n], **now_and_token())
            ),
        },
        rounds,
    )
    (spare,) = follow_ups_make(1)
    print(
        f"claim: statements per claim {statements_of(lambda: services.follow_up_claim(follow_up_id=spare))}"
    )
    print_timings(timings)


def measure_job_log(rounds: int) -> None:
    from follow_ups.models import FollowUp

    ids = follow_ups_make(rounds)
    timings = medians(
        {
            "the query job.started made per follow-up (removed)": lambda n: (
                FollowUp.objects.filter(pk=ids[n]).values_list("kind", "attempts", "label").first()
            ),
        },
        rounds,
    )
    print("job_log: job.started now takes kind, label and attempt from the claimed row (0 queries)")
    print_timings(timings)


def measure_email(rounds: int) -> None:
    from notifications import services
    from tests.processes import SMTPRecorder

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command
    smtp = SMTPRecorder().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    run = uuid.uuid4().hex[:8]

    def send(name: str, number: int):
        return services.email_send(
            purpose_key=f"{KEY_PREFIX}{run}-{name}-{number}",
            recipient="micro@example.com",
            subject="micro",
            body="A short body, as a confirmation's.",
        )

    def send_on_a_new_session(number: int):
        services.email_connection_discard()  # the way before: open, EHLO, …, QUIT per email
        send("new", number)
        services.email_connection_discard()

    send("warm", 0)
    timings = medians(
        {
            "email_send, the thread's SMTP connection kept": lambda n: send("kept", n),
            "email_send, a new SMTP session per email (before)": send_on_a_new_session,
        },
        rounds,
    )
    statements = statements_of(lambda: send("count", 0))
    services.email_connection_discard()
    smtp.stop()
    print(f"email: statements per first send {statements}")
    print_timings(timings)


def measure_invoice(rounds: int) -> None:
    from decimal import Decimal

    from orders import invoices
    from orders.models import Order, OrderLine
    from shop.models import Category, Product

    with transaction.atomic():
        category = Category.objects.create(slug=f"{KEY_PREFIX}{uuid.uuid4().hex[:8]}", name="M")
        product = Product.objects.create(
            sku=f"MICRO-{uuid.uuid4().hex[:8]}", name="Micro", category=category,
            price=Decimal("9.99"), stock=1, description="",
        )  # fmt: skip
        order = Order.objects.create(
            number=f"CS-{uuid.uuid4().hex[:8]}", email="micro@example.com", name="Micro",
            address_line1="Kerkstraat 1", address_city="Amsterdam", address_postal_code="1017 GA",
            address_country="NL", total=Decimal("19.98"), payment_reference="micro",
        )  # fmt: skip
        OrderLine.objects.create(
            order=order, product=product, sku=product.sku, name="Micro", quantity=2,
            unit_price=Decimal("9.99"),
        )  # fmt: skip

        def per_invoice_styles(_):
            invoices._styles.cache_clear()  # the way before: a style sheet per invoice
            invoices._table_style.cache_clear()
            invoices.invoice_pdf(order)

        invoices.invoice_pdf(order)
        timings = medians(
            {
                "invoice_pdf, styles built once per process": lambda _: invoices.invoice_pdf(order),
                "invoice_pdf, styles built per invoice (before)": per_invoice_styles,
                "getSampleStyleSheet() alone": lambda _: invoices.getSampleStyleSheet(),
            },
            rounds,
        )
        transaction.set_rollback(True)
    print("invoice:")
    print_timings(timings)


def measure_relay_wake(rounds: int) -> None:
    from celery import current_app

    from follow_ups.relay import Relay

    settings.FOLLOW_UP_LOST_CHECK_SECONDS = 10**9  # every 5 s either way: not a per-wake cost
    relay = Relay()
    relay.tick()  # what is owed already, out of the way
    woken = [follow_ups_make(3) for _ in range(rounds)]
    former = [follow_ups_make(3) for _ in range(rounds)]
    timings = medians(
        {
            "publish the woken rows (Relay.publish_woken)": lambda n: relay.publish_woken(woken[n]),
            "a full tick per wake-up (before)": lambda n: relay.tick(woken_ids=former[n]),
        },
        rounds,
    )
    spare = follow_ups_make(3)
    print(f"relay_wake: statements per wake-up {statements_of(lambda: relay.publish_woken(spare))}")
    spare = follow_ups_make(3)
    print(f"  and per full tick {statements_of(lambda: relay.tick(woken_ids=spare))}")
    print_timings(timings)
    with current_app.connection_for_write() as conn:  # the messages nothing will consume
        conn.default_channel.queue_purge("critical")


COSTS = {
    "claim": (measure_claim, 1000),
    "job_log": (measure_job_log, 1000),
    "email": (measure_email, 300),
    "invoice": (measure_invoice, 100),
    "relay_wake": (measure_relay_wake, 300),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "costs", nargs="*", help=f"some of {', '.join(sorted(COSTS))}; default: all"
    )
    parser.add_argument("--rounds", type=int, help="calls per variant (default: per cost)")
    args = parser.parse_args()
    unknown = set(args.costs) - set(COSTS)
    if unknown:
        parser.error(f"no such cost: {', '.join(sorted(unknown))}")
    call_command("migrate", "--no-input", verbosity=0)
    about = machine()
    print(
        f"machine: {about['cpu']}, {about['cpus']} CPUs (shared), Python {about['python']}; "
        f"database: {connection.vendor} {connection.settings_dict['NAME']}"
    )
    from follow_ups.models import FollowUp
    from notifications.models import EmailDelivery

    try:
        for name in args.costs or sorted(COSTS):
            measure, rounds = COSTS[name]
            measure(args.rounds or rounds)
    finally:
        FollowUp.objects.filter(key__startswith=KEY_PREFIX).delete()
        EmailDelivery.objects.filter(purpose_key__startswith=KEY_PREFIX).delete()


if __name__ == "__main__":
    main()
