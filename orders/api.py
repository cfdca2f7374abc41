"""The orders JSON API: place an order, read its status."""

from typing import Annotated, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.http import JsonResponse
from ninja import Header, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import (
    AfterValidator,
    Field,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from orders import selectors, services
from orders.addresses import (
    AddressInvalid,
    address_city,
    address_country,
    address_line,
    address_postal_code,
)
from orders.models import Order
from orders.payments import CARD_NUMBER_ERROR, PaymentRefused, card_number_digits

router = Router(tags=["orders"])


def text(max_length: int, min_length: int = 1):
    """A trimmed string field. No NUL characters: PostgreSQL cannot store one, and no real name,
    address or SKU has one."""
    return Annotated[
        str,
        StringConstraints(
            strip_whitespace=True,
            min_length=min_length,
            max_length=max_length,
            pattern=r"^[^\x00]*$",
        ),
    ]


def _email(value: str) -> str:
    try:
        validate_email(value)
    except DjangoValidationError:
        raise ValueError("Enter a valid email address.") from None
    return value


def _card_number(value: str) -> str:
    digits = card_number_digits(value)
    if digits is None:
        raise ValueError(CARD_NUMBER_ERROR)
    return digits


def _address_check(check, field: str):
    """An address part checked as the checkout form checks it: 422 with the form's sentence."""

    def validate(value: str) -> str:
        try:
            return check(value)
        except AddressInvalid as exc:
            raise PydanticCustomError(field, str(exc)) from None

    return AfterValidator(validate)


class AddressIn(Schema):
    line1: Annotated[text(200), _address_check(address_line, "line1")]
    city: Annotated[text(100), _address_check(address_city, "city")]
    # The country before the postal code: the code's shape depends on it.
    country: Annotated[text(60, min_length=2), _address_check(address_country, "country")]
    postal_code: text(20)

    @field_validator("postal_code")
    @classmethod
    def _postal_code(cls, value: str, info: ValidationInfo) -> str:
        country = info.data.get("country")
        if country is None:  # the country was refused: its own error says so
            return value
        try:
            return address_postal_code(value, country=country)
        except AddressInvalid as exc:
            raise PydanticCustomError("postal_code", str(exc)) from None


class ItemIn(Schema):
    sku: text(32)
    quantity: Annotated[StrictInt, Field(ge=1, le=99)]


class OrderIn(Schema):
    email: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_email)
    ]
    name: text(200)
    address: AddressIn
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=50)]
    card_number: Annotated[str, AfterValidator(_card_number)]


FollowUpKind = Literal["confirmation_email", "warehouse_sync", "invoice"]
FollowUpStatus = Literal["pending", "running", "retrying", "waiting", "succeeded", "dead"]


class FollowUpOut(Schema):
    kind: FollowUpKind
    status: FollowUpStatus
    attempts: int


class OrderOut(Schema):
    id: str
    number: str
    # "placed": on its way; "delayed": a follow-up is retrying or slow, nothing for the customer
    # to do; "needs_attention": a follow-up is a dead letter, staff are on it; "ready": all done.
    status: Literal["placed", "delayed", "needs_attention", "ready"]
    total: str
    follow_ups: list[FollowUpOut]


class ErrorOut(Schema):
    detail: str | list
    code: str | None = None


def order_out(order: Order, follow_ups=None) -> dict:
    follow_ups = selectors.order_follow_ups(order) if follow_ups is None else follow_ups
    return {
        "id": str(order.pk),
        "number": order.number,
        "status": selectors.order_progress(order, follow_ups).state,
        "total": f"{order.total:.2f}",
        "follow_ups": [
            {"kind": f.kind, "status": f.status, "attempts": f.attempts} for f in follow_ups
        ],
    }


@router.post(
    "/orders/",
    response={
        200: OrderOut,
        201: OrderOut,
        402: ErrorOut,
        429: ErrorOut,
        409: ErrorOut,
        422: ErrorOut,
        503: ErrorOut,  # the database is away (ops.middleware.database_unavailable)
    },
)
def order_create(
    request,
    payload: OrderIn,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=255, pattern=r"^[^\x00]*$")
    ] = None,
):
    client = services.checkout_client(
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR", ""),
    )
    try:
        placed = services.order_place(
            email=payload.email,
            name=payload.name,
            address=services.Address(**payload.address.dict()),
            lines=[
                services.LineRequest(sku=item.sku, quantity=item.quantity) for item in payload.items
            ],
            card_number=payload.card_number,
            idempotency_key=idempotency_key or None,
            client=client,
        )
    except PaymentRefused as exc:  # counted against the client: its slot is kept
        return Status(402, {"detail": exc.message, "code": exc.code})
    except services.CheckoutThrottled as exc:
        response = JsonResponse({"detail": str(exc), "code": "too_many_failures"}, status=429)
        response["Retry-After"] = str(exc.wait)
        return response
    except services.IdempotencyKeyInProgress as exc:
        return Status(409, {"detail": str(exc), "code": "idempotency_key_in_progress"})
    except services.OutOfStock as exc:
        return Status(409, {"detail": str(exc), "code": "out_of_stock"})
    except services.PriceChanged as exc:
        return Status(409, {"detail": str(exc), "code": "price_changed"})
    except services.ChargeVoided as exc:
        # The charge is being voided and nothing was saved: the same request may be sent again.
        return Status(503, {"detail": str(exc), "code": "charge_voided"})
    except services.UnknownProducts as exc:
        skus = set(exc.skus)
        errors = [
            {"loc": ["body", "payload", "items", index, "sku"], "msg": f"Unknown SKU {item.sku!r}."}
            for index, item in enumerate(payload.items)
            if item.sku in skus
        ]
        return Status(422, {"detail": errors, "code": "unknown_sku"})
    except services.IdempotencyKeyReused as exc:
        services.checkout_failure_record(client=client)
        return Status(422, {"detail": str(exc), "code": "idempotency_key_reused"})
    if placed.created:  # answered from what was just written: no second read
        return Status(201, order_out(placed.order, placed.follow_ups))
    return Status(200, order_out(selectors.order_get(order_id=placed.order.pk)))


@router.get("/orders/{order_id}/", response={200: OrderOut, 404: ErrorOut})
def order_detail(request, order_id: str):
    order = selectors.order_get(order_id=order_id)
    if order is None:
        raise HttpError(404, "No such order.")
    return Status(200, order_out(order))
