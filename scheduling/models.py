"""Beat's bookkeeping: named leases (one beat ticks, one relay publishes), the run-once-per-period
records of the recurring jobs, and what schedule sync last wrote."""

from django.db import models


class Lease(models.Model):
    """A named lease: one holder at a time while ``expires_at`` is in the future (beat, the relay)."""

    name = models.CharField(max_length=64, unique=True)
    holder = models.CharField(max_length=200)
    expires_at = models.DateTimeField()
    acquired_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder} until {self.expires_at:%H:%M:%S}"


class JobRun(models.Model):
    """One run of a recurring job for one period; the unique key makes a second run a no-op."""

    class Outcome(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    job = models.CharField(max_length=64)
    period = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    attempts = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["job", "period"], name="job_run_one_per_period"),
        ]

    def __str__(self) -> str:
        return f"{self.job} {self.period}: {self.outcome}"


class ScheduleSync(models.Model):
    """What ``sync_schedules`` last wrote to a periodic task, to tell code changes from admin edits."""

    name = models.CharField(max_length=200, unique=True)
    fingerprint = models.CharField(max_length=64)
    synced_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name
