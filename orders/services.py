"""Checkout and the follow-ups it leaves behind: every write to orders goes through here."""

import hashlib
import json
import logging
import random
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone
from kombu.exceptions import KombuError

from notifications.services import email_send
from orders import warehouse
from orders.invoices import invoice_pdf
from orders.models import CheckoutRequest, FollowUp, Invoice, Order, OrderLine
from orders.payments import payment_charge
from shop.models import Product

logger = logging.getLogger(__name__)

# Follow-ups are published by task name, so this module never imports the task module.
TASK_NAME_BY_KIND = {
    FollowUp.Kind.CONFIRMATION_EMAIL: "orders.tasks.confirmation_email_task",
    FollowUp.Kind.WAREHOUSE_SYNC: "orders.tasks.warehouse_sync_task",
    FollowUp.Kind.INVOICE: "orders.tasks.invoice_render_task",
}
# Crockford's alphabet: no I, L, O or U to misread when a customer reads a number out.
ORDER_NUMBER_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True)
class Address:
    line1: str
    city: str
    postal_code: str
    country: str


@dataclass(frozen=True)
class LineRequest:
    sku: str
    quantity: int


@dataclass(frozen=True)
class PlacedOrder:
    order: Order
    created: bool  # False when an idempotency key returned an order placed before
    follow_ups: tuple[FollowUp, ...] = ()  # as just written, for a new order


class CheckoutError(Exception):
    """A checkout that cannot go through; nothing was written."""


class UnknownProducts(CheckoutError):
    def __init__(self, skus: list[str]):
        super().__init__(f"Unknown SKU: {', '.join(skus)}")
        self.skus = skus


@dataclass(frozen=True)
class Shortage:
    sku: str
    name: str
    requested: int
    available: int


class OutOfStock(CheckoutError):
    def __init__(self, shortages: list[Shortage]):
        names = ", ".join(f"{s.name} (only {s.available} left)" for s in shortages)
        super().__init__(f"Not enough stock: {names}")
        self.shortages = shortages


class IdempotencyKeyReused(CheckoutError):
    def __init__(self):
        super().__init__("This Idempotency-Key was already used for a different order.")


def order_place(
    *,
    email: str,
    name: str,
    address: Address,
    lines: list[LineRequest],
    card_number: str,
    idempotency_key: str | None = None,
) -> PlacedOrder:
    """Charge the card and save the order, its lines and its follow-ups in one transaction.

    The follow-ups are published only after commit. A refusal (unknown product, stock, payment)
    raises before anything is written. With an ``idempotency_key``, a repeat of the same request
    returns the first order; the same key with a different request raises ``IdempotencyKeyReused``.
    """
    quantities: dict[str, int] = {}
    for line in lines:
        quantities[line.sku] = quantities.get(line.sku, 0) + line.quantity
    request_hash = _checkout_hash(email, name, address, quantities, card_number)
    if idempotency_key:
        earlier = _order_for_idempotency_key(idempotency_key, request_hash)
        if earlier is not None:
            return PlacedOrder(order=earlier, created=False)
    try:
        with transaction.atomic():
            order, follow_ups = _order_create(
                email=email,
                name=name,
                address=address,
                quantities=quantities,
                card_number=card_number,
                payment_key=idempotency_key or secrets.token_hex(16),
            )
            if idempotency_key:
                CheckoutRequest.objects.create(
                    key=idempotency_key, request_hash=request_hash, order=order
                )
    except IntegrityError:
        # A concurrent request with the same key committed first: answer with its order.
        earlier = idempotency_key and _order_for_idempotency_key(idempotency_key, request_hash)
        if not earlier:
            raise
        return PlacedOrder(order=earlier, created=False)
    return PlacedOrder(order=order, created=True, follow_ups=tuple(follow_ups))


def _order_create(
    *,
    email: str,
    name: str,
    address: Address,
    quantities: dict[str, int],
    card_number: str,
    payment_key: str,
) -> tuple[Order, list[FollowUp]]:
    # Lock rows in primary-key order so concurrent checkouts of overlapping carts cannot deadlock.
    products = list(Product.objects.select_for_update().filter(sku__in=quantities).order_by("pk"))
    unknown = sorted(set(quantities) - {product.sku for product in products})
    if unknown:
        raise UnknownProducts(unknown)
    shortages = [
        Shortage(product.sku, product.name, quantities[product.sku], product.stock)
        for product in products
        if product.stock < quantities[product.sku]
    ]
    if shortages:
        raise OutOfStock(shortages)

    total = sum((product.price * quantities[product.sku] for product in products), Decimal("0"))
    payment_reference = payment_charge(
        card_number=card_number, amount=total, idempotency_key=payment_key
    )
    order = Order.objects.create(
        number=_order_number(),
        email=email,
        name=name,
        address_line1=address.line1,
        address_city=address.city,
        address_postal_code=address.postal_code,
        address_country=address.country,
        total=total,
        payment_reference=payment_reference,
    )
    OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            product=product,
            sku=product.sku,
            name=product.name,
            unit_price=product.price,
            quantity=quantities[product.sku],
        )
        for product in products
    )
    for product in products:
        product.stock -= quantities[product.sku]
    Product.objects.bulk_update(products, ["stock"])

    follow_ups = FollowUp.objects.bulk_create(
        FollowUp(order=order, kind=kind) for kind in FollowUp.Kind.values
    )
    follow_ups_publish_after_commit((follow_up.pk, follow_up.kind) for follow_up in follow_ups)
    return order, follow_ups


def _order_number() -> str:
    return "CS-" + "".join(secrets.choice(ORDER_NUMBER_ALPHABET) for _ in range(8))


def _checkout_hash(email, name, address, quantities, card_number) -> str:
    canonical = json.dumps(
        [email, name, asdict(address), sorted(quantities.items()), card_number], sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _order_for_idempotency_key(key: str, request_hash: str) -> Order | None:
    request = CheckoutRequest.objects.select_related("order").filter(key=key).first()
    if request is None:
        return None
    if request.request_hash != request_hash:
        raise IdempotencyKeyReused()
    return request.order


# --- Publishing: the outbox side ------------------------------------------------------------------

# What a publish raises when the broker cannot take the message (kombu wraps connection errors).
PUBLISH_ERRORS = (KombuError, OSError)


def follow_up_publish(*, follow_up_id: int, kind: str) -> None:
    """Hand one follow-up to the broker and mark it published; raise if the broker is away."""
    _follow_up_send(follow_up_id=follow_up_id, kind=kind)
    _follow_ups_mark_published([follow_up_id])


def _follow_up_send(*, follow_up_id: int, kind: str) -> None:
    """Publish the follow-up's task once, without retrying: a failure is the relay's to repair."""
    current_app.send_task(TASK_NAME_BY_KIND[kind], args=[follow_up_id], retry=False)


def _follow_ups_mark_published(follow_up_ids: list[int]) -> None:
    """Tell the relay these were handed over, so it waits before publishing them again."""
    if follow_up_ids:
        FollowUp.objects.filter(pk__in=follow_up_ids, status=FollowUp.Status.PENDING).update(
            published_at=timezone.now()
        )


class PublishBreaker:
    """After a failed publish, this process stops trying for a few seconds.

    A checkout whose publish fails is still a saved order (the relay publishes it later), but each
    failed attempt can cost a connect timeout. With the breaker open, checkouts skip the attempt
    and stay as fast as with a healthy broker until the broker is back.
    """

    def __init__(self):
        self.closed_again_at = 0.0

    def is_open(self) -> bool:
        return time.monotonic() < self.closed_again_at

    def trip(self) -> None:
        self.closed_again_at = time.monotonic() + settings.FOLLOW_UP_PUBLISH_PAUSE_SECONDS


publish_breaker = PublishBreaker()


def follow_ups_publish_after_commit(follow_ups: Iterable[tuple[int, str]]) -> None:
    """Publish each follow-up once the transaction commits, or leave it pending for the relay.

    One callback per follow-up, so one failed publish cannot stop the others, then one callback
    that marks those handed over in a single UPDATE rather than one per follow-up.
    """
    handed_over: list[int] = []
    for follow_up_id, kind in follow_ups:
        transaction.on_commit(_publish_after_commit(follow_up_id, kind, handed_over), robust=True)
    transaction.on_commit(lambda: _follow_ups_mark_published(handed_over), robust=True)


def _publish_after_commit(follow_up_id: int, kind: str, handed_over: list[int]):
    def publish_follow_up() -> None:
        if publish_breaker.is_open():
            logger.info("broker recently unavailable: follow-up %s left to the relay", follow_up_id)
            return
        try:
            _follow_up_send(follow_up_id=follow_up_id, kind=kind)
        except PUBLISH_ERRORS as exc:
            publish_breaker.trip()
            logger.warning(
                "could not publish follow-up %s, left to the relay: %s", follow_up_id, exc
            )
        else:
            handed_over.append(follow_up_id)

    return publish_follow_up


@dataclass(frozen=True)
class RelayReport:
    published: int
    recovered: int
    failed: int


def follow_up_relay(*, limit: int = 500) -> RelayReport:
    """Publish what was never handed over, lost on the way, or held by a worker that died.

    - pending, and never published (or published long ago) once the grace period is over;
    - retrying, with its retry message overdue (lost with a broker restart, or never sent);
    - running past the hard time limit: the worker is gone, so the row goes back to pending.
    The tasks claim their row, so a message published twice still runs once.
    """
    now = timezone.now()
    grace = timedelta(seconds=settings.FOLLOW_UP_RELAY_GRACE_SECONDS)
    stale_run = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT) + grace
    republish_after = timedelta(seconds=settings.FOLLOW_UP_REPUBLISH_AFTER_SECONDS)

    recovered = FollowUp.objects.filter(
        status=FollowUp.Status.RUNNING, started_at__lt=now - stale_run
    ).update(status=FollowUp.Status.PENDING, published_at=None, last_error="worker lost")

    due = (
        FollowUp.objects.filter(
            Q(status=FollowUp.Status.PENDING, created_at__lt=now - grace)
            & (Q(published_at__isnull=True) | Q(published_at__lt=now - republish_after))
            | Q(status=FollowUp.Status.RETRYING, next_attempt_at__lt=now - grace)
        )
        .order_by("created_at")
        .values_list("pk", "kind")[:limit]
    )
    published = failed = 0
    for follow_up_id, kind in due:
        try:
            follow_up_publish(follow_up_id=follow_up_id, kind=kind)
        except PUBLISH_ERRORS as exc:  # the broker is still away; the next tick tries again
            logger.warning("relay could not publish follow-up %s: %s", follow_up_id, exc)
            failed += 1
            break
        published += 1
    return RelayReport(published=published, recovered=recovered, failed=failed)


# --- Running a follow-up: the worker side ---------------------------------------------------------


def follow_up_claim(*, follow_up_id: int, task_id: str) -> FollowUp | None:
    """Mark the follow-up running and count the attempt; ``None`` if it is not ours to run.

    The conditional update is the lock: of two deliveries of the same follow-up, one claims the row
    and the other finds it running or done and does nothing. The one exception is the very message
    that holds the claim coming back: the broker hands an unacknowledged message out again only when
    the worker that had it died (``acks_late`` + ``reject_on_worker_lost``), so it may take over at
    once instead of waiting for the relay to declare the claim stale.
    """
    claimable = (
        Q(status=FollowUp.Status.PENDING)
        | Q(status=FollowUp.Status.RETRYING)
        | Q(status=FollowUp.Status.RUNNING, claimed_by_task_id=task_id)
    )
    claimed = (
        FollowUp.objects.filter(pk=follow_up_id)
        .filter(claimable)
        .update(
            status=FollowUp.Status.RUNNING,
            started_at=timezone.now(),
            attempts=F("attempts") + 1,
            next_attempt_at=None,
            claimed_by_task_id=task_id,
        )
    )
    if not claimed:
        return None
    return FollowUp.objects.select_related("order").get(pk=follow_up_id)


def follow_up_succeed(*, follow_up: FollowUp, result: dict) -> None:
    _follow_up_finish(
        follow_up,
        status=FollowUp.Status.SUCCEEDED,
        result=result,
        last_error="",
        finished_at=timezone.now(),
    )


def follow_up_retry_later(*, follow_up: FollowUp, error: str, delay_seconds: float) -> None:
    _follow_up_finish(
        follow_up,
        status=FollowUp.Status.RETRYING,
        last_error=error[:2000],
        next_attempt_at=timezone.now() + timedelta(seconds=delay_seconds),
    )


def follow_up_bury(*, follow_up: FollowUp, error: str) -> None:
    """Park the follow-up as a dead letter: visible on the order and in the admin, replayable."""
    _follow_up_finish(
        follow_up, status=FollowUp.Status.DEAD, last_error=error[:2000], finished_at=timezone.now()
    )
    logger.error("follow-up %s (%s) is dead: %s", follow_up.pk, follow_up.kind, error)


def _follow_up_finish(follow_up: FollowUp, **fields) -> None:
    # Only the claim we hold may finish the row: a worker that lost it (timed out, recovered by
    # the relay) must not overwrite the newer attempt's outcome.
    FollowUp.objects.filter(
        pk=follow_up.pk, status=FollowUp.Status.RUNNING, started_at=follow_up.started_at
    ).update(**fields)


def follow_up_replay(*, follow_up_ids: list[int]) -> int:
    """Give dead letters another run: reset them to pending and publish each once, after commit.

    Only dead rows are reset, so replaying the same selection twice, or racing another operator,
    publishes each follow-up once.
    """
    with transaction.atomic():
        dead = list(
            FollowUp.objects.select_for_update()
            .filter(pk__in=follow_up_ids, status=FollowUp.Status.DEAD)
            .values_list("pk", "kind")
        )
        FollowUp.objects.filter(pk__in=[pk for pk, _ in dead]).update(
            status=FollowUp.Status.PENDING,
            attempts=0,
            published_at=None,
            next_attempt_at=None,
            finished_at=None,
            claimed_by_task_id="",
        )
        follow_ups_publish_after_commit(dead)
    return len(dead)


def retry_delay_seconds(*, attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, capped; never sooner than the server asked."""
    ceiling = min(
        settings.FOLLOW_UP_RETRY_CAP_SECONDS, settings.FOLLOW_UP_RETRY_BASE_SECONDS * 2**attempt
    )
    delay = random.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.FOLLOW_UP_RETRY_CAP_SECONDS))
    return delay


# --- The follow-ups themselves --------------------------------------------------------------------


def confirmation_email_send(*, order: Order) -> dict:
    lines = list(order.lines.all())
    body = render_to_string(
        "orders/email/confirmation.txt",
        {"order": order, "lines": lines, "order_url": f"{settings.SITE_URL}/orders/{order.pk}/"},
    )
    sent = email_send(
        purpose_key=f"order-{order.pk}-confirmation",
        recipient=order.email,
        subject=f"Order {order.number} confirmed",
        body=body,
    )
    return {"message_id": sent.message_id, "already_sent": sent.already_sent}


def shipment_create(*, order: Order) -> dict:
    """Ask the warehouse to ship the order. Its idempotency key makes a repeat ship nothing new."""
    if order.shipment_reference:
        return {"shipment_reference": order.shipment_reference}
    reference = warehouse.shipment_request(
        idempotency_key=f"order-{order.pk}-shipment",
        payload={
            "order_number": order.number,
            "name": order.name,
            "address": {
                "line1": order.address_line1,
                "city": order.address_city,
                "postal_code": order.address_postal_code,
                "country": order.address_country,
            },
            "lines": [{"sku": line.sku, "quantity": line.quantity} for line in order.lines.all()],
        },
    )
    Order.objects.filter(pk=order.pk).update(shipment_reference=reference)
    return {"shipment_reference": reference}


def invoice_create(*, order: Order) -> dict:
    """Render and store the invoice PDF once; a second run finds it and renders nothing."""
    existing = Invoice.objects.filter(order=order).values_list("pk", flat=True).first()
    if existing is not None:
        return {"invoice_id": existing, "already_rendered": True}
    pdf = invoice_pdf(order)
    try:
        with transaction.atomic():
            invoice = Invoice.objects.create(order=order, pdf=pdf)
    except IntegrityError:  # a concurrent run stored it first; one invoice per order stands
        invoice = Invoice.objects.get(order=order)
        return {"invoice_id": invoice.pk, "already_rendered": True}
    return {"invoice_id": invoice.pk, "bytes": len(pdf), "already_rendered": False}
