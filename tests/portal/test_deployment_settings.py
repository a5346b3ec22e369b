"""The production configuration: Django's deployment checks pass with the variables an
installation sets, passwords are hashed with Argon2, and demo mode cannot run in production."""

import importlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.contrib.auth.hashers import Argon2PasswordHasher

ROOT = Path(__file__).resolve().parent.parent.parent


def production_env(tmp_path, **extra) -> dict[str, str]:
    # A clean environment: only what an installation sets, nothing from the developer's shell.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(45)[:60],
        "AUDIT_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "portal.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3",
        # Not contacted by the checks; production needs a cache every web process shares.
        "CACHE_URL": "redis://127.0.0.1:6379/1",
        # Not contacted either; without a mail server the portal refuses to start.
        "EMAIL_HOST": "smtp.example.org",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_ENV_FILE": "",
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        **extra,
    }


def manage(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_deployment_checks_find_no_issues_at_all(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "DEBUG", env=production_env(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_deployment_checks_warn_when_throttles_would_be_per_process(tmp_path):
    env = production_env(tmp_path)
    del env["CACHE_URL"]

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode != 0
    assert "portal.W001" in result.stderr + result.stdout


def test_demo_mode_refuses_to_start_without_debug(tmp_path):
    result = manage("check", env=production_env(tmp_path, DEMO_MODE="true"))

    assert result.returncode != 0
    assert "DEMO_MODE publishes demo passwords" in result.stderr


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]

    result = manage("check", env=env)

    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


def test_production_refuses_to_start_without_an_audit_key(tmp_path):
    """Issue 10, finding 3: the audit chain is an HMAC under its own key; without one the
    portal does not start rather than write a chain anyone could recompute."""
    env = production_env(tmp_path)
    del env["AUDIT_KEY"]

    result = manage("check", env=env)

    assert result.returncode != 0
    assert "Set AUDIT_KEY" in result.stderr


def test_production_refuses_a_short_audit_key_or_the_secret_key_again(tmp_path):
    env = production_env(tmp_path)
    for audit_key in ("too-short", env["SECRET_KEY"]):
        result = manage("check", env={**env, "AUDIT_KEY": audit_key})

        assert result.returncode != 0
        assert "AUDIT_KEY must be at least 32 characters long and differ from SECRET_KEY" in (
            result.stderr
        )


def test_passwords_are_hashed_with_argon2_first():
    # The test settings swap in a fast hasher; the installation's own settings module decides.
    production = importlib.import_module("portal.settings")

    assert production.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    # argon2-cffi is installed: the hasher can actually hash.
    assert Argon2PasswordHasher().encode("correct-horse", "saltsaltsalt").startswith("argon2$")


def test_deployment_checks_warn_behind_a_proxy_the_portal_does_not_know(tmp_path):
    env = production_env(tmp_path, USE_X_FORWARDED_PROTO="true")

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "portal.W002" in result.stderr + result.stdout

    env["TRUSTED_PROXIES"] = "172.30.0.10"
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert "portal.W002" not in result.stderr + result.stdout


def test_a_trusted_proxy_that_is_no_address_refuses_to_start(tmp_path):
    for typo in ("proxy.internal", "172.30.0.10/16"):
        result = manage("check", env=production_env(tmp_path, TRUSTED_PROXIES=typo))

        assert result.returncode != 0
        assert f"TRUSTED_PROXIES: {typo!r} is not an IP address or network." in result.stderr


def database_options(env) -> str:
    script = "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'])"
    return manage("shell", "-v", "0", "-c", script, env=env).stdout.strip()


def test_postgresql_keeps_plans_unless_a_transaction_pooler_shares_its_connections(tmp_path):
    """Prepared statements need the same server connection from one statement to the next,
    which a pooler in transaction mode (PgBouncer) does not promise."""
    postgres = "postgres://portal@db.example.org:5432/portal"

    plain = database_options(production_env(tmp_path, DATABASE_URL=postgres))
    pooled = database_options(
        production_env(tmp_path, DATABASE_URL=postgres, DB_PREPARED_STATEMENTS="false")
    )

    assert plain == "{'server_side_binding': True, 'prepare_threshold': 2}"
    assert "server_side_binding" not in pooled and "prepare_threshold" not in pooled
