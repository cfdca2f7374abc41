"""Benchmark settings: the production settings, plus the bench-only URLs and the fan-out task of
a publishing design measure 8 compares (bench/tasks.py).

Durable as in production: PostgreSQL, RabbitMQ quorum queues, publisher confirms, persistent
messages, acks late, prefetch 1. Only the URLconf and one installed app differ.
"""

from config.settings_production import *  # noqa: F403
from config.settings_production import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
ROOT_URLCONF = "bench.urls"
# The benchmark measures the work, not the log lines of thousands of tasks.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    # The relay says when it holds its lease (the bench waits for that), and little else.
    "loggers": {"follow_ups.relay": {"level": "INFO"}},
}
