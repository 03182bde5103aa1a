"""FlashBid settings: every deployment knob is read from the environment here, and only here.

Defaults are the secure ones (DEBUG off, HTTPS-only cookies, HSTS, CSP); development defaults exist
only where they are harmless (local PostgreSQL and Redis). No secret is in the source: with DEBUG
off the process refuses to start without SECRET_KEY; with DEBUG on it generates one, once, into
the checkout's runtime folder.
"""

import hashlib
import hmac
import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from psycopg_pool import ConnectionPool

from flashbid.email_url import mailer_from_url
from flashbid.runtime import RuntimeSecretError, shared_secret

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return default if value in (None, "") else int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    try:
        return default if value in (None, "") else float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# --- Core -----------------------------------------------------------------------------------

# Off unless set: an instance started without configuration is not a debugging one.
DEBUG = env_bool("DEBUG", False)

# What this checkout's processes generate and share (flashbid/runtime.py); ignored by git.
RUNTIME_DIR = Path(env_str("FLASHBID_RUNTIME_DIR", str(BASE_DIR / "var")))

# No secret lives in the source. In development, without SECRET_KEY, every process of the checkout
# uses one generated into the runtime folder; with DEBUG off it must come from the environment.
# `check --deploy` holds it (and JWT_SIGNING_KEY) to Django's W009 rules (flashbid/checks.py).
SECRET_KEY = env_str("SECRET_KEY")
if not DEBUG and (not SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "DEBUG is off: set SECRET_KEY in the environment to a random string (32+ characters; "
        "`manage.py check --deploy` asks for 50+)."
    )
if not SECRET_KEY:
    try:
        SECRET_KEY = shared_secret(RUNTIME_DIR / "secret_key")
    except RuntimeSecretError as exc:
        raise ImproperlyConfigured(f"No SECRET_KEY in the environment, and {exc}.") from None
# Keys that still verify what they signed (sessions' auth hashes, signed values) during a rotation.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# No "daphne" app: it only makes `manage.py runserver` serve ASGI, and its import installs Twisted's
# reactor in every process that loads the apps (web, worker, beat, commands): 15 MB of RSS per
# process for a server none of them runs. `make up` is the development server; daphne itself, as the
# tests run it, needs no app (docs/PERFORMANCE.md, session 13).
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",  # Swagger UI's assets from our own /static/ (ninja/static/ninja), not a CDN
    "flashbid.apps.WiringConfig",  # the deploy checks (flashbid/checks.py)
    "pgtrigger",
    "pghistory",
    "accounts",
    "auctions",
    "history",  # the audit trail of outcome-changing fields (django-pghistory triggers)
    "leaderboard",
    "worker",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who changed what from the pages and the admin, for the audit trail (the API sets it itself).
    "pghistory.middleware.HistoryMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "flashbid.urls"
ASGI_APPLICATION = "flashbid.asgi.application"

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
                "django.template.context_processors.csp",  # the nonce, for the admin's inline blocks
            ],
        },
    },
]

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
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
# Where collectstatic puts the files nginx serves under /static/ (deploy/nginx.conf).
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Bodies larger than this are refused before parsing (a bid is a few bytes).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 256 * 1024)

# --- PostgreSQL -------------------------------------------------------------------------------
# One strategy: Django's native psycopg 3 connection pool, sized for a 2-core box (a web process
# needs few connections: the bid path runs no SQL). Behind PgBouncer in transaction mode set
# DATABASE_POOL=false: Django then keeps no pool, and server-side cursors and prepared statements
# are off, as transaction pooling requires.

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/flashbid")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
DATABASE_POOL = env_bool("DATABASE_POOL", True)
if DATABASE_POOL:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": env_int("DATABASE_POOL_MIN_SIZE", 1),
            "max_size": env_int("DATABASE_POOL_MAX_SIZE", 4),
            "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0),
            # A connection PostgreSQL closed (a restart, a failover) is replaced when it is handed
            # out, instead of failing the request that gets it. One round trip per checkout: the
            # bid path takes none, persist one per batch.
            "check": ConnectionPool.check_connection,
        }
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"]["OPTIONS"] = {"prepare_threshold": None}
DATABASES["default"].setdefault("TEST", {})["NAME"] = env_str(
    "TEST_DATABASE_NAME", "test_" + DATABASES["default"]["NAME"]
)

# --- Redis: engine state, Django cache, channel layer, Celery broker --------------------------

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# The engine's state (session keys, user hashes, rate, idempotency and lease keys) on a Redis
# Cluster: REDIS_URL then names any node of it (core.redis). kombu (the broker), channels-redis
# (the channel layer) and django-redis (the cache) do not speak Cluster: each needs a plain Redis.
REDIS_CLUSTER = env_bool("REDIS_CLUSTER", False)


def plain_redis_url(name: str, user: str) -> str:
    """A plain Redis URL for `user` (what reads `name`): the setting, else REDIS_URL, which a
    cluster cannot be."""
    value = env_str(name)
    if value is not None:
        return value
    if REDIS_CLUSTER:
        raise ImproperlyConfigured(
            f"REDIS_CLUSTER is on, so REDIS_URL names a Redis Cluster node, which {user} cannot use: set "
            f"{name} to a plain (non-cluster) Redis URL, e.g. redis://:password@redis-plain:6379/0."
        )
    return REDIS_URL


CELERY_BROKER_URL = plain_redis_url("CELERY_BROKER_URL", "the Celery broker (kombu)")
CHANNEL_LAYER_URL = plain_redis_url("CHANNEL_LAYER_URL", "the channel layer (channels-redis)")
CACHE_URL = plain_redis_url("CACHE_URL", "Django's cache (django-redis)")
# Prefix of every engine key (fb:{<session_id>}:rank ...). Tests use their own Redis database.
REDIS_KEY_PREFIX = env_str("REDIS_KEY_PREFIX", "fb")
# Connections per process for the async engine client (requests beyond it wait for one); the live
# scripts' batches keep REDIS_SCRIPT_BATCH_IN_FLIGHT of them between batches.
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 64)
# The live scripts' calls (the bid, the board, my standing) a process has under way at once; calls
# made meanwhile wait for one to end, then go out together as one pipeline (core.scripts.batched).
# 0: every call alone, as before issue 18 (for A/B runs).
REDIS_SCRIPT_BATCH_IN_FLIGHT = env_int("REDIS_SCRIPT_BATCH_IN_FLIGHT", 1)

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": "fbcache",
        # JSON, not pickle: whoever can write to this Redis must not be able to run code in every
        # process that reads the cache. What is cached here is plain data (sessions' dicts).
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
        },
    }
}
# Sessions live in PostgreSQL with a Redis read-through, so a page or API request authenticated by
# cookie costs no SQL once warm, and a Redis flush logs nobody out.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# The pub/sub layer: a group send is one PUBLISH whatever the number of listeners, and each process
# relays it to its own sockets. Per process it holds one subscriber connection and publishes on one
# more (channels-redis serializes both behind a lock), so the cap below is slack, set explicitly
# because redis-py's default pool (100, non-blocking) fails with MaxConnectionsError instead of
# bounding anything. The layer has no per-channel capacity: each socket's queue is in memory and
# drained as fast as daphne takes frames (it never waits on a client), and the broadcaster keeps
# the rate at one board per session per BROADCAST_INTERVAL_MS.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [{
                "address": CHANNEL_LAYER_URL,
                "max_connections": env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 16),
                "client_name": "flashbid-channels",  # told apart in CLIENT LIST
                "socket_connect_timeout": 5,
                "socket_keepalive": True,
            }],
        },
    }
}
# At most one board push per session per this many milliseconds, across all web processes.
BROADCAST_INTERVAL_MS = env_int("BROADCAST_INTERVAL_MS", 200)
# Open leaderboard sockets one client address may hold in one web process (0: no cap). Load
# generators on loopback (tests, benchmarks) share one address and raise it.
WEBSOCKETS_PER_ADDRESS = env_int("WEBSOCKETS_PER_ADDRESS", 100)

# --- Celery -----------------------------------------------------------------------------------

CELERY_RESULT_BACKEND = None  # no task needs its result stored
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# An unacked task is redelivered after this long: longer than any task may run.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 300)}
CELERY_WORKER_SEND_TASK_EVENTS = True  # Flower's live view
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # keep LOGGING above (JSON lines, request ids) in the worker
CELERY_TASK_SEND_SENT_EVENT = True

PERSIST_INTERVAL_SECONDS = env_float("PERSIST_INTERVAL_SECONDS", 5.0)
SETTLE_INTERVAL_SECONDS = env_float("SETTLE_INTERVAL_SECONDS", 10.0)
# Stream entries pending this long on a consumer (a dead or stuck worker) are reclaimed by another.
PERSIST_RECLAIM_IDLE_MS = env_int("PERSIST_RECLAIM_IDLE_MS", 30_000)
# The periodic drain yields the cores between batches: after each batch it pauses this many times
# as long as the batch took (0: no pause), unless the stream's oldest entry was PERSIST_YIELD_LAG_SECONDS
# old or more when the drain began: a stream that far behind (PostgreSQL was away) is drained flat
# out (auctions.persistence._BatchYield).
PERSIST_YIELD_RATIO = env_float("PERSIST_YIELD_RATIO", 1.0)
# 10 s: two ticks, under the persist-lag alert (docs/OPERATIONS.md: 15 s).
PERSIST_YIELD_LAG_SECONDS = env_float("PERSIST_YIELD_LAG_SECONDS", 10.0)
# Each tick hands the sessions out to the workers in shares (one task each): of open sessions to
# persist, of ended sessions to settle. A tick settles at most SETTLE_SESSIONS_PER_TICK sessions
# (the earliest ended first; the rest next tick).
PERSIST_SESSIONS_PER_TASK = env_int("PERSIST_SESSIONS_PER_TASK", 50)
SETTLE_SESSIONS_PER_TASK = env_int("SETTLE_SESSIONS_PER_TASK", 10)
SETTLE_SESSIONS_PER_TICK = env_int("SETTLE_SESSIONS_PER_TICK", 200)

# --- Mail: the winners' result mail (auctions.result_mail), sent by the Celery worker ----------
# EMAIL_URL picks the mailer (flashbid/email_url.py): console:// (each message on the worker's
# standard output), file:///dir (one file per message), smtp://user:pass@host:port, smtp+tls://
# (STARTTLS), smtps:// (implicit TLS). Django 6.1's MAILERS, not its deprecated EMAIL_* settings.
# Unset: console:// in development; with DEBUG off, Django's own default, SMTP to a mail server on
# localhost. Console would mark the winners mailed while nobody got a thing (and `check --deploy`
# refuses it, mail.E001); a mail server that is not there leaves the mail owed, retried until
# EMAIL_URL names one. The URL is not kept as a setting: it may hold the SMTP password, and the
# debug page shows settings (MAILERS's `password` is masked there). An SMTP connect or command
# gives up after 10 s (the task retries later): a server that hangs must not hold a worker slot.
MAILERS = {"default": mailer_from_url(env_str("EMAIL_URL", "console://" if DEBUG else "smtp://localhost:25"),
                                      timeout=10.0)}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "FlashBid <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Where the site is reached, for the absolute links in mail (no request to take the host from).
SITE_URL = env_str("SITE_URL", "http://localhost:8000").rstrip("/")
if urlsplit(SITE_URL).scheme not in ("http", "https") or not urlsplit(SITE_URL).hostname:
    raise ImproperlyConfigured(f"SITE_URL must be an http:// or https:// URL, got {SITE_URL!r}")

# --- Auth and the bidding engine ---------------------------------------------------------------

JWT_ACCESS_TTL_SECONDS = env_int("JWT_ACCESS_TTL_SECONDS", 3600)
# HS256 key of the access tokens. Without JWT_SIGNING_KEY, a key derived from SECRET_KEY (never
# SECRET_KEY itself: a JWT key shared with a verifier must not give away Django's signing key).
JWT_SIGNING_KEY = env_str("JWT_SIGNING_KEY") or hmac.new(
    SECRET_KEY.encode(), b"flashbid.accounts.tokens", hashlib.sha256).hexdigest()
# The in-process user cache (accounts.user_cache): entries live the short TTL wherever a change
# could go unheard, the long one while the process hears every change on the change channel.
AUTH_LOCAL_CACHE_TTL_SECONDS = env_float("AUTH_LOCAL_CACHE_TTL_SECONDS", 5.0)
AUTH_LOCAL_CACHE_LONG_TTL_SECONDS = env_float("AUTH_LOCAL_CACHE_LONG_TTL_SECONDS", 300.0)
AUTH_LOCAL_CACHE_SIZE = env_int("AUTH_LOCAL_CACHE_SIZE", 50_000)
BID_RATE_LIMIT_PER_SECOND = env_int("BID_RATE_LIMIT_PER_SECOND", 10)
IDEMPOTENCY_TTL_SECONDS = env_int("IDEMPOTENCY_TTL_SECONDS", 600)
LEADERBOARD_META_CACHE_SECONDS = env_float("LEADERBOARD_META_CACHE_SECONDS", 1.0)
LEADERBOARD_MAX_PAGE_SIZE = 200
# The currency the pages name next to every price (prices themselves are plain decimals everywhere).
CURRENCY = env_str("CURRENCY", "USD")
# Price to win: the price that would win if the bid were accepted this long after the answer.
PRICE_HINT_MARGIN_MS = env_int("PRICE_HINT_MARGIN_MS", 2000)

# --- Security ----------------------------------------------------------------------------------

# Secure unless DEBUG is on: with DEBUG off, SECRET_KEY and ALLOWED_HOSTS set and nothing else,
# `manage.py check --deploy --fail-level WARNING` passes (tests/test_settings.py). Each knob can be
# loosened by its own variable (e.g. SECURE_SSL_REDIRECT=false for a plain-HTTP benchmark).

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind a TLS-terminating proxy (nginx) that sets X-Forwarded-Proto: a request it received over
# HTTPS is secure here too.
BEHIND_HTTPS_PROXY = env_bool("BEHIND_HTTPS_PROXY", False)
if BEHIND_HTTPS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)
# Cookies travel over HTTPS only.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG or BEHIND_HTTPS_PROXY)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG or BEHIND_HTTPS_PROXY)
# A plain-HTTP request for a page or the admin is redirected to HTTPS. Behind nginx this is a second
# line (nginx redirects port 80 itself); the API and the ops endpoints run no middleware
# (flashbid/handlers.py), so load-balancer probes of /healthz stay plain HTTP.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# HSTS, sent on HTTPS answers: a year, subdomains included. Preload is a commitment for the whole
# domain that takes months to undo, so the operator opts in (SECURE_HSTS_PRELOAD=true) and,
# until then, Django's reminder that the site is not preloadable (security.W021) is silenced.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Content-Security-Policy of the pages and the admin (ContentSecurityPolicyMiddleware): nothing
# from another origin, no inline script or style. Our templates load every script and style from
# /static/; the admin's few inline blocks carry the per-request nonce. The API's answers get their
# own, stricter policy in flashbid/handlers.py (it runs no middleware), and /api/docs this one.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# --- Logging -----------------------------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# JSON lines (one object per record, with the request id) unless told otherwise; plain text in
# development, where a person reads the console.
LOG_FORMAT = env_str("LOG_FORMAT", "plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, got {LOG_FORMAT!r}")
# Requests slower than this are logged (flashbid.requests, with method, path, status, duration).
SLOW_REQUEST_MS = env_float("SLOW_REQUEST_MS", 500.0)
# Requests that hash a password (a regular expression over the path; Django's PBKDF2 takes most
# of a second by design) are slow only past this.
SLOW_PASSWORD_REQUEST_MS = env_float("SLOW_PASSWORD_REQUEST_MS", 5000.0)
PASSWORD_HASHING_PATHS = (r"/(api/auth/(login|register|password)|login/|register/|password/"
                          r"|admin/login/|admin/password_change/|admin/accounts/user/[^/]+/password/)")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "core.observability.RequestIdFilter"},
                "not_found": {"()": "core.observability.NotFoundFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Through the root's handler only: Django's default config adds a console handler of its
        # own in DEBUG, which printed every record of "django" twice (and a mail_admins handler,
        # idle here: no ADMINS are configured).
        "django": {"handlers": [], "level": "INFO"},
        # One line per 404 at most: the server's access log has it (core.observability.NotFoundFilter).
        "django.request": {"filters": ["not_found"]},
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
    },
}


# --- Auth and abuse limits (accounts) ---
# Rates in the notation of the `limits` library ("10 per 15 minutes"); an empty value turns a limit
# off. Counted in Redis per client address (REMOTE_ADDR; an IPv6 client by its /64), see
# accounts/limits.py and docs/SECURITY.md. Login limits count failed attempts only. `manage.py check`
# refuses a rate it cannot read (accounts/checks.py).
LOGIN_FAILURES_PER_ADDRESS = env_str("LOGIN_FAILURES_PER_ADDRESS", "50 per 15 minutes")
LOGIN_FAILURES_PER_NAME_AND_ADDRESS = env_str("LOGIN_FAILURES_PER_NAME_AND_ADDRESS", "10 per 15 minutes")
REGISTRATIONS_PER_ADDRESS = env_str("REGISTRATIONS_PER_ADDRESS", "10 per hour")
# "Forgot your password?" requests (each may send a mail through the mailer EMAIL_URL configures).
PASSWORD_RESETS_PER_ADDRESS = env_str("PASSWORD_RESETS_PER_ADDRESS", "5 per hour")
# Every authenticate() (API, pages, the Django admin) goes through the login limits.
AUTHENTICATION_BACKENDS = ["accounts.backends.LoginLimitedBackend"]
