"""Relay settings. Every knob comes from the environment; the defaults give the embedded mode."""

import os
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from config.env import env_bool, env_int, env_list, env_optional_int, env_str, env_url, origin_source, redis_db

BASE_DIR = Path(__file__).resolve().parent.parent

# Embedded mode: no Redis. SQLite, an in-memory channel layer and Celery inside the serving process.
REDIS_URL = env_url("REDIS_URL", {"redis", "rediss", "unix"})
EMBEDDED = REDIS_URL == ""
DATABASE_URL = env_url(
    "DATABASE_URL", {"sqlite", "postgres", "postgresql"}, default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
)
# DEBUG shows tracebacks and settings to anyone who triggers an error: only the embedded mode on its own SQLite
# file (a machine on a desk) has it on unless told otherwise. A PostgreSQL database means a shared deployment.
DEBUG = env_bool("DEBUG", default=EMBEDDED and DATABASE_URL.startswith("sqlite:"))
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "embedded-mode-only-not-a-secret-" + "x" * 32
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["*"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "core.apps.RelayAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "channels",
    "django_celery_beat",
    "core",
    "zones",
    "drivers",
    "deliveries",
    "analytics",
]

MIDDLEWARE = [
    "core.errors.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.csp.PageCSPMiddleware",  # the policy of every page (core/csp.py)
    "core.inputs.NullCharacterMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "core.time_zones.ConsoleTimeZoneMiddleware",  # the console's pages in the viewer's time zone, nothing else
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.idempotency.IdempotencyMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded server and its in-process worker write from several threads: WAL lets readers run beside
    # a writer, IMMEDIATE takes the write lock at BEGIN (no upgrade deadlocks), and the timeout makes a
    # second writer wait instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# PostgreSQL through Django's backend with one change: timestamps are parsed by psycopg's C module (issue 12).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "core.postgresql"
    # Parameters sent apart from the SQL, and a statement a connection has run DB_PREPARE_THRESHOLD times
    # prepared there: PostgreSQL parses and plans it once, not at every run (a dispatch's candidate query
    # spent longer being planned than being run; BENCHMARKS.md, round 11). `none` turns preparing off, for a
    # pooler in front of PostgreSQL that cannot keep prepared statements (PgBouncer in transaction mode).
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = env_optional_int("DB_PREPARE_THRESHOLD", 5)
# PostgreSQL: DB_POOL_SIZE > 0 keeps a pool of that many connections per process (psycopg_pool). Without it
# every request and every websocket database call opens and closes a connection of its own, unless
# DB_CONN_MAX_AGE keeps each request thread's (core/asgi_http.py: the threads live on).
DB_POOL_SIZE = env_int("DB_POOL_SIZE", 0)
if DB_POOL_SIZE and DATABASES["default"]["ENGINE"] == "core.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # required with a pool
    # The pool checks each connection as it hands it out: one the server dropped (PostgreSQL restarted,
    # pg_terminate_backend, a proxy's idle timeout) is replaced, not discovered by the request that gets it (a
    # 503). The backend (core/postgresql) has core/db_pool.py check it, without a round trip when one could tell
    # no more.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DB_POOL_SIZE),
        "max_size": DB_POOL_SIZE,
        "timeout": 10,
    }
# The threads that run requests' sync work (core/asgi_http.py): as many as the pool's connections, since more
# could only wait for one.
RELAY_REQUEST_THREADS = env_int("RELAY_REQUEST_THREADS", DB_POOL_SIZE or 10)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's four (startproject's): the passwords ops set in the console for drivers and merchants, and staff's own.
# A password like its username, a common one or digits alone falls to the few guesses the login limits allow.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

LANGUAGE_CODE = "en-us"
# The customer's tracking page speaks the customer's language (Accept-Language); the console stays in English.
LANGUAGES = [("en", "English"), ("pt", "Português")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# What the API, the audit trail, the tasks and the logs write times in. The console shows and reads times in its
# viewer's own zone, which their browser names (core/time_zones.py); this one when it names none.
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Front-end libraries vendored from the npm registry (static/vendor/<name>/): pages work with no internet access.
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Without collectstatic (embedded mode) WhiteNoise serves straight from the apps' static folders.
WHITENOISE_USE_FINDERS = True

# --- REST API -----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["core.tokens.ExpiringTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # API.md: JSON bodies. A form or multipart body answers 415 (DRF also reads those by default, and the schema
    # then offered them for bodies they cannot express, such as a delivery's pickup); too deep a body is a 400.
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_PAGINATION_CLASS": "core.pagination.PageNumbers",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_str("API_THROTTLE_RATE", "6000/min"),
        # Failed logins (API token and admin) per client address, per username from one address, and per username
        # whatever the address.
        "login": env_str("LOGIN_THROTTLE_RATE", "30/min"),
        "login_username": env_str("LOGIN_USERNAME_THROTTLE_RATE", "10/min"),
        "login_account": env_str("LOGIN_ACCOUNT_THROTTLE_RATE", "50/min"),
        "track": env_str("TRACK_THROTTLE_RATE", "120/min"),
    },
    # The client address is the peer's unless NUM_PROXIES trusted proxies in front add X-Forwarded-For: then it
    # is the address the outermost of them saw. Left unset, DRF would take the header as sent, which any client
    # can vary to get a fresh throttle budget on every request.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Relay API",
    "DESCRIPTION": "Dispatch platform: merchants, drivers, ops and public tracking. Merchants: the events Relay "
    "POSTs to your webhook URL, how to verify their signature, the retries and the delivery semantics are under "
    "Webhooks (`delivery_event`).",
    "VERSION": "1.0.0",
    # 3.1 has a place for webhooks (the merchant's side of the contract: deliveries/webhook_docs.py).
    "OAS_VERSION": "3.1.0",
    "WEBHOOKS": ["deliveries.webhook_docs.DELIVERY_EVENT"],
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from the project's own static files (drf-spectacular-sidecar): the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Ids in paths: UUIDs in either case (core.inputs.AnyCaseUUIDConverter).
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "string", "format": "uuid"}},
    # Every error answer (API.md's shape, each status an operation can give) and the Idempotency-Key header.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.schema.document_errors_and_idempotency",
    ],
    "ENUM_NAME_OVERRIDES": {
        "DeliveryStatusEnum": "deliveries.models.DeliveryStatus",
        "OfferStatusEnum": "deliveries.models.OfferStatus",
        "DeclineReasonEnum": "deliveries.models.DeclineReason",
        "EscalationReasonEnum": "deliveries.models.Escalation.Reason",
        "EscalationStatusEnum": "deliveries.models.EscalationStatus",
        "DriverStateEnum": "drivers.models.DriverState",
    },
}

# --- Channels -----------------------------------------------------------------------------------------
if EMBEDDED:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    # Redis pub/sub (channels-redis' RedisPubSubChannelLayer, with core/channel_layer.py's lean queues): a group send is
    # one PUBLISH that Redis hands to each server process with a member, instead of the list layer's per-member pushes
    # and each process's blocking-pop receive loop (benchmarked in BENCHMARKS.md: ~0.2-0.4 ms of CPU per message against
    # 1.2-1.5 ms). Messages are at most once either way: a driver's stream is stored and `resume` replays it. Pub/sub
    # channels are not scoped by Redis database, so the prefix carries the database number: deployments (and test runs)
    # on one Redis server but different databases stay apart, as the list layer's keys did. The layer reads with a 0.1 s
    # poll, so a quiet socket never waits on a read longer than the client's timeout (core.checks holds it).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "core.channel_layer.PubSubChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
                "prefix": f"asgi-db{redis_db(REDIS_URL)}",
            },
        }
    }

# --- Cache (throttling) -------------------------------------------------------------------------------
if EMBEDDED:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"pool_class": "core.cache_pool.SharedConnectionPool"},  # not a connection per request
        }
    }

# --- Celery -------------------------------------------------------------------------------------------
# The in-memory broker's URL names a host: a bare `memory://` has kombu log "No hostname was supplied. Reverting to
# default 'localhost'" in every process that queues a task (the terminal of `make demo`, demo.log).
CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", {"redis", "rediss", "memory", "amqp"}) or (
    REDIS_URL or "memory://localhost/"
)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# No result backend (results are ignored): Celery's stand-in holds no state, so one instance serves every thread.
# Otherwise Celery builds one per thread, and Django runs each request in a thread of its own: every offer's
# expiry task queued from a request built one (~0.3 ms of CPU per create + accept).
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Webhooks wait on merchants' servers: they have their own queue, so a slow merchant never holds up offer expiry
# or dispatch. A worker started without -Q consumes both queues; production runs a worker per queue (README).
CELERY_TASK_DEFAULT_QUEUE = "celery"
WEBHOOK_QUEUE = "webhooks"
CELERY_TASK_QUEUES = [Queue(CELERY_TASK_DEFAULT_QUEUE), Queue(WEBHOOK_QUEUE)]
CELERY_TASK_ROUTES = {"deliveries.tasks.send_webhook": {"queue": WEBHOOK_QUEUE}}

# --- Relay --------------------------------------------------------------------------------------------
# Location index: Redis GEO sets per zone when REDIS_URL is set; the database otherwise and whenever Redis
# is unreachable (each fallback is counted).
RELAY_LOCATION_REDIS_URL = env_url("RELAY_LOCATION_REDIS_URL", {"redis", "rediss", "unix"}) or REDIS_URL
RELAY_REDIS_KEY_PREFIX = env_str("RELAY_REDIS_KEY_PREFIX", "relay:")
RELAY_REDIS_TIMEOUT_S = float(env_int("RELAY_REDIS_TIMEOUT_MS", 250)) / 1000
RELAY_PUBLIC_URL = env_str("RELAY_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
RELAY_CURRENCY = env_str("RELAY_CURRENCY", "EUR")
# A delivery's dropoff must lie within this many km (straight line) of its pickup: further is a typo (swapped
# lat/lng, a customer's other address) that would be priced and offered as a trip across the country.
RELAY_MAX_DELIVERY_KM = env_int("RELAY_MAX_DELIVERY_KM", 30)
# How long a driver's stream messages are kept for `resume` (older ones are purged hourly).
RELAY_DRIVER_MESSAGE_RETENTION = timedelta(hours=env_int("RELAY_DRIVER_MESSAGE_RETENTION_H", 24))
# Tracking links answer 410 Gone this long after their delivery finished; raw breadcrumbs (drivers' trails)
# are deleted after RELAY_BREADCRUMB_RETENTION (a daily beat job).
RELAY_TRACKING_LINK_TTL = timedelta(hours=env_int("RELAY_TRACKING_LINK_HOURS", 24))
RELAY_BREADCRUMB_RETENTION = timedelta(days=env_int("RELAY_BREADCRUMB_RETENTION_DAYS", 30))
# The retentions below are whole days, at least one: less would delete what balancing and the board still read.
# Merchants' webhooks, once sent or failed for good, are deleted this long after their event (a daily beat job):
# support looks up what was sent for an order within weeks (a dispute, a month's invoice), and the delivery's
# audit trail, kept for good, still tells every status change and when. Pending ones are never deleted.
RELAY_WEBHOOK_RETENTION = timedelta(days=env_int("RELAY_WEBHOOK_RETENTION_DAYS", 90, minimum=1))
# Rebalancing hints are deleted this long after they were sent (a daily beat job): nothing but the admin reads one
# older than an hour (the ops board counts the last hour's), and a quarter of them shows whether hints work.
RELAY_ZONE_HINT_RETENTION = timedelta(days=env_int("RELAY_ZONE_HINT_RETENTION_DAYS", 90, minimum=1))
# A zone's minute snapshots of a local day are deleted once the whole day is older than this and rolled up into its
# ZoneDay row, which keeps the figures they give for good (a daily beat job, analytics/retention.py).
RELAY_ZONE_SNAPSHOT_RETENTION = timedelta(days=env_int("RELAY_ZONE_SNAPSHOT_RETENTION_DAYS", 90, minimum=1))
# API tokens expire this many days after they were issued, by role. Drivers log in on a phone they carry;
# merchants' servers hold a token in their configuration, so theirs lasts a year; ops work a shift in the
# console and their token covers a working day.
RELAY_TOKEN_DAYS = {
    "driver": env_int("TOKEN_DAYS_DRIVER", 30),
    "merchant": env_int("TOKEN_DAYS_MERCHANT", 365),
    "ops": env_int("TOKEN_DAYS_OPS", 1),
}
# Only staff have console sessions: one lasts as long as an ops token, not Django's two weeks.
SESSION_COOKIE_AGE = int(timedelta(days=RELAY_TOKEN_DAYS["ops"]).total_seconds())
# Webhooks: the whole call (connect, send, answer) is cut off after this many seconds. Merchants' URLs that
# resolve to loopback, link-local or private addresses are refused (they would reach our own network) unless
# this is on: the demo and the tests post to receivers on 127.0.0.1.
RELAY_WEBHOOK_TIMEOUT_S = float(env_int("WEBHOOK_TIMEOUT_S", 10))
RELAY_WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
# Background tiles of the ops maps and the customer's tracking map (a Leaflet URL template such as
# https://tile.example.com/{z}/{x}/{y}.png). Unset, the maps draw zones, or pickup, dropoff, route and driver, on a
# blank background and need no internet access at all.
RELAY_MAP_TILES_URL = env_url("RELAY_MAP_TILES_URL", {"http", "https"})

# --- Content-Security-Policy (django-csp; SECURITY.md says why each source is there) ---------------------
# Pages run only the project's own script files: no inline script, event handler attribute or eval, so markup that
# slipped into a page unescaped does not run. Styles likewise come from files (Leaflet and the admin's scripts set
# theirs through the DOM, which a policy does not restrict); Redoc's <style> elements carry the page's nonce
# (templates/relay/redoc.html), which a page's policy names only when the page used it.
# Sockets: 'self' covers ws:/wss: to the page's own host in CSP Level 3 browsers; the public URL's socket origin
# is named too, for browsers that still read 'self' as http(s) only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:", *([origin_source(RELAY_MAP_TILES_URL)] if RELAY_MAP_TILES_URL else [])],
        "connect-src": [
            SELF,
            origin_source(RELAY_PUBLIC_URL, scheme="wss" if RELAY_PUBLIC_URL.startswith("https:") else "ws"),
        ],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],  # as X-Frame-Options: DENY (Django's default, sent by XFrameOptionsMiddleware)
    }
}

# --- System metrics (/metrics) -------------------------------------------------------------------------
# prometheus_client's multiprocess mode: every server worker and Celery worker on the host writes its samples
# to files in this directory and a scrape sums them. All processes of one deployment must share it; clear it
# when the whole deployment restarts. prometheus_client reads the variable when first imported (after settings).
RELAY_METRICS_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(BASE_DIR / "var" / "metrics"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = RELAY_METRICS_DIR
os.makedirs(RELAY_METRICS_DIR, exist_ok=True)
# Who may scrape: staff (session or ops API token) always; a scraper with `Authorization: Bearer <token>`.
RELAY_METRICS_TOKEN = env_str("METRICS_TOKEN")
RELAY_METRICS_PUBLIC = env_bool("METRICS_PUBLIC", False)  # only behind a private network

# --- Production hardening (checked by `manage.py check --deploy`) -----------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"tracking_tokens": {"()": "core.log_filters.RedactTrackingTokens"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["tracking_tokens"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own config also prints to the console when DEBUG is on: one line per message is enough.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.channels.server": {"level": "WARNING"},
        # httpx logs each request's URL at INFO: a merchant's webhook URL, with the credential some put in it
        # (`?token=`, `user:password@`), on every attempt. The outcome is in the webhook's row (its last error).
        "httpx": {"level": "WARNING"},
    },
}

# WhiteNoise hands the ASGI handler a file iterator; Django warns that it is read synchronously. That is the
# embedded mode's static files only (production puts a CDN or proxy in front), so the warning is noise.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")
