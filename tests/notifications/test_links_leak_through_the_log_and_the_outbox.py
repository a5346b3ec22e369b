"""Issue 10, finding 6: links leaked through the log and the outbox.

With ``EMAIL_HOST`` unset and ``DEBUG`` off, Django's console backend wrote every email to the
server's log: guest-link URLs with their tokens (four times per link) and, for SMS, the mobile
numbers. And the outbox kept each message's full text for a week, so a database dump opened every
link sent that week.

Now the portal refuses to start (a system check error, also for the web process and the worker)
with a backend that prints messages, the console backends mask link tokens even in development,
and subjects and bodies are stored encrypted under a key kept outside the database.
"""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import mail
from django.core.checks import Error, run_checks
from django.db import connection

from notifications.delivery import deliver
from notifications.models import Channel, Message, MessageStatus
from tests.notifications.conftest import LINK

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = LINK.rsplit("/", 1)[1]
CODE = "482913"
MOBILE = "+32470123456"


def production_env(tmp_path, **extra) -> dict[str, str]:
    """What an installation sets, nothing from the developer's shell, and no mail server."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(45)[:60],
        "AUDIT_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "portal.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_ENV_FILE": "",
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        **extra,
    }


def run(*args, env, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def error_ids() -> set[str]:
    return {
        message.id
        for message in run_checks(include_deployment_checks=False)
        if isinstance(message, Error)
    }


# --- The log ------------------------------------------------------------------------------------


def test_links_leak_through_the_log_unless_production_refuses_a_console_backend(settings):
    settings.DEBUG = False
    settings.SMS_BACKEND = "notifications.backends.TwilioSmsBackend"
    for printing in (
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
        "notifications.backends.ConsoleEmailBackend",
    ):
        settings.EMAIL_BACKEND = printing
        assert "notifications.E001" in error_ids(), printing

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert not {"notifications.E001", "notifications.E002"} & error_ids()
    settings.EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
    assert not {"notifications.E001", "notifications.E002"} & error_ids()

    settings.SMS_BACKEND = "notifications.backends.ConsoleSmsBackend"
    assert "notifications.E002" in error_ids()

    settings.DEBUG = True
    settings.EMAIL_BACKEND = "notifications.backends.ConsoleEmailBackend"
    assert not {"notifications.E001", "notifications.E002"} & error_ids()


def test_links_leak_through_the_log_unless_the_web_process_refuses_to_start(tmp_path):
    # gunicorn imports portal.wsgi and runs no system checks of its own.
    refused = run("-c", "import portal.wsgi", env=production_env(tmp_path))

    assert refused.returncode != 0
    assert "The web process refuses to start" in refused.stderr
    assert "notifications.E001" in refused.stderr
    assert "Set EMAIL_HOST" in refused.stderr

    check = run("manage.py", "check", env=production_env(tmp_path))
    assert check.returncode != 0 and "notifications.E001" in check.stderr

    configured = run(
        "-c",
        "import portal.wsgi; print('serving')",
        env=production_env(tmp_path, EMAIL_HOST="smtp.example.org"),
    )
    assert configured.returncode == 0, configured.stderr
    assert "serving" in configured.stdout


def test_links_leak_through_the_log_unless_the_worker_refuses_to_start(tmp_path):
    # Nothing listens on the discard port: a worker that started would wait there for a broker.
    env = production_env(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:9/0")
    try:
        refused = run(
            "-m", "celery", "-A", "portal", "worker", "--pool", "solo", env=env, timeout=45
        )
    except subprocess.TimeoutExpired:
        pytest.fail("The worker started with a console email backend and DEBUG off.")

    assert refused.returncode != 0
    assert "The Celery worker refuses to start" in refused.stderr
    assert "notifications.E001" in refused.stderr


def test_links_leak_through_the_log_unless_production_defaults_print_nothing(tmp_path):
    show = "from django.conf import settings; print(settings.EMAIL_BACKEND, settings.SMS_BACKEND)"

    development = run("-c", show, env={**production_env(tmp_path), "DEBUG": "true"})
    production = run("-c", show, env=production_env(tmp_path, EMAIL_HOST="smtp.example.org"))

    assert development.stdout.split() == [
        "notifications.backends.ConsoleEmailBackend",
        "notifications.backends.ConsoleSmsBackend",
    ]
    # No Twilio account: SMS fail in the admin ("Twilio is not configured"), not into the log.
    assert production.stdout.split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "notifications.backends.TwilioSmsBackend",
    ]


def test_links_leak_through_the_log_not_even_in_development(queue, settings, capsys):
    settings.DEBUG = True
    settings.EMAIL_BACKEND = "notifications.backends.ConsoleEmailBackend"
    settings.SMS_BACKEND = "notifications.backends.ConsoleSmsBackend"
    email = queue(template="guest_link")
    sms = queue(MOBILE, channel=Channel.SMS, template="guest_link")

    assert deliver(email.pk) == MessageStatus.SENT
    assert deliver(sms.pk) == MessageStatus.SENT

    printed = capsys.readouterr().out
    assert TOKEN not in printed
    # Still readable: what was sent, to whom, and where to find the links.
    assert printed.count("/l/[masked]") >= 3
    assert "sent you a secure link" in printed and MOBILE in printed
    assert "/outbox/" in printed


def test_links_leak_through_the_log_not_even_from_a_process_that_skipped_the_checks(
    queue, settings, capsys
):
    settings.DEBUG = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    settings.SMS_BACKEND = "notifications.backends.ConsoleSmsBackend"
    email = queue(template="guest_link")
    code = queue(MOBILE, channel=Channel.SMS, template="sms_code", code=CODE)

    assert deliver(email.pk) == MessageStatus.FAILED
    deliver(code.pk)

    printed = capsys.readouterr().out
    assert TOKEN not in printed and CODE not in printed and MOBILE not in printed
    assert "dr.smith@example.org" not in printed
    assert "No mail server is configured" in Message.objects.get(pk=email.pk).last_error


# --- The outbox ---------------------------------------------------------------------------------


def dump(table: str) -> tuple[list[str], list[tuple]]:
    """The table as a database dump has it: raw rows, no ORM in between."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
        columns = [column[0] for column in cursor.description]
        return columns, cursor.fetchall()


def test_links_leak_through_the_outbox_not_into_a_database_dump(queue, settings):
    settings.SMS_BACKEND = "notifications.backends.OutboxSmsBackend"
    queued = [
        queue(template="guest_link"),
        queue(MOBILE, channel=Channel.SMS, template="guest_link"),
        queue(template="email_confirmation"),
        queue(template="share_notification"),
        queue(template="registration_invitation", email="dr.smith@example.org"),
        queue(MOBILE, channel=Channel.SMS, template="sms_code", code=CODE),
    ]

    columns, rows = dump(Message._meta.db_table)

    assert len(rows) == len(queued)
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        everything = " ".join(str(value) for value in values.values())
        assert TOKEN not in everything
        assert not re.search(rf"(?<![\w-]){CODE}(?![\w-])", everything)
        assert "secure link" not in everything and "Your code is" not in everything
        assert MOBILE not in " ".join(
            str(value) for name, value in values.items() if name != "recipient"
        )
        for name in ("subject", "body_text", "body_html"):
            # Fernet tokens, or nothing at all (SMS have no subject and no HTML).
            assert values[name] == "" or values[name].startswith("gAAAAA"), name
        assert values["body_text"]

    # The rows still deliver what they were queued with.
    for message in queued:
        assert deliver(message.pk) == MessageStatus.SENT
    assert all(LINK in email.body for email in mail.outbox[:4])
    assert all(LINK in email.alternatives[0].content for email in mail.outbox[:4])
    assert LINK in Message.objects.get(pk=queued[1].pk).body_text
    assert CODE in Message.objects.get(pk=queued[-1].pk).body_text
