"""How a Message leaves the portal: email through Django's email backend (SMTP in production),
SMS through Twilio, or to the console / the outbox page in development.

The console backends are for development only. Even there they print links with their tokens
masked (the Outbox page shows the messages whole); with ``DEBUG`` off the portal refuses to start
with one (``notifications.checks``) and refuses to hand a message to one (``EmailBackend``), since
standard output is then a server log.

A backend's ``send(message)`` returns the provider's id for the message, or raises
``DeliveryError`` (worth trying again later: the server is down, busy or slow) or
``PermanentDeliveryError`` (trying again cannot help: the address or number is refused). Error
texts end up in the admin and the audit trail, so they never include the message body.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import re
import smtplib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from email.utils import make_msgid
from typing import TYPE_CHECKING, Protocol, TextIO

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.console import EmailBackend as DjangoConsoleEmailBackend
from django.core.mail.message import EmailAlternative
from django.core.mail.utils import DNS_NAME
from django.urls import reverse
from django.utils.module_loading import import_string
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from notifications.models import Channel
from portal.logging import mask_secrets

if TYPE_CHECKING:
    from notifications.models import Message

logger = logging.getLogger(__name__)


class DeliveryError(Exception):
    """The message could not be sent now; it is tried again after a pause."""


class PermanentDeliveryError(DeliveryError):
    """The message can never be sent as it is (refused recipient, invalid number)."""


class Backend(Protocol):
    def send(self, message: Message) -> str: ...


# --- Email ----------------------------------------------------------------------------------


class EmailBackend:
    """Sends through ``settings.EMAIL_BACKEND``. The Message-ID is set here, so that the id kept
    as ``provider_id`` is the one in the recipient's mail headers and the mail server's logs."""

    def send(self, message: Message) -> str:
        if not settings.DEBUG and prints_messages(settings.EMAIL_BACKEND):
            # The start-up check refuses this configuration; a process that skipped the checks
            # must still not write the links to its log.
            raise DeliveryError(
                "No mail server is configured and EMAIL_BACKEND would print the message to the "
                "log: set EMAIL_HOST (or EMAIL_BACKEND)."
            )
        message_id = make_msgid(idstring=f"message-{message.pk}", domain=DNS_NAME)
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.body_text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.recipient],
            headers={
                "Message-ID": message_id,
                "Content-Language": message.language,
                # RFC 3834: vacation responders and ticket systems should not answer.
                "Auto-Submitted": "auto-generated",
            },
        )
        if message.body_html:
            email.attach_alternative(message.body_html, "text/html")
        try:
            sent = _kept_connection.send(email)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _text in exc.recipients.values()]
            reason = "; ".join(f"{code} {_decode(text)}" for code, text in exc.recipients.values())
            # 4xx is "not now" (greylisting, full mailbox); 5xx is "never".
            if codes and all(400 <= code < 500 for code in codes):
                raise DeliveryError(f"Recipient temporarily refused: {reason}") from exc
            raise PermanentDeliveryError(f"Recipient refused: {reason}") from exc
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused) as exc:
            # The portal's credentials or sender address are wrong: an administrator can fix
            # that, after which the message should still go out.
            reason = f"{exc.smtp_code} {_decode(exc.smtp_error)}"
            raise DeliveryError(f"Mail server refused the portal's account: {reason}") from exc
        except smtplib.SMTPResponseException as exc:
            text = f"Mail server answered {exc.smtp_code} {_decode(exc.smtp_error)}"
            if 500 <= exc.smtp_code < 600:
                raise PermanentDeliveryError(text) from exc
            raise DeliveryError(text) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # Connection refused or lost, DNS failure, TLS failure, timeout.
            raise DeliveryError(f"Mail server unreachable: {_describe(exc)}") from exc
        if not sent:
            raise DeliveryError("The email backend accepted nothing.")
        return message_id


class _KeptConnection:
    """One mail server connection per process, kept open between messages: a worker delivering
    a burst of emails logs in once, not once per message. Closed after ``EMAIL_CONNECTION_IDLE``
    seconds unused (servers drop idle clients) and after any failure; a message that finds the
    kept connection dropped by the server is sent once more on a new one (nothing was accepted:
    the server hung up before the message began)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: BaseEmailBackend | None = None
        self._settings: tuple[object, ...] = ()
        self._last_used = 0.0

    def send(self, email: EmailMultiAlternatives) -> int:
        with self._lock:
            reused = self._open()
            try:
                return self._send(email)
            except smtplib.SMTPServerDisconnected:
                self._close()
                if not reused:
                    raise
                self._open()
                return self._send(email)

    def _send(self, email: EmailMultiAlternatives) -> int:
        email.connection = self._connection
        try:
            sent = email.send()
        except BaseException:
            self._close()
            raise
        self._last_used = time.monotonic()
        return sent

    def _open(self) -> bool:
        """Whether the kept connection is reused; otherwise a new one is opened."""
        current = _email_settings()
        if self._connection is not None:
            idle = time.monotonic() - self._last_used
            if idle < settings.EMAIL_CONNECTION_IDLE and self._settings == current:
                return True
            self._close()
        connection = get_connection(fail_silently=False)
        # Opened here, Django's backends leave it open after sending.
        connection.open()
        self._connection, self._settings = connection, current
        return False

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def _email_settings() -> tuple[object, ...]:
    """What a kept connection was opened with: another server or account needs a new one."""
    return tuple(
        getattr(settings, name, None)
        for name in (
            "EMAIL_BACKEND",
            "EMAIL_HOST",
            "EMAIL_PORT",
            "EMAIL_HOST_USER",
            "EMAIL_HOST_PASSWORD",
            "EMAIL_USE_TLS",
            "EMAIL_USE_SSL",
            "EMAIL_TIMEOUT",
        )
    )


_kept_connection = _KeptConnection()
# A worker that stops says goodbye to the mail server rather than dropping the connection.
atexit.register(_kept_connection.close)


def close_kept_connection() -> None:
    """Close the process's kept mail server connection (the next email opens a new one)."""
    _kept_connection.close()


class ConsoleEmailBackend(DjangoConsoleEmailBackend):
    """Django's console backend with link tokens masked (and, with ``DEBUG`` off, one-time codes
    and whole links): a terminal's scroll-back and a container's log are no place for them."""

    def write_message(self, message: EmailMessage) -> None:
        super().write_message(_masked_email(message))

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = super().send_messages(email_messages)
        if sent and settings.DEBUG:
            outbox = f"{settings.SITE_URL}{reverse('notifications:outbox')}"
            self.stream.write(f"(Links are masked here: open them from {outbox})\n")
            self.stream.flush()
        return sent


def _masked_email(message: EmailMessage) -> EmailMessage:
    mask = console_mask()
    masked = copy.copy(message)
    masked.subject = mask(str(message.subject))
    masked.body = mask(str(message.body))
    if isinstance(masked, EmailMultiAlternatives):
        masked.alternatives = []
        for content, mimetype in getattr(message, "alternatives", []):
            if isinstance(content, str):
                content = mask(content)
            masked.alternatives.append(EmailAlternative(content, mimetype))
    return masked


def prints_messages(dotted_path: str) -> bool:
    """Whether the email or SMS backend at ``dotted_path`` writes messages to standard output or
    to files (Django's console and file backends, ours, and their subclasses) instead of
    delivering them."""
    try:
        backend = import_string(dotted_path)
    except ImportError:
        return False
    return isinstance(backend, type) and issubclass(
        backend, (DjangoConsoleEmailBackend, ConsoleSmsBackend)
    )


def _decode(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# --- SMS ------------------------------------------------------------------------------------

# Twilio error codes that no retry can fix: the number itself is the problem.
# https://www.twilio.com/docs/api/errors
TWILIO_PERMANENT_CODES = {
    21211: "invalid 'To' number",
    21214: "'To' number cannot be reached",
    21408: "sending to this region is not enabled",
    21610: "the recipient has unsubscribed (replied STOP)",
    21612: "Twilio cannot route to this number",
    21614: "'To' number is not a mobile number",
    21617: "message body too long",
}
# Credentials or account set-up: an administrator can fix these, and the message should then go.
_TWILIO_CONFIGURATION_STATUSES = {401, 403, 404}
_PHONE_NUMBER = re.compile(r"\+?\d[\d \-]{6,}\d")


def _twilio_http_client() -> HttpClient:
    """``settings.TWILIO_HTTP_CLIENT`` (an HttpClient, or the dotted path of a class or factory
    making one), else Twilio's own client with a timeout: without one a stalled connection would
    hold the message past its lease."""
    configured = getattr(settings, "TWILIO_HTTP_CLIENT", None)
    if isinstance(configured, str):
        configured = import_string(configured) if configured else None
    if configured is None:
        return TwilioHttpClient(timeout=getattr(settings, "TWILIO_TIMEOUT", 30))
    if isinstance(configured, HttpClient):
        return configured
    return configured()


class TwilioSmsBackend:
    def __init__(self, http_client: HttpClient | None = None):
        self.http_client = http_client if http_client is not None else _twilio_http_client()

    def send(self, message: Message) -> str:
        account_sid = settings.TWILIO_ACCOUNT_SID
        auth_token = settings.TWILIO_AUTH_TOKEN
        if not (account_sid and auth_token):
            raise DeliveryError("Twilio is not configured: set TWILIO_ACCOUNT_SID and _AUTH_TOKEN.")
        sender: dict[str, str] = {}
        if settings.TWILIO_FROM_NUMBER:
            sender["from_"] = settings.TWILIO_FROM_NUMBER
        elif settings.TWILIO_MESSAGING_SERVICE_SID:
            sender["messaging_service_sid"] = settings.TWILIO_MESSAGING_SERVICE_SID
        else:
            raise DeliveryError(
                "Twilio has no sender: set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID."
            )
        client = Client(account_sid, auth_token, http_client=self.http_client)
        try:
            created = client.messages.create(to=message.recipient, body=message.body_text, **sender)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _classify_twilio_error(exc) from exc
        except OSError as exc:
            # requests' errors (connection, timeout) are OSErrors.
            raise DeliveryError(f"Twilio unreachable: {_describe(exc)}") from exc
        except TwilioException as exc:
            raise DeliveryError(f"Twilio client error: {type(exc).__name__}") from exc
        sid: str = created.sid
        return sid


def _classify_twilio_error(exc: TwilioRestException | TwilioServiceException) -> DeliveryError:
    status = int(exc.status or 0)
    code = exc.code
    detail = getattr(exc, "msg", None) or getattr(exc, "detail", None) or ""
    # Twilio's texts repeat the number; the recipient is on the message row already.
    detail = _PHONE_NUMBER.sub("[number]", str(detail))
    known = TWILIO_PERMANENT_CODES.get(code) if isinstance(code, int) else None
    text = f"Twilio answered {status}, error {code}: {known or detail}".rstrip(": ")
    if status == 429 or status >= 500:
        return DeliveryError(text)
    if known:
        return PermanentDeliveryError(text)
    if status in _TWILIO_CONFIGURATION_STATUSES:
        return DeliveryError(f"{text} (check the Twilio account settings)")
    if 400 <= status < 500:
        return PermanentDeliveryError(text)
    return DeliveryError(text)


class ConsoleSmsBackend:
    """Prints each SMS to standard output, as Django's console email backend does for email: the
    embedded set-up has no SMS provider, and the person trying it reads the code there (links
    are masked: the Outbox page has them).

    With DEBUG off, standard output is a server log, where one-time codes, link tokens and
    mobile numbers must never appear: the text is then printed with its codes and links masked,
    the number shortened to its last digits, and a warning says that no SMS provider is
    configured (the start-up check refuses this configuration; this is for a process that
    skipped it)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def send(self, message: Message) -> str:
        text = console_mask()(message.body_text)
        if settings.DEBUG and text != message.body_text:
            outbox = f"{settings.SITE_URL}{reverse('notifications:outbox')}"
            text += f"\n(Links are masked here: open them from {outbox})"
        recipient = message.recipient
        if not settings.DEBUG:
            recipient = f"{MASK}{recipient[-2:]}"
            logger.warning(
                "SMS message %s was only printed: no SMS provider is configured "
                "(set TWILIO_ACCOUNT_SID or SMS_BACKEND)",
                message.pk,
            )
        rule = "-" * 72
        self.stream.write(
            f"{rule}\nSMS to {recipient} (message {message.pk}, {message.template}, "
            f"{message.language})\n{rule}\n{text}\n{rule}\n"
        )
        self.stream.flush()
        return f"console-{message.pk}"


_URL = re.compile(r"https?://\S+")
_CODE = re.compile(r"\d{4,}")
MASK = "••••••"


def mask_codes_and_links(text: str) -> str:
    """``text`` with links and one-time codes hidden: enough to tell what a message was."""
    return _CODE.sub(MASK, _URL.sub("[link]", text))


def console_mask() -> Callable[[str], str]:
    """What the console backends hide: link tokens in development, codes and links otherwise."""
    return mask_secrets if settings.DEBUG else mask_codes_and_links


class OutboxSmsBackend:
    """Sends nothing: the message row is the SMS, read on the outbox page (demo installations)."""

    def send(self, message: Message) -> str:
        return f"outbox-{message.pk}"


def get_backend(channel: str) -> Backend:
    """A backend for ``channel``, built from the settings as they are now (tests override them)."""
    if channel == Channel.EMAIL:
        return EmailBackend()
    if channel == Channel.SMS:
        backend: Backend = import_string(settings.SMS_BACKEND)()
        return backend
    raise ValueError(f"No backend for channel {channel!r}")
