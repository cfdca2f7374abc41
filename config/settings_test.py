"""Settings for the test suite: the development settings with their own folder under var/test/.

DATABASE_URL and CELERY_BROKER_URL still choose the database and broker, so the same suite runs on
SQLite + the embedded broker, and on PostgreSQL + RabbitMQ or Redis.
"""

import os
from pathlib import Path

os.environ.setdefault("VAR_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))

from config.settings import *  # noqa: E402, F403

# Retries in tests wait fractions of a second, not minutes. Every recovery timing (leases, the
# relay's grace and lost-message checks, time limits) keeps its production default.
FOLLOW_UP_RETRY_BASE_SECONDS = float(os.environ.get("FOLLOW_UP_RETRY_BASE_SECONDS", "0.05"))
FOLLOW_UP_RETRY_CAP_SECONDS = float(os.environ.get("FOLLOW_UP_RETRY_CAP_SECONDS", "0.5"))
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The failure lab's email faults are read on every send, so a test sees the faults it just set.
FAILURE_LAB_FAULTS_CACHE_SECONDS = float(os.environ.get("FAILURE_LAB_FAULTS_CACHE_SECONDS", "0"))
