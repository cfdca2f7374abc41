"""The ops app's writes: queue samples for the charts; the failure lab's poison orders and simulated
shoppers (the faults themselves are stored by ``devtools.services``)."""

import secrets
import time
from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from devtools.selectors import email_faults_get
from devtools.services import email_faults_set
from ops import selectors
from ops.models import QueueSample
from orders import services as order_services
from shop.models import Product

POISON_RECIPIENT = "poison@example.invalid"


def poison_order_place() -> order_services.PlacedOrder:
    """Place an order whose confirmation the email provider refuses for good: a dead letter.

    The recipient is the lab's poison address; ``devtools.EmailFaults`` names it, so every
    attempt to mail it fails permanently, whatever else the lab has switched on.
    """
    current = email_faults_get()
    email_faults_set(
        latency_ms=current.latency_ms,
        error_rate=current.error_rate,
        poison_recipient=POISON_RECIPIENT,
    )
    return _order_place_for_simulation(email=POISON_RECIPIENT, name="Poison Order")


def orders_simulate(
    *, count: int, rate_per_second: float, on_placed: Callable | None = None
) -> list[order_services.PlacedOrder]:
    """Place ``count`` orders over the real checkout path, about ``rate_per_second`` a second."""
    placed = []
    interval = 1 / rate_per_second if rate_per_second > 0 else 0
    started = time.monotonic()
    for number in range(count):
        # Keep to the schedule rather than sleeping a fixed interval: checkout time counts too.
        delay = started + number * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        order = _order_place_for_simulation(
            email=f"shopper-{secrets.token_hex(4)}@example.com", name="Simulated Shopper"
        )
        placed.append(order)
        if on_placed is not None:
            on_placed(order)
    return placed


class NothingInStock(Exception):
    """The catalog has nothing left to buy, so no order can be simulated."""


def _order_place_for_simulation(*, email: str, name: str) -> order_services.PlacedOrder:
    product = Product.objects.filter(stock__gt=0).order_by("?").first()
    if product is None:
        raise NothingInStock("No product has stock left: run `manage.py seed_catalog`.")
    return order_services.order_place(
        email=email,
        name=name,
        address=order_services.Address(
            line1="Simulatiestraat 1", city="Utrecht", postal_code="3511 AA", country="NL"
        ),
        lines=[order_services.LineRequest(sku=product.sku, quantity=1)],
        card_number="4242424242424242",
    )


SAMPLES_KEPT = timedelta(hours=2)


def queue_samples_record() -> list[QueueSample]:
    """Sample each queue's depth (from the broker) and oldest wait (from the ledger); prune old ones."""
    now = timezone.now()
    depths = selectors.queue_depths(selectors.queue_names())
    totals = selectors.queue_totals(selectors.job_metrics(now=now), depths)
    with transaction.atomic():
        samples = QueueSample.objects.bulk_create(
            QueueSample(
                taken_at=now,
                queue=total.name,
                depth=total.depth,
                waiting=total.waiting,
                oldest_wait_seconds=total.oldest_wait_seconds,
            )
            for total in totals
        )
        QueueSample.objects.filter(taken_at__lt=now - SAMPLES_KEPT).delete()
    return samples
