"""Write the demo's environment to ``.env``, so that every ``manage.py`` command run by hand
after ``make run`` (``createsuperuser``, ``import_dicom``, ``verify_audit``...) works on the
demo's database with the demo's settings.

    $(RUN_ENV) python -m portal.demo_env        # what `make run` does before starting

The Makefile's ``RUN_ENV`` stays the one place the demo's settings are written: this module
copies the variables it names from its own environment into the file. The keys the demo signs
with (``SECRET_KEY``, ``AUDIT_KEY``, ``OUTBOX_KEY``) are made once, at random, and kept from
then on, so that links, tokens and the audit chain made yesterday still verify today.
``portal.settings`` reads the file with python-dotenv; a variable set in the process
environment wins over it.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from dotenv import dotenv_values

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"
# Copied from the environment ``make run`` gives this module (the Makefile's RUN_ENV).
DEMO_VARIABLES = (
    "DEBUG",
    "DEMO_MODE",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "EMAIL_HOST",
    "PORTAL_VAR_DIR",
    "SITE_URL",
    "OHIF_URL",
)
KEPT_SECRETS = ("SECRET_KEY", "AUDIT_KEY", "OUTBOX_KEY")

_HEADER = """\
# The demo's settings, written by `make run` (portal/demo_env.py) from the Makefile's RUN_ENV.
# portal.settings reads this file; the process environment wins over it. Rewritten at every
# `make run`: change the Makefile or pass variables instead of editing it. The keys below are
# made once and kept. Never use this file (or DEBUG) on a real installation.
"""


def demo_environment(environ: dict[str, str], existing: dict[str, str | None]) -> dict[str, str]:
    values = {name: environ.get(name, "") for name in DEMO_VARIABLES}
    for name in KEPT_SECRETS:
        values[name] = existing.get(name) or secrets.token_urlsafe(48)
    return values


def _quoted(value: str) -> str:
    # Single quotes: python-dotenv takes the value as it is, no expansion or escapes.
    if "'" in value or "\n" in value:
        raise ValueError(f"cannot write {value!r} to .env")
    return f"'{value}'"


def write(path: Path = ENV_FILE, environ: dict[str, str] | None = None) -> dict[str, str]:
    existing = dotenv_values(path) if path.exists() else {}
    values = demo_environment(dict(os.environ if environ is None else environ), existing)
    text = _HEADER + "".join(f"{name}={_quoted(value)}\n" for name, value in values.items())
    # Owner-only from the start: the file holds the demo's keys.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    path.chmod(0o600)
    return values


def main() -> int:
    write()
    print(f"Wrote the demo's settings to {ENV_FILE.name}: manage.py commands now run on the demo.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
