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


class QueueSample(models.Model):
    """A queue's depth and oldest wait at one moment, taken by beat so the ops page can chart them.

    The ledger can tell throughput, retries and dead letters for any minute after the fact; the
    broker's queue depth exists only now, so it is sampled. Samples older than two hours are pruned.
    """

    taken_at = models.DateTimeField(db_index=True)
    queue = models.CharField(max_length=64)
    depth = models.PositiveIntegerField(null=True, blank=True)  # None: the broker did not answer
    waiting = models.PositiveIntegerField(default=0)
    oldest_wait_seconds = models.FloatField(default=0.0)

    class Meta:
        ordering = ["taken_at"]

    def __str__(self) -> str:
        return f"{self.queue} at {self.taken_at:%H:%M:%S}: {self.depth}"
