"""Two checkouts to compare the real one with, parsed and validated exactly like POST /api/orders/.

- ``POST /bench/orders/bare/``: (a) the order insert alone (lock, price, charge, order + lines,
  stock) and no follow-ups at all: the floor any checkout pays.
- ``POST /bench/orders/rows/``: (a′) the real checkout (``orders.services.order_place``: payment
  attempt, charge, order, its follow-up rows) with nothing published: what publishing is measured
  against.
- ``POST /bench/orders/inline/``: (c) the same insert, then the three follow-ups done in the request,
  as a shop without background workers would: email, warehouse call, invoice PDF.
"""

import contextlib
import logging
import os
import secrets
import threading
import time
from decimal import Decimal
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.db import transaction
from ninja import NinjaAPI, Schema, Status

from follow_ups import registry
from follow_ups import services as follow_up_services
from orders import services
from orders.api import OrderIn
from orders.models import Order, OrderLine
from orders.payments import payment_charge
from shop.models import Product

logger = logging.getLogger(__name__)

api = NinjaAPI(title="Benchmark baselines", version="1", urls_namespace="bench-api", docs_url=None)


class PlacedOut(Schema):
    id: str
    number: str
    total: str


def _order_insert(payload: OrderIn) -> Order:
    quantities = {item.sku: item.quantity for item in payload.items}
    with transaction.atomic():
        products = list(
            Product.objects.select_for_update().filter(sku__in=quantities).order_by("pk")
        )
        total = sum((p.price * quantities[p.sku] for p in products), Decimal("0"))
        order = Order.objects.create(
            number="CS-" + secrets.token_hex(4).upper(),
            email=payload.email,
            name=payload.name,
            address_line1=payload.address.line1,
            address_city=payload.address.city,
            address_postal_code=payload.address.postal_code,
            address_country=payload.address.country,
            total=total,
            payment_reference=payment_charge(
                card_number=payload.card_number, amount=total, idempotency_key=secrets.token_hex(16)
            ),
        )
        OrderLine.objects.bulk_create(
            OrderLine(
                order=order,
                product=p,
                sku=p.sku,
                name=p.name,
                unit_price=p.price,
                quantity=quantities[p.sku],
            )
            for p in products
        )
        for p in products:
            p.stock -= quantities[p.sku]
        Product.objects.bulk_update(products, ["stock"])
    return order


@api.post("/orders/bare/", response={201: PlacedOut})
def order_bare(request, payload: OrderIn):
    order = _order_insert(payload)
    return Status(201, {"id": str(order.pk), "number": order.number, "total": str(order.total)})


# A publishing design the shop does not ship, for measure 6 to set against the default in the same
# stream: ``BENCH_PUBLISH_DESIGN=one_confirm_wait`` publishes an order's messages on a channel of
# each gunicorn thread's own (``bench.publish.ConfirmBatch``) and waits once for all their confirms.
_batches = threading.local()


def _publish_one_confirm_wait(follow_ups) -> None:
    from bench.publish import ConfirmBatch

    follow_ups = list(follow_ups)
    if not follow_ups:
        return

    def publish() -> None:
        batch = getattr(_batches, "batch", None)
        try:
            if batch is None:
                batch = _batches.batch = ConfirmBatch(current_app)
            for follow_up in follow_ups:
                batch.send(follow_up, registry.kind_get(follow_up.kind).queue)
            batch.wait()
        except Exception:  # any failure (py-amqp's own errors too): the relay publishes them
            logger.warning("one-confirm-wait publish failed; left to the relay", exc_info=True)
            _batches.batch = None
            follow_up_services.relay_wake(follow_up_ids=[f.pk for f in follow_ups])
        else:
            follow_up_services.follow_ups_mark_published(follow_ups)

    transaction.on_commit(publish, robust=True)


# (a′) skips the after-commit publish for its own request thread only: gunicorn's threads serve
# other requests meanwhile. Only the benchmark's gunicorn imports this module.
_baseline = threading.local()
_publish_after_commit = {"one_confirm_wait": _publish_one_confirm_wait}.get(
    os.environ.get("BENCH_PUBLISH_DESIGN", ""), follow_up_services.follow_ups_publish_after_commit
)


def _publish_unless_baseline(follow_ups) -> None:
    if not getattr(_baseline, "active", False):
        _publish_after_commit(follow_ups)


follow_up_services.follow_ups_publish_after_commit = _publish_unless_baseline


# How long each request's after-commit publishing takes in the web (first publish to the UPDATE
# that marks them handed over), appended per process to a file measure 6 reads: how much of b's
# latency is the publish itself.
_publishing = threading.local()
_follow_up_send = follow_up_services.follow_up_send
_publish_settle = follow_up_services._publish_settle


def _timed_send(follow_up, **options) -> None:
    if getattr(_publishing, "started", None) is None:
        _publishing.started = time.perf_counter()
    _follow_up_send(follow_up, **options)


def _timed_settle(handed_over, left_over) -> None:
    try:
        _publish_settle(handed_over, left_over)
    finally:
        started, _publishing.started = getattr(_publishing, "started", None), None
        if started is not None:
            seconds = time.perf_counter() - started
            with open(PUBLISH_TIMES_DIR / f"publish-seconds-{os.getpid()}.txt", "a") as times:
                times.write(f"{seconds}\n")


PUBLISH_TIMES_DIR = Path(settings.VAR_DIR)
if os.environ.get("BENCH_PUBLISH_TIMES"):  # measure 6's gunicorn only
    follow_up_services.follow_up_send = _timed_send
    follow_up_services._publish_settle = _timed_settle


@contextlib.contextmanager
def nothing_published():
    """The follow-up rows are written as ever; nothing is published (the relay, if one runs,
    publishes them after its grace)."""
    _baseline.active = True
    try:
        yield
    finally:
        _baseline.active = False


@api.post("/orders/rows/", response={201: PlacedOut})
def order_rows(request, payload: OrderIn):
    with nothing_published():
        placed = services.order_place(
            email=payload.email,
            name=payload.name,
            address=services.Address(**payload.address.dict()),
            lines=[services.LineRequest(sku=i.sku, quantity=i.quantity) for i in payload.items],
            card_number=payload.card_number,
        )
    order = placed.order
    return Status(201, {"id": str(order.pk), "number": order.number, "total": str(order.total)})


@api.post("/orders/inline/", response={201: PlacedOut})
def order_inline(request, payload: OrderIn):
    order = _order_insert(payload)
    services.confirmation_email_send(order=order)
    services.shipment_create(order=order)
    services.invoice_create(order=order)
    return Status(201, {"id": str(order.pk), "number": order.number, "total": str(order.total)})
