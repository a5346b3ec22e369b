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
  Sending and checking are the mechanism guest links share (``notifications.codes``): each guess
  is checked under the row's lock (``select_for_update``; SQLite serializes write transactions),
  and the block is a conditional UPDATE, so concurrent guesses count exactly up to the limit, no
  guess is checked once it is reached, and the block happens once.
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
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.memberships import administered_organization_ids, has_perm
from accounts.models import Organization, User
from accounts.permissions import Perm
from audit.models import Action
from notifications import codes
from notifications.codes import is_code_shaped, normalize_code
from portal import decisions
from sharing.access import recipients_of, remember_verification, two_factor_entries
from sharing.models import ShareRecipient, ShareSmsCode
from sharing.services.trail import record_share_event

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
        sender_name=sender.display_name,
        shared_at=share.created_at,
        blocked=recipient.blocked_at is not None,
        has_mobile=bool(mobile_hint(user)),
        mobile_hint=mobile_hint(user),
        code_active=codes.current_code(_code_policy(recipient, user, None)) is not None,
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


def _block(recipient: ShareRecipient, now: datetime) -> None:
    """The wrong code that reaches the limit blocks the bucket, once, and retires every code of
    its users: no code sent before the block opens anything after an unblock."""
    ShareRecipient.objects.filter(pk=recipient.pk, blocked_at__isnull=True).update(blocked_at=now)
    decisions.changed()
    ShareSmsCode.objects.filter(
        recipient=recipient, used_at__isnull=True, replaced_at__isnull=True
    ).update(replaced_at=now)
    recipient.refresh_from_db(fields=["blocked_at"])


def _code_policy(
    recipient: ShareRecipient, user: User, request: HttpRequest | None
) -> codes.CodePolicy[ShareRecipient]:
    """A share's SMS codes: the user's own (bound to the recipient and the user), checked
    under the recipient's lock, whose count all its users share; a blocked bucket takes no
    code, and the limit blocks it."""
    return codes.CodePolicy(
        holder=ShareRecipient.objects.filter(pk=recipient.pk).select_related("share__organization"),
        code_model=ShareSmsCode,
        owner={"recipient": recipient, "user": user},
        purpose=f"share-sms:{recipient.pk}:{user.pk}",
        max_failures=max_failures(),
        # The holder rows are this recipient's (``holder``).
        closed=lambda row: row.blocked_at is not None,
        at_limit=lambda row, now: _block(row, now),
        reset_failures_on_success=True,
        audit=lambda row, action, **details: _audit(row, action, request, actor=user, **details),
        sent_action=Action.SHARE_CODE_SENT,
        wrong_action=Action.SHARE_WRONG_CODE,
        verified_action=Action.SHARE_CODE_VERIFIED,
        limit_action=Action.SHARE_BLOCKED,
        limit_detail="blocked",
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
    try:
        issued = codes.issue(
            _code_policy(recipient, user, request),
            to=user.mobile,
            language=user.language,
            concerning=("share", recipient.share_id),
            validity=code_validity(),
            resend_seconds=resend_cooldown(),
            cap=max_codes(),
            cap_window=CODE_CAP_WINDOW,
        )
    except codes.HolderClosed as refusal:
        # The locked holder row: the recipient (_code_policy).
        raise ShareBlocked(blocked_message(cast(ShareRecipient, refusal.holder))) from None
    except codes.TooSoon as refusal:
        raise CodeNotSent(refusal.message, retry_after=refusal.wait) from None
    except codes.CapReached as refusal:
        raise CodeNotSent(
            _(
                "We sent you too many codes for this share today. Use the newest one, or try "
                "again tomorrow. If no code arrives, contact %(organization)s."
            )
            % {"organization": cast(ShareRecipient, refusal.holder).share.organization.name}
        ) from None
    except ValidationError:
        # A number that cannot receive SMS is no number: nothing is stored (rolled back).
        raise NoMobile(
            _(
                "The mobile phone number registered for your account cannot receive SMS. "
                "Ask an administrator of your organization to correct it."
            )
        ) from None
    return SentCode(expires_at=issued.expires_at, mobile_hint=mobile_hint(user))


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
    policy = _code_policy(recipient, user, request)
    # Raised after the check's transaction: the failure, the block and their audit events stay.
    check = codes.verify(policy, code)
    # The locked holder row: the recipient (_code_policy).
    locked = check.holder
    if check.verified:
        remember_verification(request, locked)
        return
    if check.outcome == codes.Outcome.CLOSED or locked.blocked_at is not None:
        message = blocked_message(locked)
        if check.outcome == codes.Outcome.WRONG:
            message = _("Wrong code.") + " " + message
        raise ShareBlocked(message)
    if check.outcome == codes.Outcome.NO_CODE:
        raise CodeRefused(
            _("This code has expired or was already used. Select Send code for a new one.")
        )
    left = check.attempts_left
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
    return sorted(administered_organization_ids(user))


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
        decisions.changed()
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
