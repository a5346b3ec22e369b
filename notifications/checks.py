"""Start-up checks of the outbox's configuration.

With ``DEBUG`` off, standard output is a server log. A console (or file) backend would write
every message there: guest-link and confirmation links with their tokens, invitation links, the
recipients' addresses and mobile numbers. These are errors, not warnings, and not only with
``--deploy``: ``migrate`` and ``runserver`` refuse to run, and so do the web process
(``portal.wsgi``) and the Celery worker (``portal.celery``), which run the checks at start-up
through ``portal.startup``.
"""

from collections.abc import Sequence

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from notifications.backends import prints_messages


@register(Tags.security)
def message_backends_check(
    app_configs: Sequence[AppConfig] | None, **kwargs: object
) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    errors: list[CheckMessage] = []
    if prints_messages(settings.EMAIL_BACKEND):
        errors.append(
            Error(
                f"No mail server is configured: EMAIL_BACKEND ({settings.EMAIL_BACKEND}) would "
                "write every email, its links with their tokens and its recipient, to the log "
                "or to files instead of sending it.",
                hint=(
                    "Set EMAIL_HOST (and EMAIL_PORT, EMAIL_HOST_USER, ...) to send through SMTP, "
                    "or set EMAIL_BACKEND to a backend that does not print messages "
                    "(django.core.mail.backends.dummy.EmailBackend sends none)."
                ),
                id="notifications.E001",
            )
        )
    if prints_messages(settings.SMS_BACKEND):
        errors.append(
            Error(
                f"SMS_BACKEND ({settings.SMS_BACKEND}) would write every text message to the "
                "log instead of sending it.",
                hint=(
                    "Set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER, or set "
                    "SMS_BACKEND to notifications.backends.TwilioSmsBackend (or leave it unset)."
                ),
                id="notifications.E002",
            )
        )
    return errors
