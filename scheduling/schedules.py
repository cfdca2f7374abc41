"""What a recurring job's schedule is. The list of them is the project's, declared once in
``config/schedules.py`` and handed to this app through ``settings.SCHEDULES``."""

from dataclasses import dataclass, field

from celery.schedules import crontab

MINUTE = 60
HOUR = 3600


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    queue: str
    expires: int  # seconds
    description: str
    every: float | None = None  # seconds, for interval schedules
    cron: dict[str, str] = field(default_factory=dict)  # crontab fields, for clock schedules
    # Jobs with a run key get a ``period`` argument from beat and run at most once per period.
    run_key: bool = True

    def celery_schedule(self):
        return crontab(**self.cron) if self.cron else self.every
