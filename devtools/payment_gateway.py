"""A simulated payment gateway: the familiar test cards, charges and voids kept in its own ledger
(``SimulatedCharge``), and the faults a real one has (an answer lost after charging, a slow answer, a request that reaches it late).

The shop reaches it only through ``settings.PAYMENT_GATEWAY`` and ``orders.payments``; a real
gateway is a class with the same three methods.
"""

import hashlib
import time
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from devtools.models import PaymentFaults, SimulatedCharge

TEST_CARDS = {
    "4242424242424242": ("Succeeds", None),
    "4000000000000002": ("Declined", "card_declined"),
    "4000000000009995": ("Insufficient funds", "insufficient_funds"),
}
REFUSALS = {
    "card_declined": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}


class Declined(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class NoAnswer(Exception):
    """The gateway did not answer: the charge may or may not have been made."""


class SimulatedGateway:
    test_cards = TEST_CARDS
    Declined = Declined
    NoAnswer = NoAnswer

    def charge(self, *, card_number: str, amount: Decimal, idempotency_key: str) -> str:
        """Charge the card once per idempotency key and return the charge's reference. A refusal
        is in the ledger too (``DECLINED``), as a real gateway's dashboard lists it."""
        refusal = TEST_CARDS[card_number][1] if card_number in TEST_CARDS else "unknown_card"
        if refusal:
            _record(idempotency_key, amount, SimulatedCharge.Status.DECLINED)
            delay_ms = PaymentFaults.objects.filter(pk=1).values_list("answer_delay_ms", flat=True)
            if delay_ms and delay_ms[0]:  # a refusal takes its time too
                time.sleep(delay_ms[0] / 1000)
            if refusal == "unknown_card":
                raise Declined(
                    "card_declined", "This card was declined. Use one of the test cards."
                )
            raise Declined(refusal, REFUSALS[refusal])
        lose_answer, delay_ms, charge_delay_ms = _faults_take()
        if charge_delay_ms:  # the request is still on its way: nothing is charged yet
            time.sleep(charge_delay_ms / 1000)
        charge = _record(idempotency_key, amount, SimulatedCharge.Status.CHARGED)
        if delay_ms:
            time.sleep(delay_ms / 1000)
        if lose_answer:
            raise NoAnswer("the gateway closed the connection before answering")
        return charge.reference

    def void(self, *, idempotency_key: str) -> str | None:
        """Void the charge made with this key; ``None`` if there is none. Voiding twice is fine."""
        voided = SimulatedCharge.objects.filter(
            idempotency_key=idempotency_key, status=SimulatedCharge.Status.CHARGED
        ).update(status=SimulatedCharge.Status.VOIDED, voided_at=timezone.now())
        charge = SimulatedCharge.objects.filter(idempotency_key=idempotency_key).first()
        if charge is None:
            return None
        return (
            charge.reference if voided or charge.status == SimulatedCharge.Status.VOIDED else None
        )


def _record(idempotency_key: str, amount: Decimal, status: str) -> SimulatedCharge:
    digest = hashlib.sha256(f"{idempotency_key}:{amount}".encode()).hexdigest()
    prefix = "dec" if status == SimulatedCharge.Status.DECLINED else "pay"
    try:
        with transaction.atomic():
            charge, _ = SimulatedCharge.objects.get_or_create(
                idempotency_key=idempotency_key,
                defaults={
                    "reference": f"{prefix}_{digest[:24]}",
                    "amount": amount,
                    "status": status,
                },
            )
    except IntegrityError:  # the same key, concurrently: one charge stands
        charge = SimulatedCharge.objects.get(idempotency_key=idempotency_key)
    return charge


def _faults_take() -> tuple[bool, int, int]:
    """This charge's faults: whether its answer is lost, the answer's delay, the request's delay."""
    with transaction.atomic():
        faults = PaymentFaults.objects.select_for_update().filter(pk=1).first()
        if faults is None:
            return False, 0, 0
        lose = faults.lose_answers > 0
        if lose:
            faults.lose_answers -= 1
            faults.save(update_fields=["lose_answers", "updated_at"])
        return lose, faults.answer_delay_ms, faults.charge_delay_ms


def payment_faults_set(
    *, lose_answers: int = 0, answer_delay_ms: int = 0, charge_delay_ms: int = 0
) -> PaymentFaults:
    faults, _ = PaymentFaults.objects.update_or_create(
        pk=1,
        defaults={
            "lose_answers": lose_answers,
            "answer_delay_ms": answer_delay_ms,
            "charge_delay_ms": charge_delay_ms,
        },
    )
    return faults
