"""Checkout and the follow-ups it leaves behind: every write to orders goes through here."""

import hashlib
import json
import logging
import secrets
from dataclasses import asdict, dataclass
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string

from follow_ups.models import FollowUp
from follow_ups.services import NewFollowUp, follow_ups_create
from notifications.services import email_send
from orders import warehouse
from orders.invoices import invoice_pdf
from orders.models import CheckoutRequest, Invoice, Order, OrderLine
from orders.payments import payment_charge
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
        card_last4=card_number[-4:],
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

    follow_ups = follow_ups_create(follow_ups=order_follow_ups_new(order))
    return order, follow_ups


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


def _order_for_idempotency_key(key: str, request_hash: str) -> Order | None:
    request = CheckoutRequest.objects.select_related("order").filter(key=key).first()
    if request is None:
        return None
    if request.request_hash != request_hash:
        raise IdempotencyKeyReused()
    return request.order


# --- The follow-ups themselves --------------------------------------------------------------------


def confirmation_email_send(*, order: Order) -> dict:
    from orders.selectors import order_confirmation_notice  # selectors import this module's kinds

    lines = list(order.lines.all())
    body = render_to_string(
        "orders/email/confirmation.txt",
        {
            "order": order,
            "lines": lines,
            "order_url": f"{settings.SITE_URL}/orders/{order.pk}/",
            "notice": order_confirmation_notice(order),
        },
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
