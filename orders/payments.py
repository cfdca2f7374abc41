"""The shop's side of the payment gateway (``settings.PAYMENT_GATEWAY``; the demo's is
``devtools.payment_gateway.SimulatedGateway``). Charges and voids carry an idempotency key, so a
repeat is one operation at the gateway."""

import re
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

# ASCII digits only: str.isdigit() also takes Arabic-Indic, fullwidth or superscript digits, which
# no gateway reads as a card number.
CARD_NUMBER = re.compile(r"[0-9]{12,19}")
CARD_NUMBER_ERROR = "Enter a card number of 12 to 19 digits (0 to 9)."


def card_number_digits(value: str) -> str | None:
    """The card number's digits without spaces or dashes; ``None`` if it is not one."""
    digits = value.replace(" ", "").replace("-", "")
    return digits if CARD_NUMBER.fullmatch(digits) else None


class PaymentRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class PaymentUnknown(Exception):
    """The gateway did not say whether it charged: treat the charge as made, and void it."""


@cache
def _gateway():
    return import_string(settings.PAYMENT_GATEWAY)()


def payment_test_cards() -> dict[str, tuple[str, str | None]]:
    return _gateway().test_cards


def payment_charge(*, card_number: str, amount: Decimal, idempotency_key: str) -> str:
    """Charge the card and return the payment reference; raise ``PaymentRefused`` if refused,
    ``PaymentUnknown`` if the gateway gave no answer."""
    gateway = _gateway()
    try:
        return gateway.charge(
            card_number=card_number, amount=amount, idempotency_key=idempotency_key
        )
    except gateway.Declined as exc:
        raise PaymentRefused(exc.code, exc.message) from None
    except (gateway.NoAnswer, OSError) as exc:
        raise PaymentUnknown(str(exc)) from exc


def payment_void(*, idempotency_key: str) -> str | None:
    """Void the charge made with this key, if one was made; returns its reference or ``None``."""
    return _gateway().void(idempotency_key=idempotency_key)
