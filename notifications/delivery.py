"""Sending messages: claim them, send them, record what happened.

Workers never lock a row across the network call. Instead each step is a conditional UPDATE:

1. *Claim*: of the messages a task was handed, those QUEUED or FAILED and due, or SENDING with an
   expired lease (their worker died) -> SENDING, attempts + 1, leased for
   ``NOTIFICATIONS_LEASE_SECONDS`` and marked with this claim's random token, in one UPDATE. The
   token reads back exactly the rows that UPDATE took: of two workers handed the same message, the
   database lets exactly one take it; the other sends nothing.
2. *Send* each claimed message through its channel's backend, one after the other (the email
   backend keeps its connection to the mail server).
3. *Record*: SENT, FAILED (due again after an exponential, jittered back-off) or DEAD, only where
   the row is still SENDING with our attempt number, so a worker whose lease ran out and was
   taken over cannot overwrite the newer attempt's outcome. Failures are recorded as they happen;
   the messages sent are recorded together, in one transaction, when the batch ends.

A batch that has run for half a lease hands its unsent messages back (QUEUED again, the attempt
not counted) for another task, so a slow provider cannot make a lease run out under a message that
is still waiting its turn.

A worker killed between 1 and 3 leaves its rows SENDING; after the lease the periodic re-queue
hands them to another worker. Those messages may then go out twice, which is the price of never
losing one: a mail server or Twilio cannot take part in our transaction. Recording the sent ones
per batch rather than per message widens that window to one batch (a fraction of a second of
email), and saves a commit per message.

Once sent, a message's body is erased after ``NOTIFICATIONS_BODY_RETENTION_DAYS``
(``erase_sent_bodies``).
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from audit.models import Action, Outcome
from audit.services import record
from notifications.backends import DeliveryError, PermanentDeliveryError, get_backend
from notifications.encryption import readable
from notifications.models import Message, MessageStatus
from portal.logging import mask_secrets

logger = logging.getLogger(__name__)

ERROR_MAX_LENGTH = 1000
SYSTEM_ACTOR = "system"
UNREADABLE_ERROR = (
    "The message cannot be decrypted: the key it was encrypted with is neither OUTBOX_KEY "
    "(or SECRET_KEY) nor among their fallbacks."
)


class DeliveryResult(str):
    """The status a delivery left the message in, as a plain string ("sent", "failed", ...).

    It also says whether this call claimed the message (``claimed``) and, after a retryable
    failure or a hand-back, in how many seconds the next attempt is due (``retry_in``), so that
    the Celery task schedules exactly one follow-up per message, and only the worker that failed
    (or handed it back) does."""

    claimed: bool
    retry_in: float | None

    def __new__(
        cls, status: str, *, claimed: bool, retry_in: float | None = None
    ) -> DeliveryResult:
        result = super().__new__(cls, status)
        result.claimed = claimed
        result.retry_in = retry_in
        return result


def backoff_seconds(attempts: int) -> float:
    """Wait before attempt ``attempts + 1``: base * 2**(attempts-1), at most the ceiling, times a
    random factor in [0.5, 1.5] so that messages failed together (a mail server outage) are not
    all retried in the same second."""
    base = settings.NOTIFICATIONS_BACKOFF_BASE
    ceiling = settings.NOTIFICATIONS_BACKOFF_CEILING
    exponent = min(max(attempts - 1, 0), 32)  # 2**32 * base is past any ceiling already
    growth: int = 2**exponent
    return min(ceiling, base * growth) * random.uniform(0.5, 1.5)


def deliver(message_id: int) -> DeliveryResult:
    """Try to send message ``message_id`` once; see ``deliver_batch``."""
    return deliver_batch([message_id])[message_id]


def deliver_batch(message_ids: Iterable[int]) -> dict[int, DeliveryResult]:
    """Try to send each of ``message_ids`` once. Returns, for each id, the status it is left in.
    A message this call could not claim (another worker has it, it is not due, or it is already
    sent or dead) is not sent; its current status is returned ("" if there is no such message).
    """
    ids = list(dict.fromkeys(message_ids))
    claimed = _claim(ids)
    results: dict[int, DeliveryResult] = {}
    not_claimed = set(ids).difference(message.pk for message in claimed)
    if not_claimed:
        current = dict(Message.objects.filter(pk__in=not_claimed).values_list("pk", "status"))
        for message_id in not_claimed:
            results[message_id] = DeliveryResult(current.get(message_id, ""), claimed=False)

    hand_back_after = time.monotonic() + settings.NOTIFICATIONS_LEASE_SECONDS / 2
    sent: list[tuple[Message, str]] = []
    try:
        for position, message in enumerate(claimed):
            if time.monotonic() > hand_back_after:
                results.update(_hand_back(claimed[position:]))
                break
            outcome = _attempt(message)
            if isinstance(outcome, DeliveryResult):
                results[message.pk] = outcome
            else:
                sent.append((message, outcome))
    finally:
        # Also when something unforeseen stops the batch: what went out is recorded as sent.
        results.update(_mark_sent(sent))
    return results


def _claim(message_ids: list[int]) -> list[Message]:
    if not message_ids:
        return []
    now = timezone.now()
    claim = secrets.token_hex(16)
    claimable = Q(status__in=[MessageStatus.QUEUED, MessageStatus.FAILED], next_attempt_at__lte=now)
    claimable |= Q(status=MessageStatus.SENDING, lease_until__lt=now)
    taken = Message.objects.filter(claimable, pk__in=message_ids).update(
        status=MessageStatus.SENDING,
        lease_until=now + timedelta(seconds=settings.NOTIFICATIONS_LEASE_SECONDS),
        attempts=F("attempts") + 1,
        claim=claim,
        updated_at=now,
    )
    if not taken:
        return []
    return list(Message.objects.filter(pk__in=message_ids, claim=claim).order_by("pk"))


def _attempt(message: Message) -> DeliveryResult | str:
    """Send one claimed message: the provider's id when it went out, else the outcome recorded."""
    attempts = message.attempts
    if not all(readable(text) for text in (message.subject, message.body_text, message.body_html)):
        # No retry can help until an administrator configures the key again (then "Retry
        # delivery" in the admin sends it); sending the notice instead would be worse.
        return _give_up(message, UNREADABLE_ERROR)
    max_attempts = settings.NOTIFICATIONS_MAX_ATTEMPTS
    if attempts > max_attempts:
        # Only reachable through expired leases: a message whose sender dies every time (a crash
        # in the backend, an out-of-memory kill) must not be picked up forever.
        return _give_up(
            message,
            f"Gave up after {attempts - 1} attempts; the last sender stopped responding.",
        )

    try:
        provider_id = get_backend(message.channel).send(message)
    except PermanentDeliveryError as exc:
        return _give_up(message, _error_text(message, exc))
    except Exception as exc:
        # DeliveryError is the expected case; anything else (a misconfigured backend, a bug) is
        # retried too, so that fixing the configuration lets the message go out.
        if not isinstance(exc, DeliveryError):
            logger.exception(
                "Message %s: unexpected error in the %s backend", message.pk, message.channel
            )
        error = _error_text(message, exc)
        if attempts >= max_attempts:
            return _give_up(message, f"Gave up after {attempts} attempts: {error}")
        return _retry_later(message, error)
    return str(provider_id or "")


def _still_ours(message: Message) -> QuerySet[Message]:
    """The row while it is still SENDING with this claim's attempt number."""
    return Message.objects.filter(
        pk=message.pk, status=MessageStatus.SENDING, attempts=message.attempts
    )


def _lost_lease(message: Message) -> DeliveryResult:
    current = Message.objects.filter(pk=message.pk).values_list("status", flat=True).first()
    logger.warning(
        "Message %s: attempt %s outlived its lease and another worker took over; "
        "the recipient may receive it twice",
        message.pk,
        message.attempts,
    )
    return DeliveryResult(current or "", claimed=True)


def _mark_sent(sent: list[tuple[Message, str]]) -> dict[int, DeliveryResult]:
    results: dict[int, DeliveryResult] = {}
    if not sent:
        return results
    now = timezone.now()
    with transaction.atomic(durable=True):
        for message, provider_id in sent:
            updated = _still_ours(message).update(
                status=MessageStatus.SENT,
                sent_at=now,
                provider_id=provider_id[:255],
                lease_until=None,
                last_error="",
                updated_at=now,
            )
            if updated:
                results[message.pk] = DeliveryResult(MessageStatus.SENT, claimed=True)
            else:
                results[message.pk] = _lost_lease(message)
    for message, _provider_id in sent:
        if results[message.pk] == MessageStatus.SENT.value:
            logger.info(
                "Message %s sent by %s (attempt %s)", message.pk, message.channel, message.attempts
            )
    return results


def _hand_back(messages: list[Message]) -> dict[int, DeliveryResult]:
    """Give unsent claimed messages back, as if this attempt had not been made: due at once."""
    results: dict[int, DeliveryResult] = {}
    now = timezone.now()
    for message in messages:
        updated = _still_ours(message).update(
            status=MessageStatus.QUEUED,
            attempts=F("attempts") - 1,
            next_attempt_at=now,
            lease_until=None,
            updated_at=now,
        )
        results[message.pk] = (
            DeliveryResult(MessageStatus.QUEUED, claimed=True, retry_in=0)
            if updated
            else _lost_lease(message)
        )
    logger.warning(
        "Handed %s messages back after half a lease (%s s) spent on their batch",
        len(messages),
        settings.NOTIFICATIONS_LEASE_SECONDS // 2,
    )
    return results


def _retry_later(message: Message, error: str) -> DeliveryResult:
    now = timezone.now()
    delay = backoff_seconds(message.attempts)
    updated = _still_ours(message).update(
        status=MessageStatus.FAILED,
        next_attempt_at=now + timedelta(seconds=delay),
        lease_until=None,
        last_error=error,
        updated_at=now,
    )
    if not updated:
        return _lost_lease(message)
    logger.warning(
        "Message %s: attempt %s failed, next in %.0f s: %s",
        message.pk,
        message.attempts,
        delay,
        error,
    )
    return DeliveryResult(MessageStatus.FAILED, claimed=True, retry_in=delay)


def _give_up(message: Message, reason: str) -> DeliveryResult:
    now = timezone.now()
    with transaction.atomic(durable=True):
        updated = _still_ours(message).update(
            status=MessageStatus.DEAD, lease_until=None, last_error=reason, updated_at=now
        )
        if updated:
            record(
                action=Action.MESSAGE_DEAD,
                actor_label=SYSTEM_ACTOR,
                outcome=Outcome.SERIOUS_FAILURE,
                target_type="message",
                target_id=message.pk,
                details={
                    "channel": message.channel,
                    "template": message.template,
                    "attempts": message.attempts,
                    "error": reason,
                },
            )
    if not updated:
        return _lost_lease(message)
    logger.error(
        "Message %s is undeliverable after %s attempts: %s", message.pk, message.attempts, reason
    )
    return DeliveryResult(MessageStatus.DEAD, claimed=True)


def _error_text(message: Message, exc: BaseException) -> str:
    """What went wrong, for the admin, the log and the audit trail: never the body, and without
    the recipient's address (the row names it; the trail and the log need not)."""
    text = str(exc) or type(exc).__name__
    if message.recipient:
        text = text.replace(message.recipient, "[recipient]")
    text = mask_secrets(text)
    return text[:ERROR_MAX_LENGTH]


def erase_sent_bodies(*, older_than_days: int) -> int:
    """Blank the bodies of messages sent more than ``older_than_days`` ago. A sent message's body
    is the only plain copy of the links and codes it carried; once delivered, the outbox need not
    keep it for a database dump to find. Returns how many were erased."""
    if older_than_days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=older_than_days)
    return (
        Message.objects.filter(status=MessageStatus.SENT, sent_at__lt=cutoff)
        .exclude(body_text="", body_html="")
        .update(body_text="", body_html="", updated_at=timezone.now())
    )
