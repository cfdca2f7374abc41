"""Two checkouts to compare the real one with, parsed and validated exactly like POST /api/orders/.

- ``POST /bench/orders/bare/``: (a) the order insert alone (lock, price, charge, order + lines,
  stock) and no follow-ups at all: the floor any checkout pays.
- ``POST /bench/orders/inline/``: (c) the same insert, then the three follow-ups done in the request,
  as a shop without background workers would: email, warehouse call, invoice PDF.
"""

import secrets
from decimal import Decimal

from django.db import transaction
from ninja import NinjaAPI, Schema, Status

from orders import services
from orders.api import OrderIn
from orders.models import Order, OrderLine
from orders.payments import payment_charge
from shop.models import Product

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


@api.post("/orders/inline/", response={201: PlacedOut})
def order_inline(request, payload: OrderIn):
    order = _order_insert(payload)
    services.confirmation_email_send(order=order)
    services.shipment_create(order=order)
    services.invoice_create(order=order)
    return Status(201, {"id": str(order.pk), "number": order.number, "total": str(order.total)})
