"""Django settings, read from the environment and parsed strictly.

Every variable is documented in the README's configuration table. A bad value stops start-up with a
message naming the variable (``ImproperlyConfigured``).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from reconcile_project import config as rule_config
from reconcile_project import platform_settings
from reconcile_project.observability import configure_logging

BASE_DIR = Path(__file__).resolve().parent.parent
VERSION = "1.0.0"
SERVICE_NAME = "affiliate-reconciliation-platform"


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}: expected a boolean (true/false/1/0), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a number, got {raw!r}") from None


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


DJANGO_ENV = env_str("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production", "test"}:
    raise ImproperlyConfigured(f"DJANGO_ENV: expected development, production or test, got {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY: required when DJANGO_ENV=production")
    # Development only: a fixed key is fine for a local stack and keeps sessions across restarts.
    SECRET_KEY = "dev-insecure-key-do-not-use-in-production-0123456789abcdef"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    # Swagger UI and ReDoc as static files of a pinned package: /api/docs/ works offline, no CDN.
    "drf_spectacular_sidecar",
    # Who changed an alert, an affiliate, a campaign or a platform, when, before and after (audit trail).
    "simple_history",
    "reconciliation",
    "platforms",
    "alerts",
    "chat",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "reconcile_project.middleware.RequestContextMiddleware",
    # Serves the admin's static files from gunicorn (collectstatic output), compressed and cache-busted.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "reconcile_project.middleware.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "reconcile_project.urls"
WSGI_APPLICATION = "reconcile_project.wsgi.application"
ASGI_APPLICATION = "reconcile_project.asgi.application"

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
            ]
        },
    }
]

# --- Database -------------------------------------------------------------------------------------
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
DEFAULT_DATABASE_URL = f"sqlite:///{VAR_DIR / 'reconcile.sqlite3'}"
DATABASE_URL = env_str("DATABASE_URL", DEFAULT_DATABASE_URL)
CONN_MAX_AGE = env_int("CONN_MAX_AGE", 600)
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=CONN_MAX_AGE, conn_health_checks=True)
except (ValueError, KeyError) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL: cannot parse {DATABASE_URL!r} ({exc})") from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _db["OPTIONS"] = {
        # WAL lets the web process read while a worker writes; IMMEDIATE takes the write lock at
        # BEGIN so two workers cannot both "claim" the same attempt and then fail on upgrade.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
    }
    # SQLite connections are cheap and not shareable across threads; no persistent connections.
    _db["CONN_MAX_AGE"] = 0
DATABASES = {"default": _db}
if DJANGO_ENV == "test" or os.environ.get("TEST_DATABASE_URL"):
    DATABASES["default"].setdefault("TEST", {})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, Celery -------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


try:
    _redis_parts = urlsplit(REDIS_URL)
    if _redis_parts.scheme not in {"redis", "rediss"} or not _redis_parts.hostname:
        raise ValueError("expected redis://host:port/db")
    _redis_base_db = int((_redis_parts.path or "/0").lstrip("/") or 0)
except ValueError as exc:
    raise ImproperlyConfigured(f"REDIS_URL: {exc} (got {REDIS_URL!r})") from None

# The broker lives in its own Redis database so that clearing the cache can never flush the queue.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", _redis_db(REDIS_URL, _redis_base_db + 1))
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", REDIS_URL),
        "KEY_PREFIX": "reconcile",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 12)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Outcomes live in PostgreSQL; a result backend would only be a second, stale copy.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# At-least-once delivery; the attempt protocol makes the effect happen once.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Longer than the longest task (an attempt is bounded by BACKOFF_POLICY.attempt_budget_seconds plus two
# short transactions). Later work is a persisted next_attempt_at, never an ETA, so nothing waits this long.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 600),
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
# On SIGTERM finish what is running for this long, then requeue the rest instead of losing it.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = env_float("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", 10.0)
CELERY_WORKER_ENABLE_SOFT_SHUTDOWN_ON_IDLE = True
CELERY_TASK_DEFAULT_QUEUE = "reconcile"
CELERY_TASK_ROUTES = {
    "reconciliation.tasks.reconcile_report": {"queue": "reconcile"},
    "reconciliation.tasks.reconcile_batch": {"queue": "reconcile"},
    "reconciliation.tasks.sweep_due": {"queue": "maintenance"},
    "reconciliation.tasks.check_outages": {"queue": "maintenance"},
    "reconciliation.tasks.purge_idempotency_keys": {"queue": "maintenance"},
    # Notifications have a queue of their own: a slow receiver never holds up reconciliation.
    "notifications.tasks.deliver": {"queue": "notifications"},
    "notifications.tasks.sweep_deliveries": {"queue": "maintenance"},
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes every database connection before and after each task unless this is set,
# so each task would open a new PostgreSQL connection (a backend fork and a login: milliseconds of CPU).
# Connections are reused instead: Django's own rule (CONN_MAX_AGE, the health check, closing a connection
# after an error) runs before each task (observability.install_celery_hooks), and the fixup still
# recycles one thread's connection every CELERY_DB_REUSE_MAX tasks.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
# Task events cost three extra broker publishes per task; Flower switches them on at run time when it runs.
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("CELERY_WORKER_SEND_TASK_EVENTS", False)
CELERY_TASK_SEND_SENT_EVENT = False
SWEEP_INTERVAL_SECONDS = env_float("SWEEP_INTERVAL_SECONDS", 5.0)
CELERY_BEAT_SCHEDULE = {
    "sweep-due-reports": {
        "task": "reconciliation.tasks.sweep_due",
        "schedule": SWEEP_INTERVAL_SECONDS,
        "options": {"queue": "maintenance", "expires": SWEEP_INTERVAL_SECONDS * 2},
    },
    "purge-idempotency-keys": {
        "task": "reconciliation.tasks.purge_idempotency_keys",
        "schedule": 3600.0,
        "options": {"queue": "maintenance", "expires": 3600},
    },
    "check-platform-outages": {
        "task": "reconciliation.tasks.check_outages",
        "schedule": 60.0,
        "options": {"queue": "maintenance", "expires": 60},
    },
}

# --- Auth, API ------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
API_KEY_CUSTOM_HEADER = "HTTP_AUTHORIZATION"
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
# Bulk import of claims (POST /api/v1/submissions/bulk and the admin upload page): the largest file, in
# bytes, and the most rows one import may have. A request holds its worker while the rows are checked and
# written (about 2,000 rows/s), so the defaults keep one import to seconds; `import_claims` has no limit.
BULK_IMPORT_MAX_BYTES = env_int("BULK_IMPORT_MAX_BYTES", 10 * 1024 * 1024)
BULK_IMPORT_MAX_ROWS = env_int("BULK_IMPORT_MAX_ROWS", 20_000)
for _name in ("BULK_IMPORT_MAX_BYTES", "BULK_IMPORT_MAX_ROWS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name}: expected a positive integer, got {globals()[_name]}")

# Audit trail (django-simple-history): a decision's note can be longer than 100 characters; a revert from
# the history page would change an alert or a platform around the services that record why, so none.
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True
SIMPLE_HISTORY_REVERT_DISABLED = True

REST_FRAMEWORK = {
    # API keys (Authorization: Bearer <key>) first, so a missing key is a 401 with WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "reconciliation.api.authentication.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # JSON only, both ways: no browsable API (evidence is never rendered as HTML), no form parsing.
    "DEFAULT_PARSER_CLASSES": ["reconciliation.api.parsers.CappedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "reconciliation.api.parsers.JSONOnlyNegotiation",
    "EXCEPTION_HANDLER": "reconciliation.api.exceptions.api_exception_handler",
    # How many proxies in front of the web process append to X-Forwarded-For: the client address of the
    # failed-authentication throttle is the one they saw. 0 (the default) uses REMOTE_ADDR and ignores the
    # header, which a client could otherwise forge to get a fresh allowance per request.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}
#: Failed API-key authentications allowed per client address before its key attempts answer 429.
AUTH_FAILURE_RATE = env_str("AUTH_FAILURE_RATE", "20/minute")
SPECTACULAR_SETTINGS = {
    "TITLE": "Affiliate Reconciliation Platform API",
    "DESCRIPTION": (
        "Affiliates submit claims about their posts and follow their verification; advertisers read "
        "verified totals of their own campaigns; staff re-run reconciliation. Every error is "
        '`{"error": {"code", "message", "fields"?}, "request_id"}`.'
    ),
    "VERSION": VERSION,
    # 3.1: full JSON Schema, so the document can state what the API enforces on evidence keys
    # (patternProperties), which OpenAPI 3.0 cannot express.
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The document and its UI are public: a stale key in the browser must not turn them into a 401.
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "PATH_CONVERTER_OVERRIDES": {"api_id": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
    "ENUM_NAME_OVERRIDES": {"ReconciliationStatusEnum": "reconciliation.models.ReconciliationStatus.choices"},
    # After the default enum hook: bodies are required, and the evidence field's per-depth schemas.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "reconciliation.api.schema.require_request_bodies",
        "reconciliation.api.schema.add_evidence_components",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Security -------------------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if DJANGO_ENV != "test"
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Logging --------------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL: expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
# Development writes a file too, so the runbook's greps work against `make run`; containers log to stderr.
LOG_FILE = env_str("LOG_FILE", str(VAR_DIR / "log" / "app.log") if DJANGO_ENV == "development" else "")
LOG_FORMAT = env_str("LOG_FORMAT", "json" if PRODUCTION else "console")
if LOG_FORMAT not in {"json", "console"}:
    raise ImproperlyConfigured(f"LOG_FORMAT: expected json or console, got {LOG_FORMAT!r}")
# structlog over the stdlib (reconcile_project/observability.py); Django's DEFAULT_LOGGING is not applied.
LOGGING_CONFIG = None
configure_logging(level=LOG_LEVEL, fmt=LOG_FORMAT, log_file=LOG_FILE)  # type: ignore[arg-type]

# --- Metrics --------------------------------------------------------------------------------------
# prometheus_client multiprocess mode: every gunicorn and Celery process of the host writes here and
# /metrics sums them. Set before anything imports prometheus_client (it reads the variable on import);
# exported so that child processes (workers started by tests, prefork children) share it. Emptied by
# `make run` on start; a test run gets its own temporary directory.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", "")
if not PROMETHEUS_MULTIPROC_DIR:
    if DJANGO_ENV == "test":
        PROMETHEUS_MULTIPROC_DIR = tempfile.mkdtemp(prefix="reconcile-prometheus-")
        # Only the process that made it removes it (its subprocesses inherit the variable).
        atexit.register(shutil.rmtree, PROMETHEUS_MULTIPROC_DIR, ignore_errors=True)
    else:
        PROMETHEUS_MULTIPROC_DIR = str(VAR_DIR / "prometheus")
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR

# --- Operations endpoints (docs/RUNBOOK.md) -----------------------------------------------------------
# /metrics and /health/detailed answer `Authorization: Bearer <METRICS_TOKEN>` (Prometheus, monitoring) or
# staff; /debug/* staff only. Unset, outside production only, loopback callers are let in without it (what
# `make run` binds to); production refuses to start without it (a system check).
METRICS_TOKEN = env_str("METRICS_TOKEN")
# /health/detailed pings the workers (up to 1 s); concurrent and repeated calls share one ping this long.
HEALTH_WORKER_PING_CACHE_SECONDS = env_float("HEALTH_WORKER_PING_CACHE_SECONDS", 5.0)

# --- Chat ingestion (README "Chat submissions"): each endpoint answers 503 while its variable is unset -----
#: The Discord application's public key (hex), verifying the interactions endpoint's Ed25519 signatures.
DISCORD_PUBLIC_KEY = env_str("DISCORD_PUBLIC_KEY").strip()
#: Optional: interactions for another application id are refused.
DISCORD_APPLICATION_ID = env_str("DISCORD_APPLICATION_ID").strip()
#: The Slack app's signing secret, verifying the slash commands' HMAC signatures.
SLACK_SIGNING_SECRET = env_str("SLACK_SIGNING_SECRET")

# --- E-mail (notification destinations of kind EMAIL) ----------------------------------------------------
# Development prints mails on the console; production sends through SMTP (EMAIL_HOST, EMAIL_PORT, ...).
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "alerts@reconcile.localhost")

# --- Platforms ------------------------------------------------------------------------------------
PLATFORM_SLUGS = ("reddit", "instagram", "tiktok", "youtube", "x", "meta")
SANDBOX_URL = env_str("SANDBOX_URL", "http://127.0.0.1:8100").rstrip("/")
#: Credential keys each adapter reads; values from PLATFORM_<SLUG>_<KEY> (e.g. PLATFORM_META_ACCESS_TOKEN).
PLATFORM_CREDENTIAL_KEYS: dict[str, tuple[str, ...]] = {
    "reddit": ("access_token", "ad_account_id"),
    "instagram": ("access_token",),
    "tiktok": ("access_token", "advertiser_id"),
    "youtube": ("access_token", "developer_token", "customer_id"),
    "x": ("consumer_key", "consumer_secret", "access_token", "access_token_secret", "account_id"),
    "meta": ("access_token",),
}
PLATFORM_API: dict[str, dict] = {}
# The sandbox stands in for every platform outside production. In production it must be asked for by name
# (PLATFORMS_USE_SANDBOX=true, the compose demo does), every process start logs a WARNING and
# /health/detailed shows it; otherwise an unset base URL or credential stays empty and the system check
# (reconcile_project/checks.py) refuses to start, naming each platform and variable.
PLATFORMS_USE_SANDBOX = env_bool("PLATFORMS_USE_SANDBOX", not PRODUCTION)
for _slug in PLATFORM_SLUGS:
    PLATFORM_API[_slug] = {
        "base_url": env_str(
            platform_settings.env_name(_slug, "base_url"), f"{SANDBOX_URL}/{_slug}" if PLATFORMS_USE_SANDBOX else ""
        ).rstrip("/"),
        "credentials": {
            key: env_str(
                platform_settings.env_name(_slug, key),
                platform_settings.sandbox_credential(key) if PLATFORMS_USE_SANDBOX else "",
            )
            for key in PLATFORM_CREDENTIAL_KEYS[_slug]
        },
    }
if PRODUCTION and PLATFORMS_USE_SANDBOX:
    _on_sandbox = platform_settings.sandbox_platforms(PLATFORM_API, sandbox_url=SANDBOX_URL)
    if _on_sandbox:
        logging.getLogger("reconcile_project.settings").warning(
            "Platforms use the sandbox in production: claims are verified against the sandbox's numbers",
            extra={"platforms": _on_sandbox, "sandbox_url": SANDBOX_URL, "setting": "PLATFORMS_USE_SANDBOX=true"},
        )

# --- Rule settings (DESIGN §4), typed groups, each field overridable as <GROUP>__<FIELD> --------------


def _group(name: str, cls: type[rule_config.G]) -> rule_config.G:
    try:
        return rule_config.load_group(name, cls)
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None


RECONCILIATION_SETTINGS = _group("RECONCILIATION_SETTINGS", rule_config.ReconciliationSettings)
RETRY_POLICY = _group("RETRY_POLICY", rule_config.RetryPolicy)
TRUST_SCORING = _group("TRUST_SCORING", rule_config.TrustScoring)
ALERTING_SETTINGS = _group("ALERTING_SETTINGS", rule_config.AlertingSettings)
CIRCUIT_BREAKER = _group("CIRCUIT_BREAKER", rule_config.CircuitBreakerSettings)
BACKOFF_POLICY = _group("BACKOFF_POLICY", rule_config.BackoffPolicy)
DATA_QUALITY_SETTINGS = _group("DATA_QUALITY_SETTINGS", rule_config.DataQualitySettings)
RATE_LIMIT_SETTINGS = _group("RATE_LIMIT_SETTINGS", rule_config.RateLimitSettings)
RECONCILE_BATCH = _group("RECONCILE_BATCH", rule_config.BatchSettings)
NOTIFICATIONS = _group("NOTIFICATIONS", rule_config.NotificationSettings)
if not PRODUCTION:
    # Development and tests deliver to receivers on this machine (the platform sandbox's inbox).
    NOTIFICATIONS = NOTIFICATIONS.model_copy(
        update={
            name: True
            for name in ("allow_private_addresses", "allow_http")
            if not os.environ.get(f"NOTIFICATIONS__{name.upper()}")
        }
    )
CELERY_BEAT_SCHEDULE["sweep-notifications"] = {
    "task": "notifications.tasks.sweep_deliveries",
    "schedule": NOTIFICATIONS.sweep_interval_seconds,
    "options": {"queue": "maintenance", "expires": NOTIFICATIONS.sweep_interval_seconds * 2},
}
