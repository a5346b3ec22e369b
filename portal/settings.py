"""The portal's one settings file, driven by environment variables (see README "Configuration").

With no variables set except ``DEBUG=true`` it runs the embedded set-up: SQLite, Celery tasks
run in-process, files under ``var/``, messages to the console. Production sets at least
``SECRET_KEY``, ``ALLOWED_HOSTS``, ``DATABASE_URL``, ``CELERY_BROKER_URL`` and the email
variables; with ``DEBUG`` off every security setting is strict.
"""

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from portal.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

# The demo's settings that `make run` writes (portal/demo_env.py), for manage.py commands run by
# hand; what the process environment says wins. PORTAL_ENV_FILE names another file, or none
# when empty (the tests read none).
_ENV_FILE = os.environ.get("PORTAL_ENV_FILE", str(BASE_DIR / ".env"))
if _ENV_FILE:
    load_dotenv(_ENV_FILE, override=False)
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
# Demo mode loads known accounts with a published password: never on a real installation.
DEMO_MODE = env_bool("DEMO_MODE", False)
if DEMO_MODE and not DEBUG:
    raise ImproperlyConfigured("DEMO_MODE publishes demo passwords; it runs only with DEBUG=true.")

SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set SECRET_KEY (or SECRET_KEY_FILE) when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-only-for-debug-mode-" + "x" * 20
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS")

# The audit chain's HMAC key (audit.signing): its own secret, never stored in the database, so
# that whoever can rewrite the database still cannot recompute the chain. After a rotation keep
# the old keys in AUDIT_KEY_FALLBACKS for as long as the events they signed are kept.
AUDIT_KEY = env_str("AUDIT_KEY", "")
if not AUDIT_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set AUDIT_KEY (or AUDIT_KEY_FILE) when DEBUG is off.")
    AUDIT_KEY = "insecure-development-audit-key-only-for-debug-mode-" + "x" * 20
elif not DEBUG and (len(AUDIT_KEY) < 32 or AUDIT_KEY == SECRET_KEY):
    raise ImproperlyConfigured(
        "AUDIT_KEY must be at least 32 characters long and differ from SECRET_KEY."
    )
AUDIT_KEY_FALLBACKS = env_list("AUDIT_KEY_FALLBACKS")
# On PostgreSQL, how many lanes (chains of their own, audit.lanes) each organization's audit chain
# may have, one per database connection appending outside a transaction; 0 appends every event to
# the organization's chain itself. Above the number of gunicorn workers and Celery processes (at
# most 255 are used).
AUDIT_LANES = env_int("AUDIT_LANES", 32)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
SITE_NAME = env_str("SITE_NAME", "Study Portal")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "portal",
    "audit",
    "notifications",
    "accounts",
    "studies",
    "guestlinks",
    "sharing",
    "viewers",
    "dicomweb",
    "dimse",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "portal.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.middleware.StreamingHeartbeatMiddleware",
    "portal.middleware.DecisionsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "portal.csrf.OpaqueOriginMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # Before the first remembered answer is asked (the two-factor check below).
    "portal.middleware.DecisionsAheadMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.middleware.SessionLifetimeMiddleware",
    # Sessions that owe a one-time code (accounts.policy) reach only the two-factor pages.
    "accounts.middleware.TwoFactorMiddleware",
    # The language stored on a logged-in user's account wins over the browser's.
    "accounts.middleware.UserLanguageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Innermost, so it sees the technical 404 Django makes in DEBUG for any unknown address.
    "portal.middleware.DemoNotFoundMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "portal.context_processors.portal",
                "accounts.context_processors.navigation",
                "viewers.context_processors.ohif",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several gunicorn workers or a Celery worker may write at once: wait instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with a check of a reused connection that asks the server nothing while
    # the server has said nothing (portal.postgresql.base).
    DATABASES["default"]["ENGINE"] = "portal.postgresql"
    if env_bool("DB_PREPARED_STATEMENTS", True):
        # PostgreSQL keeps the plan of a statement its connection has run twice: planning is
        # most of a short lookup's cost (a guest link's five-table lookup: 0.4 ms planning, 0.2
        # running). Off behind a connection pooler in transaction mode (PgBouncer), which shares
        # connections.
        DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 2}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Caches: rendered frames and throttling counters ----------------------------------------
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "portal.cache.RedisCache",
            "LOCATION": CACHE_URL,
        },
        "frames": {
            "BACKEND": "portal.cache.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "frames",
            "TIMEOUT": 24 * 3600,
        },
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "frames": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "frame-cache"),
            "TIMEOUT": 24 * 3600,
            "OPTIONS": {"MAX_ENTRIES": 20000},
        },
    }

# Remembered access decisions (portal.decisions): a token's owner and a principal's access to a
# study, kept this many seconds at most and forgotten at once when anything they depend on
# changes. The cache must be shared by every web process for that, so off without CACHE_URL.
ACCESS_DECISION_SECONDS = env_int("ACCESS_DECISION_SECONDS", 120 if CACHE_URL else 0)

# --- Accounts, passwords, sessions ----------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
# Django's ModelBackend, with a session's user remembered (accounts.backends).
AUTHENTICATION_BACKENDS = ["accounts.backends.PortalBackend"]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "studies:directory"
LOGOUT_REDIRECT_URL = "accounts:login"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Any session ends after 12 hours; an idle one after 30 minutes (accounts.middleware).
# Database sessions, without Django's lookup of each new random key (portal/sessions.py), read
# through the shared cache when there is one (portal/cached_sessions.py); never through a cache
# of each process's own, which would keep a session another process ended.
SESSION_ENGINE = "portal.cached_sessions" if CACHE_URL else "portal.sessions"
SESSION_COOKIE_AGE = int(timedelta(hours=12).total_seconds())
SESSION_IDLE_TIMEOUT = int(timedelta(minutes=30).total_seconds())
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_LIMIT_PER_ADDRESS = env_int("LOGIN_FAILURE_LIMIT_PER_ADDRESS", 50)
LOGIN_FAILURE_WINDOW = env_int("LOGIN_FAILURE_WINDOW", 15 * 60)
# Lockout (accounts.services): LOGIN_FAILURE_LIMIT failures of one account from one address lock
# that pair for the window. Beyond LOGIN_FAILURE_LIMIT_PER_ACCOUNT failures of the account from
# anywhere, attempts are spaced by a delay that starts at LOGIN_FAILURE_DELAY seconds and
# doubles, except from an address it signed in from within LOGIN_KNOWN_ADDRESS_DAYS and for a
# login that gives a valid code from the account's authenticator app.
LOGIN_FAILURE_LIMIT_PER_ACCOUNT = env_int("LOGIN_FAILURE_LIMIT_PER_ACCOUNT", 50)
LOGIN_FAILURE_DELAY = env_int("LOGIN_FAILURE_DELAY", 30)
LOGIN_KNOWN_ADDRESS_DAYS = env_int("LOGIN_KNOWN_ADDRESS_DAYS", 90)
# API tokens (also DICOMweb's) end API_TOKEN_LIFETIME_DAYS after they are issued, or after
# API_TOKEN_IDLE_DAYS without use, whichever comes first.
API_TOKEN_LIFETIME_DAYS = env_int("API_TOKEN_LIFETIME_DAYS", 30)
API_TOKEN_IDLE_DAYS = env_int("API_TOKEN_IDLE_DAYS", 7)
# A viewer token (viewers: what the external DICOMweb viewer reads the opened studies with) ends
# this many seconds after it is made, at most 15 minutes, and never after the access it rests on.
VIEWER_TOKEN_SECONDS = env_int("VIEWER_TOKEN_SECONDS", 15 * 60)
if not 60 <= VIEWER_TOKEN_SECONDS <= 15 * 60:
    raise ImproperlyConfigured("VIEWER_TOKEN_SECONDS must be between 60 and 900 (15 minutes).")
OTP_TOTP_ISSUER = SITE_NAME
# Staff browsing django-otp's device admin must not see TOTP secrets.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# --- Security headers -----------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The reverse proxies in front of the portal (addresses or networks, comma-separated; none by
# default). Only a request from one of them has its X-Forwarded-For read, from the right, for the
# client's address that every throttle, the audit trail and the access log use (portal.clients).
# gunicorn.conf.py trusts the same proxies for X-Forwarded-Proto.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy)
    except ValueError as exc:
        # Strict, as gunicorn is: 10.0.0.7/8 (host bits set) is a typo, not a network.
        raise ImproperlyConfigured(
            f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or network."
        ) from exc

if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

# --- Internationalization -------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "Français"), ("nl", "Nederlands"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# One date format per language on every page (portal/formats/common.py, en/formats.py).
FORMAT_MODULE_PATH = ["portal.formats"]
# The language menu's choice, for this browser (a logged-in user's is kept on the account too).
LANGUAGE_COOKIE_AGE = int(timedelta(days=365).total_seconds())
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE: Final = "Lax"
TIME_ZONE = env_str("TIME_ZONE", "Europe/Brussels")
USE_I18N = True
USE_TZ = True

# --- Static files and stored DICOM ----------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "dicom": {
        # Content-addressed files, each renamed to its name once whole and flushed to disk.
        "BACKEND": env_str("DICOM_STORAGE_BACKEND", "studies.storage.DicomFileStorage"),
        "OPTIONS": {"location": env_str("DICOM_STORAGE_ROOT", str(VAR_DIR / "dicom"))},
    },
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG and env_bool("STATIC_MANIFEST", True)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# An upload request up to this size is parsed into memory, the rest into temporary files: 8 MB
# holds the browser's batch of ten CT slices, and is what a STOW-RS body may hold in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "portal.uploads.MemoryFileUploadHandler",
    "portal.uploads.TemporaryFileUploadHandler",
]
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("DATA_UPLOAD_MAX_NUMBER_FILES", 2000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Email and SMS (delivered through notifications' outbox) --------------------------------
EMAIL_HOST = env_str("EMAIL_HOST", "")
# Without EMAIL_HOST, emails are printed with their links masked; with DEBUG off the portal then
# refuses to start (notifications.checks): set EMAIL_HOST, or a non-printing EMAIL_BACKEND.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "notifications.backends.ConsoleEmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
# A worker keeps its mail server connection open this long between messages (notifications).
EMAIL_CONNECTION_IDLE = env_int("EMAIL_CONNECTION_IDLE", 30)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", EMAIL_PORT == 587)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", EMAIL_PORT == 465)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"{SITE_NAME} <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN", "")
TWILIO_FROM_NUMBER = env_str("TWILIO_FROM_NUMBER", "")
TWILIO_MESSAGING_SERVICE_SID = env_str("TWILIO_MESSAGING_SERVICE_SID", "")
# Message subjects and bodies (links with their tokens, codes) are encrypted in the outbox
# (notifications.encryption) with a key derived from OUTBOX_KEY, or from SECRET_KEY if unset:
# never from anything in the database. After changing either, keep the old value in
# OUTBOX_KEY_FALLBACKS (or SECRET_KEY_FALLBACKS) until what it encrypted is sent and erased.
OUTBOX_KEY = env_str("OUTBOX_KEY", "")
if OUTBOX_KEY and not DEBUG and len(OUTBOX_KEY) < 32:
    raise ImproperlyConfigured("OUTBOX_KEY must be at least 32 characters long.")
OUTBOX_KEY_FALLBACKS = env_list("OUTBOX_KEY_FALLBACKS")

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
# With no broker the embedded set-up runs tasks in-process, right away.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Each pool process holds a few tasks ready instead of asking the broker after every one: the
# outbox's tasks are short (measured with bench/outbox_bench.py, 1,000 emails: 4.7 to 5.6 s
# instead of 6.2 to 6.6 s). Acknowledged only when done, so a worker that dies gives them back;
# the periodic re-queue sends any it held.
CELERY_WORKER_PREFETCH_MULTIPLIER = 8
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Celery closes the database connection around every task by default: a new PostgreSQL
# connection per message. Reuse it (measured: 1000 emails in 9 s instead of 20 s).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)

# --- Notifications --------------------------------------------------------------------------
# The outbox (notifications.delivery): a message is tried at most NOTIFICATIONS_MAX_ATTEMPTS
# times, waiting BACKOFF_BASE * 2**(n-1) seconds after the n-th failure (at most BACKOFF_CEILING,
# times a random 0.5-1.5) before it is marked dead and shown in the admin. With the defaults the
# eight tries span about an hour.
NOTIFICATIONS_MAX_ATTEMPTS = env_int("NOTIFICATIONS_MAX_ATTEMPTS", 8)
NOTIFICATIONS_BACKOFF_BASE = env_int("NOTIFICATIONS_BACKOFF_BASE", 30)
NOTIFICATIONS_BACKOFF_CEILING = env_int("NOTIFICATIONS_BACKOFF_CEILING", 3600)
# A worker holds a message this long while sending; past it the worker is presumed dead and the
# message is handed to another. Keep it well above EMAIL_TIMEOUT and TWILIO_TIMEOUT.
NOTIFICATIONS_LEASE_SECONDS = env_int("NOTIFICATIONS_LEASE_SECONDS", 300)
# A new message is published when its transaction commits; the re-queue leaves it alone this long.
NOTIFICATIONS_QUEUED_GRACE = env_int("NOTIFICATIONS_QUEUED_GRACE", 30)
NOTIFICATIONS_REQUEUE_BATCH = env_int("NOTIFICATIONS_REQUEUE_BATCH", 500)
# A delivery task sends up to this many messages, claimed in one UPDATE and recorded as sent in one
# transaction (bench/outbox_bench.py: 1,000 emails in 2.3 s instead of 3.9 s one task per message).
NOTIFICATIONS_DELIVERY_BATCH = env_int("NOTIFICATIONS_DELIVERY_BATCH", 50)
# Sent bodies hold the only plain copy of links and codes; they are blanked after this many days
# (0 keeps them).
NOTIFICATIONS_BODY_RETENTION_DAYS = env_int("NOTIFICATIONS_BODY_RETENTION_DAYS", 7)
# The console prints SMS in development only: with DEBUG off and no Twilio account, SMS fail
# where the admin sees them ("Twilio is not configured") instead of going to the log.
SMS_BACKEND = env_str(
    "SMS_BACKEND",
    "notifications.backends.TwilioSmsBackend"
    if TWILIO_ACCOUNT_SID or not DEBUG
    else "notifications.backends.ConsoleSmsBackend",
)
# Seconds to wait for Twilio's API; TWILIO_HTTP_CLIENT may name another twilio.http.HttpClient.
TWILIO_TIMEOUT = env_int("TWILIO_TIMEOUT", 30)
TWILIO_HTTP_CLIENT = env_str("TWILIO_HTTP_CLIENT", "") or None
CELERY_BEAT_SCHEDULE = {
    "notifications-requeue-undelivered": {
        "task": "notifications.requeue_undelivered",
        "schedule": 60.0,
    },
    "notifications-erase-sent-bodies": {
        "task": "notifications.erase_sent_bodies",
        "schedule": 3600.0,
    },
    "viewers-delete-expired-tokens": {
        "task": "viewers.delete_expired_tokens",
        "schedule": 3600.0,
    },
}

# --- Audit checkpoints (audit.checkpoints) --------------------------------------------------
# Every AUDIT_CHECKPOINT_INTERVAL seconds Celery beat publishes, for each chain that grew, its
# count and last hash signed with AUDIT_KEY: one JSON line appended to AUDIT_CHECKPOINT_FILE and
# logged by the "audit.checkpoint" logger, which AUDIT_CHECKPOINT_SYSLOG ("/dev/log" or
# "host:514") also sends to syslog. `manage.py verify_audit --checkpoints` compares them with the
# database. Keep the file where the database's administrators cannot rewrite it.
AUDIT_CHECKPOINT_FILE = Path(
    env_str("AUDIT_CHECKPOINT_FILE", str(VAR_DIR / "audit-checkpoints.jsonl"))
)
AUDIT_CHECKPOINT_INTERVAL = env_int("AUDIT_CHECKPOINT_INTERVAL", 600)
AUDIT_CHECKPOINT_SYSLOG = env_str("AUDIT_CHECKPOINT_SYSLOG", "")
CELERY_BEAT_SCHEDULE["audit-write-checkpoints"] = {
    "task": "audit.write_checkpoints",
    "schedule": float(AUDIT_CHECKPOINT_INTERVAL),
}

# --- Guest links ----------------------------------------------------------------------------
# Requests with tokens that open nothing, per client address and window, before 429.
GUESTLINK_PROBE_LIMIT = env_int("GUESTLINK_PROBE_LIMIT", 20)
# Password and SMS-code guesses per link and per address in a window, turned away before the
# hasher; a link's own max password attempts and the code lock below are separate, permanent.
GUESTLINK_GUESSES_PER_LINK = env_int("GUESTLINK_GUESSES_PER_LINK", 10)
GUESTLINK_GUESSES_PER_ADDRESS = env_int("GUESTLINK_GUESSES_PER_ADDRESS", 20)
GUESTLINK_THROTTLE_WINDOW = env_int("GUESTLINK_THROTTLE_WINDOW", 10 * 60)
# SMS codes: valid minutes, seconds between sends, codes per link, wrong codes that lock it.
GUESTLINK_SMS_CODE_MINUTES = env_int("GUESTLINK_SMS_CODE_MINUTES", 10)
GUESTLINK_SMS_RESEND_SECONDS = env_int("GUESTLINK_SMS_RESEND_SECONDS", 60)
GUESTLINK_MAX_SMS_CODES = env_int("GUESTLINK_MAX_SMS_CODES", 5)
GUESTLINK_MAX_CODE_FAILURES = env_int("GUESTLINK_MAX_CODE_FAILURES", 5)

# --- Shares ---------------------------------------------------------------------------------
# SMS two-factor on shares: valid minutes, seconds between sends, codes per recipient, and the
# wrong codes in a row that block the recipient's share until an administrator unblocks it.
SHARE_SMS_CODE_MINUTES = env_int("SHARE_SMS_CODE_MINUTES", 10)
SHARE_SMS_RESEND_SECONDS = env_int("SHARE_SMS_RESEND_SECONDS", 60)
SHARE_MAX_SMS_CODES = env_int("SHARE_MAX_SMS_CODES", 10)
SHARE_MAX_CODE_FAILURES = env_int("SHARE_MAX_CODE_FAILURES", 5)
# Days an email share's registration invitation can be accepted (never past the share itself).
SHARE_INVITATION_DAYS = env_int("SHARE_INVITATION_DAYS", 30)

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies only (the upload endpoint declares its own multipart parser): one body format
    # per endpoint, and the schema says exactly which.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"token": "10/min"},
    # The API's throttles key on portal.clients.client_ip (portal.api.ScopedRateThrottle), never
    # on DRF's own reading of X-Forwarded-For, which a client could write.
    "NUM_PROXIES": 0,
    "EXCEPTION_HANDLER": "portal.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": f"{SITE_NAME} API",
    "VERSION": "1",
    "DESCRIPTION": "REST API for studies, uploads, worklists, rendered frames and the audit trail.",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Swagger UI served from our own static files: no CDN, and the CSP needs no exception.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "portal.api.document_standard_errors",
    ],
    # The message language of guest links and shares (plain codes) is one enum in the schema.
    "ENUM_NAME_OVERRIDES": {"MessageLanguageEnum": [code for code, _name in LANGUAGES]},
}

# --- Logging: no secrets and no link tokens in logs (portal.logging masks them) -------------
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_secrets": {"()": "portal.logging.MaskSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["mask_secrets"],
            "formatter": "plain",
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # Audit checkpoints are published whatever LOG_LEVEL says.
        "audit.checkpoint": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
if AUDIT_CHECKPOINT_SYSLOG:
    _host, _sep, _port = AUDIT_CHECKPOINT_SYSLOG.rpartition(":")
    LOGGING["handlers"]["audit_syslog"] = {
        "class": "logging.handlers.SysLogHandler",
        "address": (_host, int(_port)) if _sep and _port.isdigit() else AUDIT_CHECKPOINT_SYSLOG,
        "facility": "auth",
        "formatter": "plain",
    }
    LOGGING["loggers"]["audit.checkpoint"]["handlers"].append("audit_syslog")

# --- Portal ---------------------------------------------------------------------------------
DIRECTORY_PAGE_SIZE = 50
UPLOAD_MAX_FILE_SIZE = env_int("UPLOAD_MAX_FILE_SIZE", 2 * 1024 * 1024 * 1024)
# An upload, an import or a STOW-RS request files its new instances this many at a time in one
# transaction, or fewer once their bytes reach INGESTION_CHUNK_BYTES (files are spooled in memory
# up to 8 MB each until their chunk is filed).
INGESTION_CHUNK_FILES = env_int("INGESTION_CHUNK_FILES", 100)
INGESTION_CHUNK_BYTES = env_int("INGESTION_CHUNK_BYTES", 64 * 1024 * 1024)

# --- DICOM networking: the DIMSE listener and DICOMweb --------------------------------------
# The portal's own AE title: a peer calling any other title is refused.
DICOM_AE_TITLE = env_str("DICOM_AE_TITLE", "PORTAL")
DICOM_LISTENER_HOST = env_str("DICOM_LISTENER_HOST", "127.0.0.1")
DICOM_LISTENER_PORT = env_int("DICOM_LISTENER_PORT", 11112)
# Origins (scheme://host[:port]) whose pages may call /dicomweb/ with a token; none by default
# (OHIF's, below, always may).
DICOMWEB_CORS_ALLOWED_ORIGINS = env_list("DICOMWEB_CORS_ALLOWED_ORIGINS")

# --- OHIF, the diagnostic viewer on its own origin (viewers.ohif) ---------------------------
# Where OHIF is served (scheme://host[:port], another origin than SITE_URL's); empty: no OHIF,
# and the portal hides its "Open in OHIF" entry points. `manage.py install_ohif` unpacks the
# pinned @ohif/app (needs npm) into OHIF_DIR; `make run` serves it on the next port.
OHIF_URL = env_str("OHIF_URL", "").rstrip("/")
OHIF_DIR = Path(env_str("OHIF_DIR", str(BASE_DIR / "var" / "ohif")))
# The most image requests OHIF opens at once (it would open 100): what the workers hold.
OHIF_MAX_REQUESTS = env_int("OHIF_MAX_REQUESTS", 8)
if OHIF_URL and OHIF_URL.split("/")[:3] == SITE_URL.split("/")[:3]:
    raise ImproperlyConfigured(
        "OHIF_URL must be another origin than SITE_URL (another port or host): OHIF's "
        "Content-Security-Policy must not apply to the portal's pages."
    )
# The most results one QIDO-RS answer holds; a larger limit is cut, with a Warning header.
DICOMWEB_QIDO_MAX_LIMIT = env_int("DICOMWEB_QIDO_MAX_LIMIT", 1000)
# A rendered frame asked with its content version (?v=, as the viewer asks) may stay this long
# in the browser's own cache (private: never a proxy's), so scrolling back costs no request.
# 0: never cached, as every other page.
RENDERED_FRAME_BROWSER_SECONDS = env_int("RENDERED_FRAME_BROWSER_SECONDS", 3600)
