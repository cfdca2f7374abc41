"""What the ops app stores: queue samples for the ops page's charts. (The failure lab's faults are
stored by ``devtools``.)"""

from django.db import models


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
