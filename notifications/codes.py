"""SMS one-time codes, the second factor of guest links and of shares: one mechanism, so that a
fix lands once.

A code is bound to a *holder* row: a guest link, or a share recipient (the "bucket") and one of
its users. The holder row carries the failure and sent counters; the codes are rows of the
feature's code model, each with ``code_hash``, ``created_at``, ``expires_at``, ``used_at`` and
``replaced_at``.

- :func:`issue` texts a new code. Under the holder row's lock (``select_for_update``; SQLite
  serializes write transactions anyway) it refuses a closed holder, waits the resend cooldown
  after the last code, stops at the cap, replaces the codes still open, stores only the new
  code's keyed digest with its expiry, counts it, queues the SMS in the outbox and audits it: one
  transaction. A new code never resets the failure count.
- :func:`verify` checks what was typed under the same lock: a closed holder takes no guess; the
  typed code's digest is compared in constant time with the newest open code's; a right code is
  spent by a conditional UPDATE (single use: a second request with it spends nothing); a wrong
  one is counted, and the guess that reaches the limit calls the feature's ``at_limit`` (a link
  locks by its count alone; a share recipient is blocked). Concurrent guesses queue on the lock
  and each sees the count the previous one left, so no more guesses than the limit are checked.
  It returns a :class:`Check` instead of raising, so that the count and its audit events commit
  before the feature turns the outcome into its refusal.

What differs between the features is a :class:`CodePolicy`: which row to lock, what binds a code
to it, what closes it, what happens at the limit, and which audit actions to record. This app
imports no feature app: the features pass their rows and callbacks in.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar, cast

from django.db import models, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import ngettext

from notifications.models import Channel
from notifications.services import queue_message
from portal.digests import secret_digest

SMS_CODE_DIGITS = 6
SMS_TEMPLATE = "sms_code"
_SPACING = re.compile(r"[\s-]+")


def new_code() -> str:
    return f"{secrets.randbelow(10**SMS_CODE_DIGITS):0{SMS_CODE_DIGITS}d}"


def normalize_code(text: str) -> str:
    """What the person typed, without spaces or dashes ("123 456")."""
    return _SPACING.sub("", text or "")


def is_code_shaped(code: str) -> bool:
    """Six digits (after :func:`normalize_code`): anything else is not a guess at all."""
    return code.isdigit() and len(code) == SMS_CODE_DIGITS


def resend_wait(last_sent_at: datetime | None, cooldown_seconds: int, now: datetime) -> int:
    """Whole seconds before another code may be sent (0: now)."""
    if last_sent_at is None:
        return 0
    waited = (now - last_sent_at).total_seconds()
    if waited >= cooldown_seconds:
        return 0
    return max(1, int(cooldown_seconds - waited + 0.999))


def resend_wait_message(seconds: int) -> str:
    return ngettext(
        "We just sent a code. Wait %(seconds)d second before asking for a new one.",
        "We just sent a code. Wait %(seconds)d seconds before asking for a new one.",
        seconds,
    ) % {"seconds": seconds}


# --- The policy: what a feature says about its codes ---------------------------------------------


class SentCode(Protocol):
    """The fields of a code row read here: every feature's code model has them (with
    ``expires_at``, ``used_at`` and ``replaced_at``, which the queries below filter on)."""

    pk: Any
    code_hash: str
    created_at: datetime


def _never(_holder: models.Model) -> bool:
    return False


# The feature's holder model (GuestLink, ShareRecipient): the callbacks and the results name it.
Holder = TypeVar("Holder", bound=models.Model)


@dataclass(frozen=True)
class CodePolicy(Generic[Holder]):
    """How one feature's codes differ. ``audit(holder, action, *, failed=False, **details)``
    records one event in the caller's transaction (the feature binds request and actor)."""

    # Exactly the holder row (a queryset, so the feature chooses what to select with it). Only
    # the holder's own row is locked.
    holder: models.QuerySet[Holder]
    code_model: type[models.Model]
    # The fields that bind a code to its holder, for finding and for creating codes:
    # {"link": link}, or {"recipient": recipient, "user": user}.
    owner: Mapping[str, Any]
    # The digest's purpose: it binds the code to its holder, so that it is worth nothing
    # elsewhere.
    purpose: str
    max_failures: int
    audit: Callable[..., None]
    sent_action: str
    wrong_action: str
    # The wrong-code event's detail that says this guess reached the limit ("locked", "blocked").
    limit_detail: str
    # Under the lock: True when the holder takes no code, neither sent nor checked.
    closed: Callable[[Holder], bool] = _never
    # The guess that reaches the limit, under the lock, before it is audited: what the limit
    # does besides the count (block the recipient and retire its codes). None: the count alone
    # closes the holder (a guest link's state is derived from it).
    at_limit: Callable[[Holder, datetime], None] | None = None
    # A right code resets the count ("wrong codes in a row"), or leaves it.
    reset_failures_on_success: bool = False
    verified_action: str | None = None
    limit_action: str | None = None
    failures_field: str = "code_failures"
    sent_field: str = "codes_sent"

    @property
    def codes(self) -> models.QuerySet[models.Model]:
        """Every code of this holder, open or not."""
        return self.code_model._default_manager.filter(**self.owner)

    def digest(self, code: str) -> str:
        # An HMAC, not argon2: a six-digit code lives minutes behind a failure limit (and, for
        # links, a guess throttle), so online guessing is what matters and the limit stops it.
        # A dump without SECRET_KEY cannot test codes at all; with the key, argon2 would only
        # slow a search of a million codes that expire within minutes anyway.
        return secret_digest(code, purpose=self.purpose)

    def _holder_row(self, holder: models.Model) -> models.QuerySet[models.Model]:
        return type(holder)._default_manager.filter(pk=holder.pk)


def current_code(policy: CodePolicy[Any], now: datetime | None = None) -> SentCode | None:
    """The newest code that may still be entered (unused, not replaced, not expired)."""
    now = now or timezone.now()
    return _newest(
        policy.codes.filter(used_at__isnull=True, replaced_at__isnull=True, expires_at__gt=now)
    )


def _newest(codes: models.QuerySet[models.Model]) -> SentCode | None:
    # Rows of policy.code_model, whose codes are created with a code_hash (issue below).
    return cast(SentCode | None, codes.order_by("-created_at", "-pk").first())


def _lock(policy: CodePolicy[Holder]) -> Holder:
    return policy.holder.select_for_update(of=("self",)).get()


# --- Issuing --------------------------------------------------------------------------------------


class NotIssued(Exception):
    """No code was sent; the feature says why in its own words. ``holder``: the locked row."""

    def __init__(self, holder: models.Model):
        self.holder = holder
        super().__init__(type(self).__name__)


class HolderClosed(NotIssued):
    """The holder takes no code (a link that no longer opens, a blocked recipient)."""


class CapReached(NotIssued):
    """As many codes as the cap allows were sent."""


class TooSoon(NotIssued):
    """Within the cooldown after the last code; ``wait`` in seconds."""

    def __init__(self, holder: models.Model, wait: int):
        super().__init__(holder)
        self.wait = wait

    @property
    def message(self) -> str:
        return resend_wait_message(self.wait)


@dataclass(frozen=True)
class Issued(Generic[Holder]):
    expires_at: datetime
    holder: Holder


def issue(
    policy: CodePolicy[Holder],
    *,
    to: str,
    language: str,
    concerning: tuple[str, Any],
    validity: timedelta,
    resend_seconds: int,
    cap: int,
    cap_window: timedelta | None = None,
) -> Issued[Holder]:
    """Text a new code to ``to``, replacing the holder's open codes. ``cap`` codes at most: in
    ``cap_window`` (counted from this owner's codes), or with None in the holder's life (its
    sent counter). Raises a :class:`NotIssued`; ValidationError from the outbox for a number
    that cannot receive SMS. Either way nothing is stored."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        # The lock serializes concurrent requests for one holder, so the cooldown and the cap
        # hold.
        holder = _lock(policy)
        if policy.closed(holder):
            raise HolderClosed(holder)
        codes = policy.codes
        last = _newest(codes)
        wait = resend_wait(last.created_at if last else None, resend_seconds, now)
        if wait:
            raise TooSoon(holder, wait)
        sent = getattr(holder, policy.sent_field)
        if cap_window is None:
            counted = sent
        else:
            counted = codes.filter(created_at__gt=now - cap_window).count()
        if counted >= cap:
            raise CapReached(holder)
        codes.filter(used_at__isnull=True, replaced_at__isnull=True).update(replaced_at=now)
        code = new_code()
        expires_at = now + validity
        policy.code_model._default_manager.create(
            **policy.owner, code_hash=policy.digest(code), expires_at=expires_at
        )
        policy._holder_row(holder).update(**{policy.sent_field: F(policy.sent_field) + 1})
        setattr(holder, policy.sent_field, sent + 1)
        queue_message(
            channel=Channel.SMS,
            to=to,
            template=SMS_TEMPLATE,
            context={"code": code, "minutes": int(validity.total_seconds() // 60)},
            language=language,
            concerning=concerning,
        )
        policy.audit(holder, policy.sent_action, sent=sent + 1)
    return Issued(expires_at=expires_at, holder=holder)


# --- Checking -------------------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    VERIFIED = "verified"
    # Wrong, and counted.
    WRONG = "wrong"
    # No open code to guess against (none sent, expired, replaced or already used): not a
    # failure, but nothing opens either.
    NO_CODE = "no_code"
    # The holder takes no guess (locked, blocked, ended): nothing was checked or counted.
    CLOSED = "closed"


@dataclass(frozen=True)
class Check(Generic[Holder]):
    outcome: Outcome
    # The locked row as the check left it.
    holder: Holder
    failures: int
    reached_limit: bool = False
    # The policy's limit, so that both features say how many wrong codes are still allowed.
    max_failures: int = 0

    @property
    def verified(self) -> bool:
        return self.outcome == Outcome.VERIFIED

    @property
    def attempts_left(self) -> int:
        """Wrong codes still allowed before the limit (0 once it is reached)."""
        return max(0, self.max_failures - self.failures)


def verify(policy: CodePolicy[Holder], code: str) -> Check[Holder]:
    """Check ``code`` (normalized and code-shaped: the feature turns anything else away before
    it is a guess) under the holder's lock, and spend or count it."""
    now = timezone.now()
    field = policy.failures_field
    with transaction.atomic(durable=True):
        # Checked under the row's lock: concurrent guesses queue here, each sees the count the
        # previous one left, and none is checked once the holder is closed.
        holder = _lock(policy)

        def result(outcome: Outcome, reached: bool = False) -> Check[Holder]:
            return Check(outcome, holder, getattr(holder, field), reached, policy.max_failures)

        if policy.closed(holder):
            return result(Outcome.CLOSED)
        current = current_code(policy, now)
        if current is None:
            return result(Outcome.NO_CODE)
        if constant_time_compare(policy.digest(code), current.code_hash):
            # Single use, by a conditional UPDATE: a request that read the same code as current
            # a moment ago spends nothing.
            spent = policy.code_model._default_manager.filter(
                pk=current.pk, used_at__isnull=True
            ).update(used_at=now)
            if not spent:
                return result(Outcome.NO_CODE)
            if policy.reset_failures_on_success:
                policy._holder_row(holder).update(**{field: 0})
                setattr(holder, field, 0)
            if policy.verified_action:
                policy.audit(holder, policy.verified_action)
            return result(Outcome.VERIFIED)
        policy._holder_row(holder).update(**{field: F(field) + 1})
        holder.refresh_from_db(fields=[field])
        failures = getattr(holder, field)
        reached = failures >= policy.max_failures
        if reached and policy.at_limit is not None:
            policy.at_limit(holder, now)
        policy.audit(
            holder,
            policy.wrong_action,
            failed=True,
            failures=failures,
            **{policy.limit_detail: reached},
        )
        if reached and policy.limit_action:
            policy.audit(holder, policy.limit_action, failed=True, failures=failures)
        return result(Outcome.WRONG, reached)
