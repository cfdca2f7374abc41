"""What the failure lab stores: the faults an operator switched on for the email provider and the
warehouse. The email faults are acted out by ``devtools.email_backends`` (only while ``FAILURE_LAB``
is on); the warehouse faults are pushed to the warehouse simulator's ``PUT /config``."""

from django.db import models


class EmailFaults(models.Model):
    """Faults the failure lab switched on for the email provider; one row.

    Latency is slept before connecting; ``error_rate`` is the share of sends refused as temporary
    failures (SMTP 451, retried); mail to ``poison_recipient`` is refused for good (SMTP 550, a dead
    letter at once).
    """

    latency_ms = models.PositiveIntegerField(default=0)
    error_rate = models.FloatField(default=0.0)
    poison_recipient = models.EmailField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "email faults"

    def __str__(self) -> str:
        return f"email: {self.latency_ms} ms, {self.error_rate:.0%} errors"


class WarehouseFaults(models.Model):
    """One row: the latency, error rate and outage the lab last asked the warehouse for."""

    latency_ms = models.PositiveIntegerField(default=5)
    failure_rate = models.FloatField(default=0.0)
    outage = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "warehouse faults"

    def __str__(self) -> str:
        return (
            f"warehouse: {self.latency_ms} ms, {self.failure_rate:.0%} errors, outage={self.outage}"
        )


class SimulatedCharge(models.Model):
    """The simulated payment gateway's own ledger (``devtools.payment_gateway``): what a real
    gateway's dashboard would list. Written outside the shop's transactions, like a real charge."""

    class Status(models.TextChoices):
        CHARGED = "charged"
        VOIDED = "voided"
        DECLINED = "declined"  # refused: no money moved, but the request reached the gateway

    idempotency_key = models.CharField(max_length=255, unique=True)
    reference = models.CharField(max_length=64, unique=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CHARGED)
    created_at = models.DateTimeField(auto_now_add=True)
    voided_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.reference} {self.amount} ({self.status})"


class PaymentFaults(models.Model):
    """One row: faults of the simulated gateway. ``lose_answers``: that many next charges are made
    and then answered with an error, as when the connection drops after the gateway charged;
    ``answer_delay_ms``: the charge is made, then the answer waits (a crash in that window leaves a
    charge and no order); ``charge_delay_ms``: the request reaches the gateway late, so the charge
    is made that long after it was sent (a void that ran meanwhile found nothing to void)."""

    lose_answers = models.PositiveIntegerField(default=0)
    answer_delay_ms = models.PositiveIntegerField(default=0)
    charge_delay_ms = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "payment faults"

    def __str__(self) -> str:
        return (
            f"payments: lose {self.lose_answers} answers, {self.answer_delay_ms} ms delay, "
            f"charges {self.charge_delay_ms} ms late"
        )
