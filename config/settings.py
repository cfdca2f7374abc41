"""Django settings. The environment is read here and nowhere else (12-factor).

Development defaults need nothing set: SQLite and the embedded filesystem broker under ``var/``.
Production sets ``DJANGO_SETTINGS_MODULE=config.settings_production``, which tightens these.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from config import broker, schedules

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-insecure-key-set-SECRET_KEY-in-production")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
# The public address of the storefront, used for links in emails sent by workers.
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# Where operators open Flower (the admin's order pages link to it); `make run` serves it here.
FLOWER_URL = os.environ.get("FLOWER_URL", "http://127.0.0.1:5555").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_celery_results",
    "shop",
    "scheduling",
    "follow_ups",
    "orders",
    "notifications",
    "ops",
    "devtools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Times everything below it: every view (production's static files, served by whitenoise just
    # above it, are not counted).
    "ops.http_metrics.RequestDurationMiddleware",
    "ops.middleware.RequestIdMiddleware",
    "ops.middleware.DatabaseUnavailableMiddleware",  # 503, not 500, while the database is away
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "ops.middleware.CustomerErrorPagesMiddleware",  # the shop's 404/500, not DEBUG's, to customers
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

# Content Security Policy (django-csp), in every environment so the browser tests see what
# production sends: scripts and styles only from our own static files (htmx included; no inline
# script, no inline style), no framing, forms post only to us.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shop.context_processors.cart",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write concurrently: take the write lock at BEGIN (no lock upgrades that
    # deadlock), let readers run beside the writer (WAL) and wait for the lock instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests start real worker processes, so the test database must be a file they can open too.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
SESSION_ENGINE = "django.contrib.sessions.backends.db"
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
LOGIN_URL = "admin:login"

# --- Email ----------------------------------------------------------------------------------------
# With EMAIL_HOST set, mail goes to that SMTP server; without, it is kept in the database and
# readable at /dev/outbox/ (DEBUG only).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "notifications.backends.OutboxEmailBackend"
)
# An email whose DATA got no reply (a timeout, a lost connection, a worker killed) may be with the
# server: it is held this long before it is sent again, with the same Message-ID.
EMAIL_UNKNOWN_HOLD_SECONDS = int(os.environ.get("EMAIL_UNKNOWN_HOLD_SECONDS", "900"))
# After the server's 250, a failing database write is retried this long (the send never is).
EMAIL_RECORD_SENT_PATIENCE_SECONDS = float(
    os.environ.get("EMAIL_RECORD_SENT_PATIENCE_SECONDS", "30")
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Celery Shop <shop@example.com>")

# --- Shop integrations ----------------------------------------------------------------------------
# The seller on every invoice, and the VAT its prices include (the Dutch standard rate by default).
# Set them to the shop's own before issuing real invoices; INVOICE_SELLER_ADDRESS takes "\n" lines.
INVOICE_SELLER_NAME = os.environ.get("INVOICE_SELLER_NAME", "Celery Shop B.V.")
INVOICE_SELLER_ADDRESS = os.environ.get(
    "INVOICE_SELLER_ADDRESS", "Kerkstraat 1\n1017 GA Amsterdam\nNetherlands"
).replace("\\n", "\n")
INVOICE_SELLER_VAT_NUMBER = os.environ.get("INVOICE_SELLER_VAT_NUMBER", "NL000099998B57")
INVOICE_VAT_PERCENT = float(os.environ.get("INVOICE_VAT_PERCENT", "21"))
# An order whose follow-ups are not all done this long after checkout reads "Delayed" to its
# customer (orders.selectors.order_state); they normally finish within seconds.
ORDER_DELAYED_AFTER_SECONDS = int(os.environ.get("ORDER_DELAYED_AFTER_SECONDS", "30"))
# Failed checkouts (refused cards, rejected forms) one client address may make per window before it
# gets 429; placed orders never count. 0 switches the limit off (the benchmarks do).
CHECKOUT_FAILURES_PER_CLIENT = int(os.environ.get("CHECKOUT_FAILURES_PER_CLIENT", "10"))
CHECKOUT_FAILURE_WINDOW_SECONDS = int(os.environ.get("CHECKOUT_FAILURE_WINDOW_SECONDS", "900"))
# How many proxies in front of the web append to X-Forwarded-For (a TLS proxy: 1). The client
# address is the entry that many from the right, the one the outermost trusted proxy saw; with 0
# the header is ignored (a client can write anything in it) and the connection's address is used.
TRUSTED_PROXY_HOPS = int(os.environ.get("TRUSTED_PROXY_HOPS", "0"))
# The payment gateway (orders.payments): the dotted path of a class with the simulator's methods.
# Development defaults to the simulator; production requires it named (a demo names the simulator).
PAYMENT_GATEWAY = os.environ.get(
    "PAYMENT_GATEWAY", "devtools.payment_gateway.SimulatedGateway"
).strip()
# A charge whose order has not committed this long after the attempt was written is voided by the
# engine (the checkout request crashed or hung). Failures the request sees void at once.
PAYMENT_VOID_AFTER_SECONDS = int(os.environ.get("PAYMENT_VOID_AFTER_SECONDS", "60"))
WAREHOUSE_URL = os.environ.get("WAREHOUSE_URL", "http://127.0.0.1:8001").rstrip("/")
WAREHOUSE_TIMEOUT_SECONDS = float(os.environ.get("WAREHOUSE_TIMEOUT_SECONDS", "5"))
# --- The follow-up engine (follow_ups/; docs/reliability.md) ------------------------------------
# A running follow-up belongs to the execution holding its lease, renewed every third of this; when
# the worker is gone the lease lapses and the relay (or a re-delivered message) takes over.
FOLLOW_UP_LEASE_SECONDS = float(os.environ.get("FOLLOW_UP_LEASE_SECONDS", "15"))
# The relay ticks this often (on PostgreSQL it is also woken at once by a failed publish) ...
FOLLOW_UP_RELAY_INTERVAL_SECONDS = float(os.environ.get("FOLLOW_UP_RELAY_INTERVAL_SECONDS", "1"))
# ... while it holds its lease; a relay that stops renewing for this long is replaced by a standby.
FOLLOW_UP_RELAY_LEASE_SECONDS = float(os.environ.get("FOLLOW_UP_RELAY_LEASE_SECONDS", "15"))
# A row never handed to the broker is published by the relay this long after it was written (the
# web normally publishes it at commit; the wait keeps the two from publishing the same row).
# Who publishes a new follow-up: "commit" (the web, right after its commit; the relay repairs what
# it could not) or "relay" (the web only wakes the relay with NOTIFY; measured in
# docs/performance.md). On SQLite "relay" means the relay's polling grace.
FOLLOW_UP_PUBLISH = os.environ.get("FOLLOW_UP_PUBLISH", "commit")
if FOLLOW_UP_PUBLISH not in ("commit", "relay"):
    raise ImproperlyConfigured('FOLLOW_UP_PUBLISH must be "commit" or "relay".')
FOLLOW_UP_RELAY_GRACE_SECONDS = float(os.environ.get("FOLLOW_UP_RELAY_GRACE_SECONDS", "10"))
# Published rows not started for this long are compared with the broker's queue every
# FOLLOW_UP_LOST_CHECK_SECONDS: those the queue no longer holds are published again.
FOLLOW_UP_LOST_AFTER_SECONDS = float(os.environ.get("FOLLOW_UP_LOST_AFTER_SECONDS", "10"))
FOLLOW_UP_LOST_CHECK_SECONDS = float(os.environ.get("FOLLOW_UP_LOST_CHECK_SECONDS", "5"))
# After a failed publish, a web process leaves publishing to the relay for this long.
FOLLOW_UP_PUBLISH_PAUSE_SECONDS = float(os.environ.get("FOLLOW_UP_PUBLISH_PAUSE_SECONDS", "5"))
# Retries: exponential backoff with full jitter (base * 2**attempt, capped), for as long as the
# kind's deadline in time: FOLLOW_UP_RETRY_FOR_HOURS (3 days, as Stripe retries webhooks), or per
# kind, FOLLOW_UP_RETRY_FOR_HOURS_BY_KIND ("warehouse_sync=24,confirmation_email=72").
FOLLOW_UP_RETRY_BASE_SECONDS = float(os.environ.get("FOLLOW_UP_RETRY_BASE_SECONDS", "2"))
FOLLOW_UP_RETRY_CAP_SECONDS = float(os.environ.get("FOLLOW_UP_RETRY_CAP_SECONDS", "300"))
FOLLOW_UP_RETRY_FOR_HOURS = float(os.environ.get("FOLLOW_UP_RETRY_FOR_HOURS", "72"))


def _hours_by_kind(name: str) -> dict[str, float]:
    hours = {}
    for item in filter(None, (part.strip() for part in os.environ.get(name, "").split(","))):
        kind, _, value = item.partition("=")
        try:
            hours[kind.strip()] = float(value)
        except ValueError:
            raise ImproperlyConfigured(
                f'{name} must read "kind=hours,kind=hours"; {item!r} is not that.'
            ) from None
    return hours


FOLLOW_UP_RETRY_FOR_HOURS_BY_KIND = _hours_by_kind("FOLLOW_UP_RETRY_FOR_HOURS_BY_KIND")
# A start that never records an outcome (the worker killed, the time limit) is a crash; a row that
# crashed this many times is a poison message and is buried, whatever its deadline.
FOLLOW_UP_MAX_CRASHES = int(os.environ.get("FOLLOW_UP_MAX_CRASHES", "5"))
# A provider's circuit breaker (follow_ups/breakers.py), shared by every worker through the
# database: it opens after this many consecutive transient failures; its follow-ups then wait,
# and one probe tests the provider every FOLLOW_UP_BREAKER_OPEN_SECONDS. When a probe succeeds
# the waiting ones are released, FOLLOW_UP_BREAKER_RELEASE_PER_SECOND at most.
FOLLOW_UP_BREAKER_THRESHOLD = int(os.environ.get("FOLLOW_UP_BREAKER_THRESHOLD", "5"))
FOLLOW_UP_BREAKER_OPEN_SECONDS = float(os.environ.get("FOLLOW_UP_BREAKER_OPEN_SECONDS", "30"))
FOLLOW_UP_BREAKER_RELEASE_PER_SECOND = float(
    os.environ.get("FOLLOW_UP_BREAKER_RELEASE_PER_SECOND", "20")
)
# How long a worker trusts what it last read of a closed breaker (a read costs one SELECT).
FOLLOW_UP_BREAKER_CACHE_SECONDS = float(os.environ.get("FOLLOW_UP_BREAKER_CACHE_SECONDS", "1"))
# The database's clock is read this often and carried forward on the monotonic clock between reads
# (scheduling/clock.py).
CLOCK_SAMPLE_SECONDS = float(os.environ.get("CLOCK_SAMPLE_SECONDS", "60"))
# A provider's Retry-After (or an email's resend hold) is honoured up to this long.
FOLLOW_UP_RETRY_AFTER_MAX_SECONDS = float(
    os.environ.get("FOLLOW_UP_RETRY_AFTER_MAX_SECONDS", "3600")
)

# --- Celery ---------------------------------------------------------------------------------------
# An event consumer's queue (Flower's) is removed once nobody has read it for this long, and an
# event older than the TTL is dropped; a remote-control queue (a worker's, an `inspect` reply's)
# once unread for CONTROL_QUEUE_EXPIRES. A consumer that died leaves nothing that grows. These are
# Celery's defaults, written out; the embedded broker honours them too (config/broker.py).
CELERY_EVENT_QUEUE_EXPIRES = 60.0
CELERY_EVENT_QUEUE_TTL = 5.0
CELERY_CONTROL_QUEUE_EXPIRES = 10.0

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or None
if CELERY_BROKER_URL is None:
    # Embedded default: a broker that is a folder, no server needed.
    CELERY_BROKER_TRANSPORT = "config.broker:AtomicFilesystemTransport"
    CELERY_BROKER_TRANSPORT_OPTIONS = broker.transport_options(
        str(VAR_DIR / "broker"),
        # Queues bound before the broker kept declarations (an upgraded var/) get these expiries.
        legacy_queue_expires={
            "celeryev": CELERY_EVENT_QUEUE_EXPIRES,
            "celery.pidbox": CELERY_CONTROL_QUEUE_EXPIRES,
            "reply.celery.pidbox": CELERY_CONTROL_QUEUE_EXPIRES,
        },
    )
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Redis hands an unacknowledged task out again after the visibility timeout: keep it above the
    # hard time limit. (A copy handed out while the first still runs finds the row under a live
    # lease and does nothing, but it is a wasted delivery.) Retries wait in the database.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
# A publish from a web request must fail fast (the relay will retry it), never hang the checkout.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True

CELERY_TASK_QUEUES = [Queue("critical"), Queue("default"), Queue("bulk")]
CELERY_TASK_DEFAULT_QUEUE = "default"
# Follow-ups are published to their kind's queue (follow_ups.registry); the scheduled jobs are
# routed by their schedule below.
CELERY_TASK_ROUTES = {}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_WORKER_SEND_TASK_EVENTS = True
# The worker's task events go out without publisher confirms (config/celery.py, events_connection).
CELERY_WORKER_CONSUMER = "config.celery:Consumer"
# AMQP heartbeats on the workers' connections every 10 s (Celery's default is 120). A worker host
# cut off the network leaves its connection open on the broker until heartbeats are missed; a worker
# that reconnects meanwhile finds its exclusive remote-control queue still held by the old
# connection (RESOURCE_LOCKED) and Celery ends it. At 10 s the broker drops the dead connection
# within about 20 s (tests/integration/test_cluster.py, the 30 s cut). Publishers (web, beat, the
# relay) open their connections without heartbeats, as Celery does.
CELERY_BROKER_HEARTBEAT = 10
# The follow-ups keep no task result, not even a failure: their row is the result, and a message
# no task can use is kept as a dead letter in the ledger (follow_ups.dead_messages).
CELERY_TASK_STORE_ERRORS_EVEN_IF_IGNORED = False
# Celery's Django fixup closes every database connection before and after each task unless told to
# reuse them; reconnecting was a tenth of a worker's time (docs/performance.md). Workers keep their
# connections as the web does instead: config/celery.py drops broken or expired ones (CONN_MAX_AGE)
# after each task, as Django does after each request.
CELERY_DB_REUSE_MAX = 1000

# --- Beat: recurring and delayed jobs -------------------------------------------------------------
# The schedules are defined in config/schedules.py and written to the database by
# `manage.py sync_schedules`; the scheduler reads them from there (editable in the admin). Nothing
# is scheduled from settings, so a beat start never overwrites an admin edit.
CELERY_BEAT_SCHEDULER = "scheduling.beat:LeasedDatabaseScheduler"
CELERY_BEAT_SCHEDULE = {}
SCHEDULES = schedules.SCHEDULES  # what scheduling.beat and sync_schedules read
CELERY_TASK_ROUTES.update({s.task: {"queue": s.queue} for s in schedules.SCHEDULES})
# A beat that stops renewing its lease for this long is presumed dead; a standby takes over.
BEAT_LEASE_SECONDS = float(os.environ.get("BEAT_LEASE_SECONDS", "30"))
LOW_STOCK_THRESHOLD = int(os.environ.get("LOW_STOCK_THRESHOLD", "5"))
CART_REMINDER_AFTER_HOURS = float(os.environ.get("CART_REMINDER_AFTER_HOURS", "2"))
# At most one reminder per address in this many days, whatever number of carts it leaves.
CART_REMINDER_PERIOD_DAYS = float(os.environ.get("CART_REMINDER_PERIOD_DAYS", "7"))
REVIEW_REQUEST_AFTER_DAYS = float(os.environ.get("REVIEW_REQUEST_AFTER_DAYS", "7"))
# Staff mail (reports, alerts, digests) goes to these and to active staff users with an email.
STAFF_EMAILS = env_list("STAFF_EMAILS", "")
# A job writes the follow-ups of at most this many due items per transaction: short transactions,
# and a run that dies half-way keeps the chunks it committed (docs/scheduling.md).
JOB_CHUNK_SIZE = int(os.environ.get("JOB_CHUNK_SIZE", "500"))
# Reconciliation reads the warehouse's shipped feed this many at a time, at most this many chunks
# per run; the cursor (orders.WarehouseCursor) carries the rest over to the next run.
WAREHOUSE_RECONCILE_CHUNK_SIZE = int(os.environ.get("WAREHOUSE_RECONCILE_CHUNK_SIZE", "500"))
WAREHOUSE_RECONCILE_MAX_CHUNKS = int(os.environ.get("WAREHOUSE_RECONCILE_MAX_CHUNKS", "20"))

# --- Retention: what the daily `retention` job prunes (docs/scheduling.md, "Retention") -----------
# Days each is kept; 0 keeps it for ever. Task results, job runs, abandoned carts, the dev outbox:
RETENTION_DAYS = float(os.environ.get("RETENTION_DAYS", "90"))
# Succeeded follow-ups (history only: replay takes dead ones). At least CART_REMINDER_PERIOD_DAYS:
# the reminders read the ledger to send one per address per period (checked at start).
FOLLOW_UP_RETENTION_DAYS = float(os.environ.get("FOLLOW_UP_RETENTION_DAYS", "30"))
# Dead letters nobody replayed: what an operator must see, so far longer.
FOLLOW_UP_DEAD_RETENTION_DAYS = float(os.environ.get("FOLLOW_UP_DEAD_RETENTION_DAYS", "365"))
# Email delivery logs; never before the oldest follow-up still on record, whatever this says, so
# a replayed email finds its proof of sending and is not sent again.
EMAIL_DELIVERY_RETENTION_DAYS = float(os.environ.get("EMAIL_DELIVERY_RETENTION_DAYS", "90"))
# Declined and voided payment attempts (no order): a card dispute may come months later.
PAYMENT_ATTEMPT_RETENTION_DAYS = float(os.environ.get("PAYMENT_ATTEMPT_RETENTION_DAYS", "180"))
# Checkout idempotency keys: the same key after this places a new order.
CHECKOUT_REQUEST_RETENTION_DAYS = float(os.environ.get("CHECKOUT_REQUEST_RETENTION_DAYS", "7"))
# Stored invoice PDFs. Kept (0): an invoice is a legal record, and the one issued is the proof, not
# a new drawing. Set it to drop stored PDFs after that many days; they are drawn again on demand.
INVOICE_PDF_RETENTION_DAYS = float(os.environ.get("INVOICE_PDF_RETENTION_DAYS", "0"))
# Rows deleted per transaction, and how long one run may go on starting chunks.
RETENTION_CHUNK_SIZE = int(os.environ.get("RETENTION_CHUNK_SIZE", "1000"))
RETENTION_RUN_MAX_SECONDS = float(os.environ.get("RETENTION_RUN_MAX_SECONDS", "1500"))
_retention_days = {
    name: globals()[name]
    for name in (
        "RETENTION_DAYS",
        "FOLLOW_UP_RETENTION_DAYS",
        "FOLLOW_UP_DEAD_RETENTION_DAYS",
        "EMAIL_DELIVERY_RETENTION_DAYS",
        "PAYMENT_ATTEMPT_RETENTION_DAYS",
        "CHECKOUT_REQUEST_RETENTION_DAYS",
        "INVOICE_PDF_RETENTION_DAYS",
    )
}
if negative := [name for name, days in _retention_days.items() if days < 0]:
    raise ImproperlyConfigured(
        f"{', '.join(negative)} must be a number of days, or 0 to keep for ever."
    )
if 0 < FOLLOW_UP_RETENTION_DAYS < CART_REMINDER_PERIOD_DAYS:
    raise ImproperlyConfigured(
        f"FOLLOW_UP_RETENTION_DAYS ({FOLLOW_UP_RETENTION_DAYS:g}) must be at least "
        f"CART_REMINDER_PERIOD_DAYS ({CART_REMINDER_PERIOD_DAYS:g}): the reminders read the "
        "ledger to send one per address per period."
    )
if RETENTION_CHUNK_SIZE < 1:
    raise ImproperlyConfigured("RETENTION_CHUNK_SIZE must be at least 1.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json_lines": {"format": "%(message)s"},  # ops.job_logs renders each line as JSON
    },
    # No order access token in any line (ops.log_redaction): runserver's access lines, Django's
    # "Not Found: /orders/<id>/", ours.
    "filters": {
        "redact_order_tokens": {"()": "ops.log_redaction.RedactOrderTokens"},
        "probe_answers_are_info": {"()": "ops.probe_logging.ProbeAnswersAreInfo"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["probe_answers_are_info", "redact_order_tokens"],
        },
        "jobs": {
            "class": "logging.StreamHandler",
            "formatter": "json_lines",
            "filters": ["redact_order_tokens"],
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "jobs": {"handlers": ["jobs"], "level": "INFO", "propagate": False},
        # runserver's access log has its own handler in Django's defaults: use ours instead.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# --- Ops: /ops/, /metrics, /readyz, /healthz/background -------------------------------------------
# A Prometheus scraper sends "Authorization: Bearer <token>"; unset, /metrics is for staff only.
OPS_METRICS_TOKEN = os.environ.get("OPS_METRICS_TOKEN", "")
# Open to anyone here; production (off) keeps /healthz/background to staff and to the bearer of
# OPS_METRICS_TOKEN, as /metrics, and the API's docs (/api/docs, /api/openapi.json) to staff.
# /healthz and /readyz, the orchestrators' probes, are public everywhere.
OPS_DIAGNOSTICS_PUBLIC = env_bool("OPS_DIAGNOSTICS_PUBLIC", DEBUG)
# /healthz/background (not /readyz, which asks the database only) answers 503 when the relay last
# ticked longer ago than this.
OPS_READY_BEAT_MAX_AGE_SECONDS = int(os.environ.get("OPS_READY_BEAT_MAX_AGE_SECONDS", "60"))
# Beat samples queue depth every 30 s for the ops page's charts: "ops-queue-sample" in config/schedules.py.

# --- Failure lab (devtools) -----------------------------------------------------------------------
# On, /ops/lab/'s email faults are acted out by a backend wrapped around the real one, which reads
# the faults at most once per FAILURE_LAB_FAULTS_CACHE_SECONDS. Off (production), email is sent by
# the real backend alone and no faults are read. The warehouse faults go to the simulator either way.
FAILURE_LAB = env_bool("FAILURE_LAB", DEBUG)
FAILURE_LAB_REAL_EMAIL_BACKEND = EMAIL_BACKEND
FAILURE_LAB_FAULTS_CACHE_SECONDS = float(os.environ.get("FAILURE_LAB_FAULTS_CACHE_SECONDS", "2"))
if FAILURE_LAB:
    EMAIL_BACKEND = "devtools.email_backends.FaultInjectingEmailBackend"
