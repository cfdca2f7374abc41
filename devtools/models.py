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
