"""A simulated payment gateway with the familiar test cards, so checkout has a real refusal path."""

import hashlib
from decimal import Decimal

TEST_CARDS = {
    "4242424242424242": ("Succeeds", None),
    "4000000000000002": ("Declined", "card_declined"),
    "4000000000009995": ("Insufficient funds", "insufficient_funds"),
}


class PaymentRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def payment_charge(*, card_number: str, amount: Decimal, idempotency_key: str) -> str:
    """Charge the card and return the payment reference; raise ``PaymentRefused`` if refused.

    Like a real gateway, the same idempotency key returns the same charge instead of a second one.
    """
    if card_number not in TEST_CARDS:
        raise PaymentRefused("card_declined", "This card was declined. Use one of the test cards.")
    _, refusal = TEST_CARDS[card_number]
    if refusal == "card_declined":
        raise PaymentRefused("card_declined", "Your card was declined.")
    if refusal == "insufficient_funds":
        raise PaymentRefused("insufficient_funds", "Your card has insufficient funds.")
    digest = hashlib.sha256(f"{idempotency_key}:{amount}".encode()).hexdigest()
    return f"pay_{digest[:24]}"
