"""Queueing messages, and the administrator's retry.

A feature app calls ``queue_message`` inside its own transaction, after its own validation or as
part of it: an invalid address raises ValidationError before anything is stored, and the message
row commits with the action it announces, or not at all. Delivery starts after commit.

Templates live in ``templates/notifications/<template>/``: ``subject.txt``, ``body.txt`` and
``body.html`` for email, ``body.txt`` for SMS (rendered with ``channel`` = "sms", so a template
written for both keeps its SMS short). Every template also sees ``SITE_NAME`` and ``SITE_URL``.
The context each one reads:

- ``share_notification``: ``sender_name``, ``link``, ``patient_initials``, ``study_description``,
  ``study_date``, or ``studies`` (a list of dicts with those three keys) for several; ``message``,
  ``urgent``, ``expires_at`` (None: unlimited).
- ``guest_link``: ``sender_name``, ``link``, ``message``, ``expires_at``, ``max_uses``,
  ``password_required`` and ``login_required``. The password itself is never sent.
- ``email_confirmation``: ``sender_name``, ``link`` (the confirmation link), ``expires_at``.
- ``sms_code``: ``code``, ``minutes`` (10 if missing).
- ``registration_invitation``: ``sender_name``, ``email`` (the address to register with),
  ``link``, ``patient_initials``, ``study_description``, ``study_date``, ``message``.

Names of patients never go into a subject line (mail servers log subjects): initials only.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import EmailValidator
from django.db import transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from audit.models import Action
from audit.services import record
from notifications.languages import supported_language
from notifications.models import Channel, Message, MessageStatus
from notifications.tasks import publish
from portal.phones import normalize_mobile

logger = logging.getLogger(__name__)

# The subject field sets its max_length (an optional argument of the text field it is).
SUBJECT_MAX_LENGTH = cast(int, Message._meta.get_field("subject").max_length)
# Context keys whose values are secrets (a link's token, a one-time code): the rendered body
# needs them, the stored context does not.
SECRET_CONTEXT_WORDS = ("link", "url", "code", "token", "password", "secret", "otp")
REDACTED = "[redacted]"

_email_validator = EmailValidator(message=gettext_lazy("“%(value)s” is not a valid email address."))


# --- Addresses --------------------------------------------------------------------------------


def validate_recipient(channel: str, to: str) -> str:
    """The address in the form it is stored and sent to, or ValidationError naming the problem."""
    text = (to or "").strip()
    if channel == Channel.EMAIL:
        if not text:
            raise ValidationError(_("An email address is required."), code="required")
        _email_validator(text)
        return text
    if channel == Channel.SMS:
        if not text:
            raise ValidationError(_("A mobile phone number is required."), code="required")
        return normalize_mobile(text)
    raise ValueError(f"Unknown channel {channel!r}")


# --- Rendering --------------------------------------------------------------------------------


def render_message(
    *, channel: str, template: str, context: Mapping[str, Any], language: str
) -> tuple[str, str, str]:
    """Subject, text and HTML of a message, written in ``language``. SMS have only a text."""
    values = {
        "SITE_NAME": settings.SITE_NAME,
        "SITE_URL": settings.SITE_URL,
        **context,
        "channel": str(channel),
    }
    with translation.override(language):
        body_text = render_to_string(f"notifications/{template}/body.txt", values).strip()
        if channel == Channel.SMS:
            return "", body_text, ""
        rendered_subject = render_to_string(f"notifications/{template}/subject.txt", values)
        body_html = render_to_string(f"notifications/{template}/body.html", values)
    # One line, whatever the template's layout: a newline in a header would end it.
    subject = Truncator(" ".join(rendered_subject.split())).chars(SUBJECT_MAX_LENGTH)
    return subject, body_text + "\n", body_html


# GSM 03.38: characters of the basic set cost one septet, those of the extension table two.
# Anything else makes the whole SMS UCS-2, at 70 characters a segment instead of 160.
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = set("^{}\\[~]|€")


def sms_segments(text: str) -> int:
    """How many SMS segments ``text`` is billed and delivered as."""
    if all(char in _GSM_BASIC or char in _GSM_EXTENSION for char in text):
        septets = sum(2 if char in _GSM_EXTENSION else 1 for char in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def stored_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context as kept on the row: JSON-ready, secrets replaced (at any depth)."""

    def redact(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                str(key): REDACTED
                if any(word in str(key).lower() for word in SECRET_CONTEXT_WORDS)
                else redact(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [redact(item) for item in value]
        return value

    # Dates and datetimes become ISO strings, as the JSON column will give them back.
    stored: dict[str, Any] = redact(json.loads(json.dumps(dict(context), cls=DjangoJSONEncoder)))
    return stored


# --- Queueing ---------------------------------------------------------------------------------


def queue_message(
    *,
    channel: str,
    to: str,
    template: str,
    context: Mapping[str, Any],
    language: str,
    concerning: tuple[str, str | int] = ("", ""),
) -> Message:
    """Validate the address, render the message in ``language`` and store it QUEUED in the
    caller's transaction; it is handed to a worker once that transaction commits."""
    return queue_messages(
        channel=channel,
        recipients=[to],
        template=template,
        context=context,
        language=language,
        concerning=concerning,
    )[0]


def queue_messages(
    *,
    channel: str,
    recipients: Sequence[str],
    template: str,
    context: Mapping[str, Any],
    language: str,
    concerning: tuple[str, str | int] = ("", ""),
) -> list[Message]:
    """The same message to several recipients, one row each, in one INSERT. Every address is
    checked first; one invalid address stores nothing and the error lists each bad one."""
    channel = Channel(channel)
    addresses: list[str] = []
    errors: list[ValidationError] = []
    for to in recipients:
        try:
            addresses.append(validate_recipient(channel, to))
        except ValidationError as exc:
            errors.append(exc)
    if errors:
        raise ValidationError(errors)
    if not addresses:
        return []
    language = supported_language(language) or settings.LANGUAGE_CODE
    subject, body_text, body_html = render_message(
        channel=channel, template=template, context=context, language=language
    )
    if channel == Channel.SMS and sms_segments(body_text) > 2:
        # Worth a template fix, not a failure: long SMS still arrive, in several parts.
        logger.warning(
            "SMS template %s in %s is %s segments long", template, language, sms_segments(body_text)
        )
    now = timezone.now()
    concerning_type, concerning_id = concerning
    kept_context = stored_context(context)
    rows = [
        Message(
            channel=channel,
            recipient=address,
            language=language,
            template=template,
            context=kept_context,
            subject=subject,
            body_text=body_text,
            body_html=body_html,
            concerning_type=str(concerning_type or ""),
            concerning_id=str(concerning_id or ""),
            status=MessageStatus.QUEUED,
            created_at=now,
            next_attempt_at=now,
        )
        for address in addresses
    ]
    with transaction.atomic():
        if len(rows) == 1:
            rows[0].save(force_insert=True)
            messages = rows
        else:
            messages = Message.objects.bulk_create(rows)
        publish_on_commit([message.id for message in messages])
    return messages


class _WaitingForCommit(threading.local):
    """Messages queued in this thread's transaction, waiting for it to commit. Each
    ``publish_on_commit`` call is a numbered group with its own on-commit callback; Django runs a
    committed transaction's callbacks in the order they were registered, so the first to run
    publishes its group and every later one of the transaction at once. An earlier group still
    waiting then belonged to a transaction that rolled back: its callback was dropped with it,
    and so is the group."""

    def __init__(self) -> None:
        self.groups: dict[int, list[int]] = {}
        self.numbers = itertools.count()


_waiting = _WaitingForCommit()


def publish_on_commit(message_ids: Sequence[int]) -> None:
    """Publish these messages once the current transaction commits, together with the others it
    queued: a share to twenty people is one delivery task, not twenty."""
    number = next(_waiting.numbers)
    _waiting.groups[number] = list(message_ids)
    transaction.on_commit(partial(_publish_committed, number))


def _publish_committed(number: int) -> None:
    groups = _waiting.groups
    if number not in groups:
        return  # published with an earlier group of its transaction
    committed = [message_id for key, ids in groups.items() if key >= number for message_id in ids]
    groups.clear()
    # A group queued in a savepoint that rolled back may be among them: its worker finds no such
    # message and sends nothing.
    publish(committed)


# --- Administration ---------------------------------------------------------------------------

RETRYABLE_STATUSES = (MessageStatus.FAILED, MessageStatus.DEAD)


def retry_messages(
    *,
    message_ids: Iterable[int],
    actor: AbstractBaseUser | None,
    request: HttpRequest | None = None,
) -> list[int]:
    """Queue failed or dead messages again with a fresh set of attempts; other messages are left
    alone. Each retry is audited. Returns the ids queued again."""
    retried: list[int] = []
    with transaction.atomic(durable=True):
        # Locked so that a worker's concurrent claim or a second administrator's click waits, and
        # then sees the status this transaction leaves.
        messages = (
            Message.objects.select_for_update()
            .filter(pk__in=list(message_ids), status__in=RETRYABLE_STATUSES)
            .order_by("pk")
        )
        now = timezone.now()
        for message in messages:
            previous_status, previous_attempts = message.status, message.attempts
            message.status = MessageStatus.QUEUED
            message.attempts = 0
            message.next_attempt_at = now
            message.lease_until = None
            message.save(
                update_fields=["status", "attempts", "next_attempt_at", "lease_until", "updated_at"]
            )
            record(
                action=Action.MESSAGE_RETRIED,
                actor=actor,
                request=request,
                target_type="message",
                target_id=message.pk,
                details={
                    "channel": message.channel,
                    "template": message.template,
                    "previous_status": previous_status,
                    "attempts": previous_attempts,
                },
            )
            retried.append(message.pk)
        publish_on_commit(retried)
    return retried
