"""The one clock: the database's. Leases, holds and due times written or compared by any process on
any host read ``clock.now()``, so a worker whose own clock is off cannot misjudge them.

The database's time is sampled (one ``SELECT``) at most every ``CLOCK_SAMPLE_SECONDS`` and carried
forward with this machine's monotonic clock, which no wall-clock step moves: between samples the
clock costs no round trip, and it is off by at most the sample's round trip plus the drift of a
monotonic clock (parts per million).
"""

import threading
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection

_lock = threading.Lock()
_sample: tuple[datetime, float] | None = None  # (the database's time, time.monotonic() then)


def now() -> datetime:
    """The database's current time, aware, in UTC."""
    global _sample
    sample = _sample
    if sample is None or time.monotonic() - sample[1] > settings.CLOCK_SAMPLE_SECONDS:
        with _lock:
            sample = _sample = _sample_database()
    database_time, taken_at = sample
    return database_time + timedelta(seconds=time.monotonic() - taken_at)


def forget() -> None:
    """Drop the sample (tests that move the database's clock, or a process after fork)."""
    global _sample
    _sample = None


def _sample_database() -> tuple[datetime, float]:
    before = time.monotonic()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT statement_timestamp()")
            database_time = cursor.fetchone()[0]
        else:  # SQLite: the clock of the machine that holds the file, read by SQLite itself
            cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
            database_time = datetime.fromisoformat(cursor.fetchone()[0]).replace(tzinfo=UTC)
    after = time.monotonic()
    # The database read its clock somewhere in the round trip: call it the middle.
    return database_time.astimezone(UTC), (before + after) / 2
