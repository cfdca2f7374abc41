"""Production settings: the development settings, tightened. ``manage.py check --deploy`` is clean.

Select with ``DJANGO_SETTINGS_MODULE=config.settings_production``. Everything in ``REQUIRED`` must
come from the environment: a missing one stops the process at start-up with a sentence naming it,
instead of running with a development default.
"""

import importlib.util
import os

from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from config.settings import *  # noqa: F403
from config.settings import (
    CELERY_BROKER_URL,
    DATABASES,
    FAILURE_LAB_REAL_EMAIL_BACKEND,
    MIDDLEWARE,
    PAYMENT_GATEWAY,
    SITE_URL,
    env_bool,
    env_list,
)

# What production cannot run without. A missing one stops every process at start-up (web, worker,
# beat, relay, manage.py) with one sentence naming all of them, instead of falling back to a
# development default: a SQLite file, the filesystem broker, mail kept in the database and marked
# sent, links to http://127.0.0.1:8000, orders "paid" through the payment simulator's public test
# card (a demo names the simulator explicitly: devtools.payment_gateway.SimulatedGateway).
# (Flower's credentials are checked by config/flowerconfig.py and by the Procfile and compose
# lines that start it.)
REQUIRED = (
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "EMAIL_HOST",
    "SITE_URL",
    "PAYMENT_GATEWAY",
)
_missing = [name for name in REQUIRED if not os.environ.get(name, "").strip()]
if _missing:
    raise ImproperlyConfigured(
        f"{', '.join(_missing)} must be set in the environment for production (see .env.example)."
    )

DEBUG = False
SECRET_KEY = os.environ["SECRET_KEY"].strip()
if len(SECRET_KEY) < 50 or SECRET_KEY.startswith(("dev-only", "django-insecure", "change-me")):
    raise ImproperlyConfigured(
        "SECRET_KEY must be a random value of 50 characters or more, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "")


def _module_exists(dotted: str) -> bool:
    try:
        return bool(dotted) and importlib.util.find_spec(dotted) is not None
    except ImportError:  # a parent package is missing
        return False


_gateway_module, _, _gateway_class = PAYMENT_GATEWAY.rpartition(".")
if not (_gateway_class and _module_exists(_gateway_module)):
    raise ImproperlyConfigured(
        "PAYMENT_GATEWAY must be the dotted path of the payment gateway's class, like "
        f"devtools.payment_gateway.SimulatedGateway for a demo (got {PAYMENT_GATEWAY!r})."
    )
if not SITE_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured(
        f"SITE_URL must be the shop's public address, like https://shop.example.com (got {SITE_URL!r})."
    )

# The failure lab stays out of production's email path unless asked for by name (a demo stack).
FAILURE_LAB = env_bool("FAILURE_LAB", False)
EMAIL_BACKEND = (
    "devtools.email_backends.FaultInjectingEmailBackend"
    if FAILURE_LAB
    else FAILURE_LAB_REAL_EMAIL_BACKEND
)

# /healthz/background and the API's docs are not for the public (config/settings.py).
OPS_DIAGNOSTICS_PUBLIC = False

# --- HTTPS ----------------------------------------------------------------------------------------
# Behind a proxy that terminates TLS, trust its X-Forwarded-Proto so request.is_secure() is right
# and the redirect below does not loop. Only enable it when the proxy always sets that header.
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Redirect plain HTTP to HTTPS. Turn off only when something in front already does it.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Except /metrics: Prometheus scrapes the web by its address inside the network (compose's
# monitoring profile: http://web:8000/metrics), where no proxy sets X-Forwarded-Proto. It answers
# 401 without OPS_METRICS_TOKEN whichever way it is asked.
SECURE_REDIRECT_EXEMPT = [r"^metrics$"]
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Static files: served by the app itself (whitenoise), compressed and cache-busted -------------
MIDDLEWARE = [
    MIDDLEWARE[0],  # SecurityMiddleware first, so redirects and headers apply to static files too
    "whitenoise.middleware.WhiteNoiseMiddleware",
    *MIDDLEWARE[1:],
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Database: keep connections, but check them before use after a database restart ---------------
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("CONN_MAX_AGE", "60"))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# --- Celery ---------------------------------------------------------------------------------------
if CELERY_BROKER_URL and CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    # Publisher confirms: a publish returns only once RabbitMQ has the message, so a publish that
    # "succeeded" cannot vanish; one that fails raises and the relay publishes it again.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    # Quorum queues are replicated and durable. They need per-consumer QoS (Celery detects them and
    # turns global QoS off) and topic exchanges, which Celery's native delayed delivery uses for
    # retry countdowns (quorum queues have no per-message TTL of their own).
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True
    CELERY_TASK_QUEUES = [
        Queue(
            name,
            Exchange(name, type="topic"),
            routing_key=name,
            queue_arguments={"x-queue-type": "quorum"},
        )
        for name in ("critical", "default", "bulk")
    ]

# A "task-sent" event is one more message per publish, and with publisher confirms one more round
# trip to the broker inside every checkout (measured: a third of the after-commit cost). Workers
# still send received/started/succeeded events, which is what Flower and the ops views show.
CELERY_TASK_SEND_SENT_EVENT = env_bool("TASK_SEND_SENT_EVENT", False)

# Recycle worker processes: caps the damage of a slow leak in a library or a task. 0 turns it off.
# (Not named CELERY_...: the celery command line reads CELERY_<OPTION> variables as its options.)
CELERY_WORKER_MAX_TASKS_PER_CHILD = (
    int(os.environ.get("WORKER_MAX_TASKS_PER_CHILD", "1000")) or None
)
# Kilobytes of resident memory after which a child is replaced once its current task ends.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = (
    int(os.environ.get("WORKER_MAX_MEMORY_PER_CHILD", "300000")) or None
)
