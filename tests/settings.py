"""The real settings, with a fixed non-secret key and a fast password hasher for the tests.

Everything else comes from portal.settings and the environment (DATABASE_URL selects
PostgreSQL in CI), so the suite exercises the configuration an installation runs.
"""

import os

# A developer's demo settings (.env, written by `make run`) are not the tests' settings.
os.environ["PORTAL_ENV_FILE"] = ""
os.environ.setdefault("SECRET_KEY", "tests-only-key-not-used-anywhere-else-0123456789abcdef")
os.environ.setdefault("AUDIT_KEY", "tests-only-audit-key-not-used-anywhere-else-0123456789")
# With DEBUG off the system checks refuse the console backends (`makemigrations --check` runs
# them): emails stay in memory (django.core.mail.outbox), SMS on their outbox rows.
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ.setdefault("SMS_BACKEND", "notifications.backends.OutboxSmsBackend")

from portal.settings import *  # noqa: F403

# One process and its cache: decisions are remembered as in production (with Redis), so every
# access and revocation test also checks that a remembered decision is never a stale one.
ACCESS_DECISION_SECONDS = 120
# ... which portal.E001 refuses for an installation without a shared cache (many processes).
SILENCED_SYSTEM_CHECKS = ["portal.E001"]

# Argon2 at production cost would make each of hundreds of test logins take ~130 ms.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The manifest storage of DEBUG-off needs collectstatic first; tests render pages without it.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
