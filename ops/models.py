"""What the failure lab stores: the warehouse faults an operator switched on.

The email faults live with email delivery (``notifications.models.EmailFaults``), which reads them
before every send; the warehouse faults are kept here and pushed to the warehouse simulator.
"""

from django.db import models


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
