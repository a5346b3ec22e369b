"""The SMS code that opens a share asking for two-factor, its lockout and its unblock (PACSonWEB
"two-factor-authentication": "If the user gives an erroneous OTP 5 times in succession, the
bucket is blocked. The bucket can be unlocked by the Service desk or an admin user of the
sending radiology department").

- A code is six digits (``secrets``), valid ``SHARE_SMS_CODE_MINUTES``, single use, stored as a
  keyed digest bound to the share recipient and the user, and texted to the user's registered
  mobile. Asking again replaces the code, waits ``SHARE_SMS_RESEND_SECONDS`` after the last one,
  sends at most ``SHARE_MAX_SMS_CODES`` per user and share in a day, and never resets the
  failure count.
- The "bucket" is the ShareRecipient row: ``SHARE_MAX_CODE_FAILURES`` wrong codes in a row (by
  any of its users: a group shares one bucket) set ``blocked_at``; a right code resets the count.
  Each guess is checked under the row's lock (``select_for_update``; SQLite serializes write
  transactions), and the block is a conditional UPDATE, so concurrent guesses count exactly up
  to the limit, no guess is checked once it is reached, and the block happens once.
- The right code is remembered in the browser session (``sharing.access``), never elsewhere.
- An administrator of the share's (sending) organization, or a superuser, lifts the block.

Every code sent, wrong code, block, verification and unblock is audited, one event per study of
the share as for its creation and removal, with the recipient's id and never the code. (Detail
keys avoid the words the audit trail redacts: password, code, token.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import Organization, User
from accounts.permissions import Perm
from accounts.tokens import secret_digest
from audit.models import Action
from notifications.codes import (
    is_code_shaped,
    new_code,
    normalize_code,
    resend_wait,
    resend_wait_message,
)
from notifications.models import Channel
from notifications.services import queue_message
from sharing.access import recipients_of, remember_verification, two_factor_entries
from sharing.models import ShareCode, ShareRecipient
from sharing.services.trail import record_share_event
from studies.access import has_perm, organizations_with

SMS_TEMPLATE = "sms_code"
# The cap on codes counts the codes sent to one user for one share in this window: enough for
# any real use, too few to flood a phone, and it frees itself without an administrator.
CODE_CAP_WINDOW = timedelta(hours=24)


def _setting(name: str) -> int:
    # Read at call time, so a changed setting (and the tests' settings fixture) takes effect.
    return int(getattr(settings, name))


def code_validity() -> timedelta:
    return timedelta(minutes=_setting("SHARE_SMS_CODE_MINUTES"))


def resend_cooldown() -> int:
    return _setting("SHARE_SMS_RESEND_SECONDS")


def max_codes() -> int:
    return _setting("SHARE_MAX_SMS_CODES")


def max_failures() -> int:
    return _setting("SHARE_MAX_CODE_FAILURES")


# --- Refusals ----------------------------------------------------------------------------------


class TwoFactorError(Exception):
    """A refusal whose ``message`` is safe to show to the recipient."""

    status = 400

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class ShareUnavailable(TwoFactorError):
    """Not a recipient of this share, or the share was removed or has expired."""

    status = 404

    def __init__(self) -> None:
        super().__init__(_("This share does not exist or has ended."))


class ShareBlocked(TwoFactorError):
    """The recipient's bucket is blocked: only the sending organization can lift it."""

    status = 403


class NoMobile(TwoFactorError):
    """The user has no mobile number the code could be sent to."""


class CodeNotSent(TwoFactorError):
    """Too soon after the last code, or too many codes."""

    status = 429

    def __init__(self, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class CodeRefused(TwoFactorError):
    """A missing, malformed, expired, used or wrong code (the share is not blocked)."""

    status = 403


def blocked_message(recipient: ShareRecipient) -> str:
    return _(
        "Too many wrong codes were entered and this share is blocked. Contact %(organization)s, "
        "who shared it with you: an administrator there can unblock it."
    ) % {"organization": recipient.share.organization.name}


def no_mobile_message() -> str:
    return _(
        "No mobile phone number is registered for your account, so we cannot send you the "
        "code. Ask an administrator of your organization to register your mobile number, then "
        "come back to this page."
    )


# --- Who may ask -------------------------------------------------------------------------------


def find_recipient(*, user: User, recipient_id: int) -> ShareRecipient:
    """The share recipient ``user`` may enter a code for: one whose active entries asking for a
    code lie in a worklist the user sees (their personal worklist, or their group's or
    location's), of a share not removed. Anything else is ShareUnavailable (a 404)."""
    if not (user.is_authenticated and user.is_active):
        raise ShareUnavailable()
    recipient = (
        recipients_of(two_factor_entries(user))
        .filter(pk=recipient_id)
        .select_related("share__organization", "share__sender")
        .first()
    )
    if recipient is None:
        raise ShareUnavailable()
    return recipient


def recipients_without_mobile(users: Iterable[User | None]) -> list[User]:
    """The users among ``users`` who could never receive a share's SMS code: no registered
    mobile number. (For ``share_studies`` to refuse two-factor for them up front.)"""
    return [user for user in users if user is not None and not (user.mobile or "").strip()]


def mobile_hint(user: User) -> str:
    """The last two digits: enough for the user to recognize their phone."""
    mobile = (user.mobile or "").strip()
    return mobile[-2:] if mobile else ""


# --- The code page -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodePage:
    """What the code page shows: who shared, and what the user can do. Nothing about the
    studies or the patient."""

    recipient: ShareRecipient
    organization_name: str
    sender_name: str
    shared_at: datetime
    blocked: bool
    has_mobile: bool
    mobile_hint: str
    code_active: bool
    attempts_left: int


def describe(*, user: User, recipient: ShareRecipient) -> CodePage:
    """The page's content for this user, without side effects."""
    share = recipient.share
    sender = share.sender
    return CodePage(
        recipient=recipient,
        organization_name=share.organization.name,
        sender_name=sender.get_full_name() or sender.get_username(),
        shared_at=share.created_at,
        blocked=recipient.blocked_at is not None,
        has_mobile=bool(mobile_hint(user)),
        mobile_hint=mobile_hint(user),
        code_active=_current_code(recipient, user, timezone.now()) is not None,
        attempts_left=max(0, max_failures() - recipient.code_failures),
    )


# --- Audit -------------------------------------------------------------------------------------


def _audit(
    recipient: ShareRecipient,
    action: str,
    request: HttpRequest | None,
    *,
    actor: User | None = None,
    failed: bool = False,
    **details: Any,
) -> None:
    record_share_event(
        recipient.share,
        action,
        actor=actor,
        request=request,
        failed=failed,
        details={"recipient": recipient.pk, **details},
    )


# --- Codes -------------------------------------------------------------------------------------


def _code_digest(recipient: ShareRecipient, user: User, code: str) -> str:
    # An HMAC, not argon2: a six-digit code lives ten minutes behind a five-failure block, so
    # online guessing is what matters and the block stops it; a dump without SECRET_KEY cannot
    # test codes at all. Bound to the recipient and the user: worth nothing elsewhere.
    return secret_digest(code, purpose=f"share-sms:{recipient.pk}:{user.pk}")


def _current_code(recipient: ShareRecipient, user: User, now: datetime) -> ShareCode | None:
    """The user's newest code for this recipient that may still be entered."""
    return (
        ShareCode.objects.filter(
            recipient=recipient,
            user=user,
            used_at__isnull=True,
            replaced_at__isnull=True,
            expires_at__gt=now,
        )
        .order_by("-created_at", "-pk")
        .first()
    )


@dataclass(frozen=True)
class SentCode:
    expires_at: datetime
    mobile_hint: str


def send_code(*, user: User, recipient: ShareRecipient, request: HttpRequest) -> SentCode:
    """Text a new code to the user's registered mobile (the "Send code" button), replacing any
    earlier one. Refused for a blocked share, within the cooldown after the user's last code
    and past the cap; never resets the failure count."""
    recipient = find_recipient(user=user, recipient_id=recipient.pk)
    if not mobile_hint(user):
        raise NoMobile(no_mobile_message())
    now = timezone.now()
    with transaction.atomic():
        # The row lock serializes concurrent requests for one recipient, so the cooldown and the
        # cap hold (SQLite serializes whole write transactions anyway).
        locked = (
            ShareRecipient.objects.select_for_update()
            .select_related("share__organization")
            .get(pk=recipient.pk)
        )
        if locked.blocked_at is not None:
            raise ShareBlocked(blocked_message(locked))
        mine = ShareCode.objects.filter(recipient=locked, user=user)
        last = mine.order_by("-created_at", "-pk").first()
        wait = resend_wait(last.created_at if last else None, resend_cooldown(), now)
        if wait:
            raise CodeNotSent(resend_wait_message(wait), retry_after=wait)
        if mine.filter(created_at__gt=now - CODE_CAP_WINDOW).count() >= max_codes():
            raise CodeNotSent(
                _(
                    "We sent you too many codes for this share today. Use the newest one, or try "
                    "again tomorrow. If no code arrives, contact %(organization)s."
                )
                % {"organization": locked.share.organization.name}
            )
        mine.filter(used_at__isnull=True, replaced_at__isnull=True).update(replaced_at=now)
        code = new_code()
        expires_at = now + code_validity()
        ShareCode.objects.create(
            recipient=locked,
            user=user,
            code_hash=_code_digest(locked, user, code),
            expires_at=expires_at,
        )
        ShareRecipient.objects.filter(pk=locked.pk).update(codes_sent=F("codes_sent") + 1)
        try:
            queue_message(
                channel=Channel.SMS,
                to=user.mobile,
                template=SMS_TEMPLATE,
                context={"code": code, "minutes": int(code_validity().total_seconds() // 60)},
                language=user.language,
                concerning=("share", locked.share_id),
            )
        except ValidationError:
            # A number that cannot receive SMS is no number: nothing is stored (rolled back).
            raise NoMobile(
                _(
                    "The mobile phone number registered for your account cannot receive SMS. "
                    "Ask an administrator of your organization to correct it."
                )
            ) from None
        _audit(locked, Action.SHARE_CODE_SENT, request, actor=user, sent=locked.codes_sent + 1)
    return SentCode(expires_at=expires_at, mobile_hint=mobile_hint(user))


def verify_code(*, user: User, recipient: ShareRecipient, code: str, request: HttpRequest) -> None:
    """Check the code the user typed; the right one is spent and remembered in this browser
    session (``sharing.access``). Raises CodeRefused for a missing, expired, used or wrong code,
    ShareBlocked once the share is blocked (the wrong code that blocks it included)."""
    recipient = find_recipient(user=user, recipient_id=recipient.pk)
    code = normalize_code(code)
    if not code:
        raise CodeRefused(_("Enter the code we sent you by SMS. No code yet? Select Send code."))
    if not is_code_shaped(code):
        # Not a guess at all: nothing is counted.
        raise CodeRefused(_("Enter the six digits of the code we sent by SMS."))
    now = timezone.now()
    limit = max_failures()
    with transaction.atomic():
        # Checked under the row's lock: concurrent guesses queue here, each sees the count the
        # previous one left, and none is checked once the share is blocked.
        locked = (
            ShareRecipient.objects.select_for_update()
            .select_related("share__organization")
            .get(pk=recipient.pk)
        )
        if locked.blocked_at is not None:
            outcome = "blocked"
        elif (current := _current_code(locked, user, now)) is None:
            # Nothing to guess against: not a failure, but nothing opens either.
            outcome = "no_code"
        elif constant_time_compare(_code_digest(locked, user, code), current.code_hash):
            # Single use, by a conditional UPDATE: a second request with the same code spends
            # nothing.
            spent = ShareCode.objects.filter(pk=current.pk, used_at__isnull=True).update(
                used_at=now
            )
            outcome = "verified" if spent else "no_code"
            if spent:
                ShareRecipient.objects.filter(pk=locked.pk).update(code_failures=0)
                _audit(locked, Action.SHARE_CODE_VERIFIED, request, actor=user)
        else:
            outcome = "wrong"
            ShareRecipient.objects.filter(pk=locked.pk, blocked_at__isnull=True).update(
                code_failures=F("code_failures") + 1
            )
            blocked_now = ShareRecipient.objects.filter(
                pk=locked.pk, blocked_at__isnull=True, code_failures__gte=limit
            ).update(blocked_at=now)
            locked.refresh_from_db(fields=["code_failures", "blocked_at"])
            _audit(
                locked,
                Action.SHARE_WRONG_CODE,
                request,
                actor=user,
                failed=True,
                failures=locked.code_failures,
                blocked=bool(blocked_now),
            )
            if blocked_now:
                # No code sent before the block opens anything after an unblock.
                ShareCode.objects.filter(
                    recipient=locked, used_at__isnull=True, replaced_at__isnull=True
                ).update(replaced_at=now)
                _audit(
                    locked,
                    Action.SHARE_BLOCKED,
                    request,
                    actor=user,
                    failed=True,
                    failures=locked.code_failures,
                )
    # Raised after the transaction: the failure, the block and their audit events must stay.
    if outcome == "verified":
        remember_verification(request, locked)
        return
    if outcome == "blocked" or locked.blocked_at is not None:
        message = blocked_message(locked)
        if outcome == "wrong":
            message = _("Wrong code.") + " " + message
        raise ShareBlocked(message)
    if outcome == "no_code":
        raise CodeRefused(
            _("This code has expired or was already used. Select Send code for a new one.")
        )
    left = max(0, limit - locked.code_failures)
    raise CodeRefused(
        ngettext(
            "Wrong code. %(left)d attempt left before the share is blocked.",
            "Wrong code. %(left)d attempts left before the share is blocked.",
            left,
        )
        % {"left": left}
    )


# --- Unblocking --------------------------------------------------------------------------------


def unblocking_organizations(user: User) -> list[int] | None:
    """The organizations whose blocked shares the user may unblock; None means all
    (superusers: the service desk)."""
    if not (user.is_authenticated and user.is_active):
        return []
    if user.is_superuser:
        return None
    return organizations_with(user, Perm.ADMINISTER)


def may_unblock(user: User, recipient: ShareRecipient) -> bool:
    """A superuser, or an administrator of the organization that sent the share."""
    if not (user.is_authenticated and user.is_active):
        return False
    return user.is_superuser or has_perm(
        user, Perm.ADMINISTER, Organization(pk=recipient.share.organization_id)
    )


def administered_recipients(user: User) -> QuerySet[ShareRecipient]:
    """The recipients of shares (not removed) whose block the user may lift, blocked or not."""
    scope = unblocking_organizations(user)
    recipients = ShareRecipient.objects.filter(share__removed_at__isnull=True)
    if scope is not None:
        recipients = recipients.filter(share__organization_id__in=scope)
    return recipients.select_related(
        "share__organization", "share__sender", "user", "group", "location", "worklist"
    )


def blocked_recipients(user: User) -> QuerySet[ShareRecipient]:
    """The blocked recipients the user may unblock, newest block first."""
    return (
        administered_recipients(user)
        .filter(blocked_at__isnull=False)
        .order_by("-blocked_at", "-pk")
    )


def unblock(*, user: User, recipient: ShareRecipient, request: HttpRequest | None = None) -> bool:
    """Lift the block: the failure count starts again from zero. Returns whether this call
    lifted it (False: it was not blocked)."""
    if not may_unblock(user, recipient):
        raise PermissionDenied(_("You may not unblock this share."))
    with transaction.atomic():
        locked = (
            ShareRecipient.objects.select_for_update().select_related("share").get(pk=recipient.pk)
        )
        if locked.blocked_at is None:
            return False
        blocked_at, failures = locked.blocked_at, locked.code_failures
        ShareRecipient.objects.filter(pk=locked.pk).update(blocked_at=None, code_failures=0)
        _audit(
            locked,
            Action.SHARE_UNBLOCKED,
            request,
            actor=user,
            blocked_at=blocked_at,
            failures=failures,
        )
    recipient.blocked_at, recipient.code_failures = None, 0
    return True
