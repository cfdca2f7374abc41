"""Checkout and the follow-ups it leaves behind: every write to orders goes through here."""

import hashlib
import ipaddress
import json
import logging
import math
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.template.loader import render_to_string
from django.utils import timezone

from follow_ups.models import FollowUp
from follow_ups.services import (
    NewFollowUp,
    follow_ups_bring_forward,
    follow_ups_create,
    follow_ups_set_aside,
)
from notifications.services import email_send
from orders import payments, warehouse
from orders.invoices import invoice_pdf
from orders.models import (
    CheckoutFailures,
    CheckoutRequest,
    Invoice,
    InvoiceSequence,
    Order,
    OrderLine,
    PaymentAttempt,
)
from orders.payments import PaymentRefused, PaymentUnknown, payment_charge
from shop.models import Product

logger = logging.getLogger(__name__)

# The order's own follow-ups (declared to the engine in orders/follow_ups.py). Checkout writes one
# of each with the order; the order is ready once all of them succeeded.
CONFIRMATION_EMAIL = "confirmation_email"
WAREHOUSE_SYNC = "warehouse_sync"
INVOICE = "invoice"
CHECKOUT_KINDS = [CONFIRMATION_EMAIL, WAREHOUSE_SYNC, INVOICE]
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


class PriceChanged(CheckoutError):
    def __init__(self):
        super().__init__(
            "A price in your cart changed while you were paying. Please check it again."
        )


class ChargeVoided(CheckoutError):
    """The card was charged but the order could not be saved: the charge is being voided."""


class IdempotencyKeyReused(CheckoutError):
    def __init__(self):
        super().__init__("This Idempotency-Key was already used for a different order.")


class IdempotencyKeyInProgress(CheckoutError):
    """Another request holds this Idempotency-Key and has not finished: nothing was done."""

    def __init__(self):
        super().__init__(
            "A request with this Idempotency-Key is still in progress; "
            "send it again once that one has finished to get its answer."
        )


class CheckoutThrottled(CheckoutError):
    """Too many failed checkouts from this client in this window: the card was not tried."""

    def __init__(self, wait: int):
        super().__init__(f"Too many failed checkouts from this address; retry in {wait} s.")
        self.wait = wait


def order_place(
    *,
    email: str,
    name: str,
    address: Address,
    lines: list[LineRequest],
    card_number: str,
    idempotency_key: str | None = None,
    client: str | None = None,
) -> PlacedOrder:
    """Charge the card, then save the order, its lines and its follow-ups in one transaction.

    The way real shops complete a checkout (Saleor's ``complete_checkout`` is the model):

    1. the ``idempotency_key`` is claimed in its own committed row (``checkout_key_claim``): a
       repeat of a finished request returns its order, one still in progress raises
       ``IdempotencyKeyInProgress``, the same key with a different request ``IdempotencyKeyReused``;
    2. refusals that need no money (unknown product, stock) are answered before anything is written;
    3. the ``client`` takes one of its failed-checkout slots (``checkout_throttle_reserve``), or
       ``CheckoutThrottled`` is raised: a refusal keeps the slot, anything else gives it back;
    4. a ``PaymentAttempt`` is committed with a ``payment_void`` follow-up that waits
       ``PAYMENT_VOID_AFTER_SECONDS``: from here on a charge cannot be lost;
    5. the card is charged outside every transaction and row lock;
    6. the order is saved in its own transaction, which attaches the attempt, sets the void aside
       and completes the key's claim.

    If step 6 fails (stock sold meanwhile, a database error) the void is brought forward and the
    caller gets ``ChargeVoided``; if the request dies there, the engine voids the charge when the
    wait ends. A decline writes no order. A request that ends without an order releases its key,
    so the same key may be sent again. The follow-ups are published only after commit.
    """
    quantities: dict[str, int] = {}
    for line in lines:
        quantities[line.sku] = quantities.get(line.sku, 0) + line.quantity
    claim = None
    if idempotency_key:
        request_hash = _checkout_hash(email, name, address, quantities, card_number)
        claim = checkout_key_claim(key=idempotency_key, request_hash=request_hash)
        if isinstance(claim, Order):
            return PlacedOrder(order=claim, created=False)
    slot = None
    refused = False
    try:
        products = _products_check(quantities, Product.objects.all())
        total = _total(products, quantities)
        if client is not None:
            slot = checkout_throttle_reserve(client=client)
        attempt = payment_attempt_start(
            checkout_key=idempotency_key or "", amount=total, card_number=card_number, claim=claim
        )
        try:
            reference = payment_charge(
                card_number=card_number, amount=total, idempotency_key=str(attempt.pk)
            )
        except PaymentRefused as exc:
            refused = True
            payment_attempt_declined(attempt=attempt, code=exc.code)
            raise
        except PaymentUnknown as exc:
            payment_attempt_abandon(attempt=attempt, failure=f"no answer from the gateway: {exc}")
            raise ChargeVoided(
                "We could not confirm your payment with the bank. Any charge has been cancelled; "
                "please try again."
            ) from exc
        try:
            with transaction.atomic():
                order, follow_ups = _order_create(
                    email=email,
                    name=name,
                    address=address,
                    quantities=quantities,
                    total=total,
                    attempt=attempt,
                    payment_reference=reference,
                    claim=claim,
                )
        except BaseException as exc:  # the stock or a price changed, the database failed
            failure = str(exc) if isinstance(exc, CheckoutError) else f"{type(exc).__name__}: {exc}"
            payment_attempt_abandon(attempt=attempt, failure=failure)
            raise
    except BaseException:
        if claim is not None:
            checkout_key_release(claim=claim)
        if slot is not None and not refused:
            checkout_throttle_release(slot=slot)
        raise
    if slot is not None:
        checkout_throttle_release(slot=slot)  # a placed order never counts
    return PlacedOrder(order=order, created=True, follow_ups=tuple(follow_ups))


# --- Idempotency keys: claimed before the charge --------------------------------------------------


@dataclass(frozen=True)
class KeyClaim:
    """The request's hold on an Idempotency-Key (a ``CheckoutRequest`` row it owns)."""

    pk: int
    owner: str


def _claim_until():
    # A checkout that has not finished by then has its charge voided anyway (PAYMENT_VOID_AFTER_SECONDS).
    return Now() + timedelta(seconds=settings.PAYMENT_VOID_AFTER_SECONDS)


def checkout_key_claim(*, key: str, request_hash: str) -> KeyClaim | Order:
    """Claim the key in its own committed row before anything is charged, or answer without
    charging: the key's order if its request finished (``IdempotencyKeyReused`` if that request
    was a different one), ``IdempotencyKeyInProgress`` while another request holds it.

    A claim lapses ``PAYMENT_VOID_AFTER_SECONDS`` after it was taken (compared with the
    database's clock); a lapsed or released one is taken over only once the charge it started is
    attached or voided, so two charges for one key never stand at the gateway together.
    """
    owner = secrets.token_hex(16)
    try:
        with transaction.atomic():
            claim = CheckoutRequest.objects.create(
                key=key, request_hash=request_hash, owner=owner, claimed_until=_claim_until()
            )
        return KeyClaim(pk=claim.pk, owner=owner)
    except IntegrityError:  # the key is known: finished, in progress, or free to take over
        pass
    request = (
        CheckoutRequest.objects.select_related("order", "payment_attempt").filter(key=key).first()
    )
    if request is None:
        raise IdempotencyKeyInProgress()  # a moment ago it was there: treat it as busy
    if request.order is not None:
        if request.request_hash != request_hash:
            raise IdempotencyKeyReused()
        return request.order
    charge_open = (
        request.payment_attempt is not None
        and request.payment_attempt.status == PaymentAttempt.Status.STARTED
    )
    # Compare-and-set on the claim as read: of two requests taking it over, one wins; a holder
    # that started a charge meanwhile keeps it.
    if not charge_open and CheckoutRequest.objects.filter(
        pk=request.pk,
        owner=request.owner,
        payment_attempt=request.payment_attempt_id,
        claimed_until__lte=Now(),
        order__isnull=True,
    ).update(
        request_hash=request_hash,
        owner=owner,
        claimed_until=_claim_until(),
        payment_attempt=None,
    ):
        return KeyClaim(pk=request.pk, owner=owner)
    # Held by a request that has not finished, or released with its charge still being voided;
    # whether this request is the same one is told once that is settled.
    raise IdempotencyKeyInProgress()


def checkout_key_release(*, claim: KeyClaim) -> None:
    """The request ends without an order: its key may be sent again (taken over once the charge
    it started, if any, is voided)."""
    try:
        CheckoutRequest.objects.filter(pk=claim.pk, owner=claim.owner, order__isnull=True).update(
            owner="", claimed_until=Now()
        )
    except DatabaseError:
        logger.exception("checkout key claim %s: it lapses on its own", claim.pk)


def _products_check(quantities: dict[str, int], products_qs) -> list[Product]:
    products = list(products_qs.filter(sku__in=quantities).order_by("pk"))
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
    return products


def _total(products: list[Product], quantities: dict[str, int]) -> Decimal:
    return sum((product.price * quantities[product.sku] for product in products), Decimal("0"))


def _order_create(
    *,
    email: str,
    name: str,
    address: Address,
    quantities: dict[str, int],
    total: Decimal,
    attempt: PaymentAttempt,
    payment_reference: str,
    claim: KeyClaim | None = None,
) -> tuple[Order, list[FollowUp]]:
    # Lock rows in primary-key order so concurrent checkouts of overlapping carts cannot deadlock.
    products = _products_check(quantities, Product.objects.select_for_update())
    if _total(products, quantities) != total:
        raise PriceChanged()
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
        card_last4=attempt.card_last4,
    )
    # Compare-and-set: if the engine voided this charge meanwhile (the request hung past the
    # wait), the order must not commit on a void charge.
    attached = PaymentAttempt.objects.filter(
        pk=attempt.pk, status=PaymentAttempt.Status.STARTED
    ).update(
        status=PaymentAttempt.Status.ATTACHED,
        reference=payment_reference,
        order=order,
        updated_at=timezone.now(),
    )
    if not attached:
        raise ChargeVoided("Your payment took too long and was cancelled; please try again.")
    if claim is not None and not CheckoutRequest.objects.filter(
        pk=claim.pk, owner=claim.owner, order__isnull=True
    ).update(order=order, claimed_until=None):
        raise ChargeVoided("This checkout was taken over by a later request; please try again.")
    follow_ups_set_aside(keys=[payment_void_key(attempt)], reason=f"order {order.number} saved")
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

    follow_ups = follow_ups_create(follow_ups=order_follow_ups_new(order))
    return order, follow_ups


# --- Payment attempts: a charge is never lost -----------------------------------------------------

PAYMENT_VOID = "payment_void"


def payment_void_key(attempt: PaymentAttempt) -> str:
    return f"payment:{attempt.pk}:void"


def payment_attempt_start(
    *, checkout_key: str, amount: Decimal, card_number: str, claim: KeyClaim | None = None
) -> PaymentAttempt:
    """Commit the attempt and its waiting void before the card is charged; under an idempotency
    key, only while this request still holds the key's claim (``IdempotencyKeyInProgress`` if a
    later request took a lapsed claim over)."""
    with transaction.atomic():
        attempt = PaymentAttempt.objects.create(
            checkout_key=checkout_key, amount=amount, card_last4=card_number[-4:]
        )
        if claim is not None and not CheckoutRequest.objects.filter(
            pk=claim.pk, owner=claim.owner, order__isnull=True
        ).update(payment_attempt=attempt, claimed_until=_claim_until()):
            raise IdempotencyKeyInProgress()
        follow_ups_create(
            follow_ups=[
                NewFollowUp(
                    key=payment_void_key(attempt),
                    kind=PAYMENT_VOID,
                    subject=f"payment:{attempt.pk}",
                    label=f"{amount} on •••• {attempt.card_last4}",
                    not_before=timezone.now()
                    + timedelta(seconds=settings.PAYMENT_VOID_AFTER_SECONDS),
                )
            ]
        )
    return attempt


def payment_attempt_declined(*, attempt: PaymentAttempt, code: str) -> None:
    """The gateway refused: no money moved, nothing to void."""
    with transaction.atomic():
        PaymentAttempt.objects.filter(pk=attempt.pk).update(
            status=PaymentAttempt.Status.DECLINED, failure=code, updated_at=timezone.now()
        )
        follow_ups_set_aside(keys=[payment_void_key(attempt)], reason=f"declined: {code}")


def payment_attempt_abandon(*, attempt: PaymentAttempt, failure: str) -> None:
    """The order did not commit: void the charge now rather than when the wait ends. If this
    write fails too, the waiting follow-up still voids it.

    If the void was handed over already (the request hung past the wait), it may have run before
    this request's charge reached the gateway and found nothing to void: a second void, due now,
    voids the charge that landed late (voiding is idempotent at the gateway)."""
    try:
        with transaction.atomic():
            PaymentAttempt.objects.filter(
                pk=attempt.pk, status=PaymentAttempt.Status.STARTED
            ).update(failure=failure[:300], updated_at=timezone.now())
            if not follow_ups_bring_forward(keys=[payment_void_key(attempt)]):
                follow_ups_create(
                    follow_ups=[
                        NewFollowUp(
                            key=f"{payment_void_key(attempt)}:late-charge",
                            kind=PAYMENT_VOID,
                            subject=f"payment:{attempt.pk}",
                            label=f"{attempt.amount} on •••• {attempt.card_last4}, charged late",
                        )
                    ]
                )
    except DatabaseError:
        logger.exception("payment attempt %s: the void waits for its follow-up", attempt.pk)


def payment_void(*, attempt_id) -> dict:
    """The ``payment_void`` follow-up: void the charge unless its order committed.

    Compare-and-set with ``_order_create``: of the order's commit and this void, one wins.
    """
    won = PaymentAttempt.objects.filter(pk=attempt_id, status=PaymentAttempt.Status.STARTED).update(
        status=PaymentAttempt.Status.VOIDED, updated_at=timezone.now()
    )
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    if not won and attempt.status != PaymentAttempt.Status.VOIDED:
        return {"voided": False, "status": attempt.status}
    reference = payments.payment_void(idempotency_key=str(attempt.pk))
    return {"voided": reference is not None, "reference": reference or ""}


def order_subject(order_id) -> str:
    """How the follow-up ledger names an order (``FollowUp.subject``)."""
    return f"order:{order_id}"


def order_follow_ups_new(order: Order) -> list[NewFollowUp]:
    return [
        NewFollowUp(
            key=f"{order_subject(order.pk)}:{kind}",
            kind=kind,
            subject=order_subject(order.pk),
            label=order.number,
        )
        for kind in CHECKOUT_KINDS
    ]


def _order_number() -> str:
    return "CS-" + "".join(secrets.choice(ORDER_NUMBER_ALPHABET) for _ in range(8))


def _checkout_hash(email, name, address, quantities, card_number) -> str:
    canonical = json.dumps(
        [email, name, asdict(address), sorted(quantities.items()), card_number], sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- The follow-ups themselves --------------------------------------------------------------------


def confirmation_email_body(order: Order) -> str:
    from orders.selectors import order_confirmation_notice  # selectors import this module's kinds

    return render_to_string(
        "orders/email/confirmation.txt",
        {
            "order": order,
            "lines": list(order.lines.all()),
            "order_url": f"{settings.SITE_URL}/orders/{order.pk}/",
            "notice": order_confirmation_notice(order),
        },
    )


def confirmation_email_send(*, order: Order) -> dict:
    sent = email_send(
        purpose_key=f"order-{order.pk}-confirmation",
        recipient=order.email,
        subject=f"Order {order.number} confirmed",
        body=confirmation_email_body(order),
    )
    return {"message_id": sent.message_id, "already_sent": sent.already_sent}


def shipment_payload(order: Order) -> dict:
    return {
        "order_number": order.number,
        "name": order.name,
        "address": {
            "line1": order.address_line1,
            "city": order.address_city,
            "postal_code": order.address_postal_code,
            "country": order.address_country,
        },
        "lines": [{"sku": line.sku, "quantity": line.quantity} for line in order.lines.all()],
    }


def shipment_create(*, order: Order) -> dict:
    """Ask the warehouse to ship the order. Its idempotency key makes a repeat ship nothing new."""
    if order.shipment_reference:
        return {"shipment_reference": order.shipment_reference}
    reference = warehouse.shipment_request(
        idempotency_key=f"order-{order.pk}-shipment", payload=shipment_payload(order)
    )
    Order.objects.filter(pk=order.pk).update(shipment_reference=reference)
    return {"shipment_reference": reference}


def invoice_create(*, order: Order) -> dict:
    """Number, render and store the invoice once; a second run finds it and renders nothing.

    The number is the next of ``InvoiceSequence``, taken under its row's lock in the transaction
    that stores the invoice: a run that fails gives its number back, so numbers have no gaps.
    Invoices are numbered one at a time (rendering one takes milliseconds).
    """
    existing = Invoice.objects.filter(order=order).values_list("pk", flat=True).first()
    if existing is not None:
        return {"invoice_id": existing, "already_rendered": True}
    InvoiceSequence.objects.get_or_create(pk=1)  # once per database; the race is Django's to settle
    try:
        with transaction.atomic():
            sequence = InvoiceSequence.objects.select_for_update().get(pk=1)
            # A concurrent run may have stored it while this one waited for the lock.
            existing = Invoice.objects.filter(order=order).values_list("pk", flat=True).first()
            if existing is not None:
                return {"invoice_id": existing, "already_rendered": True}
            number = sequence.last + 1
            pdf = invoice_pdf(order, number=number, issued=timezone.now())
            invoice = Invoice.objects.create(order=order, number=number, pdf=pdf)
            InvoiceSequence.objects.filter(pk=1).update(last=number)
    except IntegrityError:  # a concurrent run stored it first; one invoice per order stands
        invoice = Invoice.objects.filter(order=order).first()
        if invoice is None:
            raise
        return {"invoice_id": invoice.pk, "already_rendered": True}
    return {
        "invoice_id": invoice.pk,
        "number": invoice.display_number,
        "bytes": len(pdf),
        "already_rendered": False,
    }


# --- Throttling failed checkouts (card testing, mail to strangers) -----------------------------


def checkout_failure_window(now) -> tuple:
    """The fixed window ``now`` falls in: its start, and the seconds left until it ends."""
    seconds = settings.CHECKOUT_FAILURE_WINDOW_SECONDS
    start = int(now.timestamp() // seconds * seconds)
    return datetime.fromtimestamp(start, tz=UTC), start + seconds - now.timestamp()


def checkout_client(*, remote_addr: str, forwarded_for: str) -> str:
    """The address checkouts are counted against. Behind ``TRUSTED_PROXY_HOPS`` proxies every
    connection comes from the nearest one, so the client is the entry the outermost trusted proxy
    appended to ``X-Forwarded-For``; entries left of it are the client's own words and ignored."""
    hops = settings.TRUSTED_PROXY_HOPS
    entries = [entry.strip() for entry in forwarded_for.split(",") if entry.strip()]
    if hops and len(entries) >= hops:
        try:  # a trusted proxy writes an address; anything else is a misconfiguration's garbage
            return str(ipaddress.ip_address(entries[-hops]))
        except ValueError:
            pass
    return remote_addr or "unknown"


@dataclass(frozen=True)
class ThrottleSlot:
    client: str
    window_start: datetime


def checkout_throttle_reserve(*, client: str) -> ThrottleSlot | None:
    """Take one of the client's failed-checkout slots before its card is tried, or raise
    ``CheckoutThrottled`` with the seconds to wait. A conditional increment (``failures < limit``),
    so however many checkouts arrive at once, at most ``CHECKOUT_FAILURES_PER_CLIENT`` of them
    reach the gateway per window unless earlier ones were placed; ``None`` when the limit is off.
    """
    limit = settings.CHECKOUT_FAILURES_PER_CLIENT
    if not limit:
        return None
    window_start, left = checkout_failure_window(timezone.now())
    window = CheckoutFailures.objects.filter(client=client, window_start=window_start)
    for _ in range(2):
        if window.filter(failures__lt=limit).update(failures=F("failures") + 1):
            return ThrottleSlot(client=client, window_start=window_start)
        if window.filter(failures__gte=limit).exists():
            raise CheckoutThrottled(max(1, math.ceil(left)))
        # No window yet, or one another request opened a moment ago: open it, or take a slot in it.
        try:
            with transaction.atomic():
                CheckoutFailures.objects.create(
                    client=client, window_start=window_start, failures=1
                )
            return ThrottleSlot(client=client, window_start=window_start)
        except IntegrityError:  # another request opened the window first: take a slot in it
            continue
    raise CheckoutThrottled(max(1, math.ceil(left)))


def checkout_throttle_release(*, slot: ThrottleSlot) -> None:
    """The checkout did not fail through the client (an order was placed, stock ran out, the
    bank did not answer): give its slot back. Never the request's failure: at worst the slot
    stays taken until the window ends."""
    try:
        CheckoutFailures.objects.filter(
            client=slot.client, window_start=slot.window_start, failures__gt=0
        ).update(failures=F("failures") - 1)
    except DatabaseError:
        logger.exception("checkout slot of %s: kept until its window ends", slot.client)


def checkout_failures_clear(*, client: str | None = None) -> int:
    """Forget the failed checkouts counted against ``client`` (every client's when ``None``), so
    it may check out again at once: the failure lab's way out for someone who tried every test
    card. Returns how many windows were forgotten."""
    windows = CheckoutFailures.objects.all()
    if client is not None:
        windows = windows.filter(client=client)
    deleted, _ = windows.delete()
    return deleted


def checkout_failure_record(*, client: str) -> None:
    """Count a failure that never reached the gateway (a rejected checkout form, a reused key)
    against the client's window; a refused card keeps the slot it reserved instead."""
    if not settings.CHECKOUT_FAILURES_PER_CLIENT:
        return
    window_start, _ = checkout_failure_window(timezone.now())
    counted = CheckoutFailures.objects.filter(client=client, window_start=window_start).update(
        failures=F("failures") + 1
    )
    if counted:
        return
    try:
        with transaction.atomic():
            CheckoutFailures.objects.create(client=client, window_start=window_start, failures=1)
    except IntegrityError:  # another process opened the window first
        CheckoutFailures.objects.filter(client=client, window_start=window_start).update(
            failures=F("failures") + 1
        )
