"""Email shares to addresses without an account: the registration invitation (CIMAR: "the
recipient will be prompted to create an account before having access to the study").

``invite`` is called by ``share_studies`` inside its transaction for each pending email
recipient: it gives the recipient a random token, stores only its keyed digest, and queues the
invitation email whose link (``/shares/invitation/<token>/``) leads to the registration page.

On that page, :func:`find_invitation` names the invitation a token belongs to, or refuses it:
unknown (one answer for any token that names nothing, counted against the client address by
the login throttle before the lookup), expired, withdrawn (the share was removed) or already
accepted. Registering (:func:`register`) or, for someone who has an account with the address by
now, accepting (:func:`accept`) activates every pending email share of that address whose share
still runs: the recipient gets the user, their personal worklist and the share's entries.

An invitation is valid until the share ends or ``SHARE_INVITATION_DAYS`` after the share,
whichever comes first. Once accepted, a recipient's digest is replaced by a marker derived from
it (:func:`_spent_marker`): the token opens nothing any more, but the page can still tell its
holder that it was used, rather than that it never existed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.backends import PORTAL_BACKEND
from accounts.models import User
from accounts.services import (
    AccountExists,
    complete_login,
    register_user,
    release_attempt,
    reserve_attempt,
)
from audit.models import Action, Outcome
from audit.services import record
from notifications.models import Channel
from notifications.services import queue_message
from portal import decisions
from portal.clients import client_ip
from portal.digests import candidate_digests, secret_digest
from sharing.models import RecipientKind, Share, ShareRecipient
from sharing.services.entries import end_of_day, grant_entries
from sharing.services.study_items import study_items
from sharing.services.trail import record_share_event
from studies.services.worklists import personal_worklist

INVITATION_TEMPLATE = "registration_invitation"
INVITATION_PURPOSE = "share-invitation"
_SPENT_PURPOSE = "share-invitation-spent"
# secrets.token_urlsafe(32): 43 characters of URL-safe base64. Anything else is only counted.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


# --- Refusals ----------------------------------------------------------------------------------


class InvitationError(Exception):
    """A refusal whose ``message`` is safe to show to whoever holds the token."""

    status = 400

    def __init__(self, message: str = ""):
        self.message = message or self.default_message()
        super().__init__(self.message)

    def default_message(self) -> str:
        return _("This invitation cannot be used.")


class InvitationUnknown(InvitationError):
    """No invitation has this token: the same answer for a mistyped, truncated or guessed one."""

    status = 404

    def default_message(self) -> str:
        return _(
            "This invitation link is not valid. Check that you opened the whole link from the "
            "email; if it still does not work, ask the sender to share the study again."
        )


class InvitationExpired(InvitationError):
    status = 410

    def default_message(self) -> str:
        return _(
            "This invitation has expired. Ask the sender to share the study again if you still "
            "need it."
        )


class InvitationWithdrawn(InvitationError):
    status = 410

    def default_message(self) -> str:
        return _("The sender has removed this share: the invitation no longer opens anything.")


class InvitationAccepted(InvitationError):
    """Used before; ``user_id`` is the account that accepted it."""

    status = 410

    def __init__(self, message: str = "", *, user_id: int | None = None):
        self.user_id = user_id
        super().__init__(message)

    def default_message(self) -> str:
        return _(
            "This invitation has already been used to create an account. Log in with that "
            "account to see the shared studies."
        )


class InvitationThrottled(InvitationError):
    """Too many unknown tokens from this address; ``retry_at`` says until when."""

    status = 429

    def __init__(self, retry_at: datetime):
        self.retry_at = retry_at
        super().__init__()

    @property
    def retry_after(self) -> int:
        return max(1, int((self.retry_at - timezone.now()).total_seconds()) + 1)

    def default_message(self) -> str:
        return _(
            "Too many invitation links that do not exist were opened from your network. "
            "Wait a few minutes, then open the link from the email again."
        )


class InvitedAddressHasAccount(InvitationError):
    """The address has an account by now: its owner logs in and accepts (registering refused
    with ``accounts.services.AccountExists``)."""

    status = 409

    def default_message(self) -> str:
        return _(
            "An account with this email address exists already. Log in with it to accept the "
            "invitation."
        )


class WrongAccount(InvitationError):
    """The logged-in user's address is not the invited one."""

    status = 403

    def default_message(self) -> str:
        return _(
            "This invitation was sent to another email address than your account's. Log out "
            "and open the link again to create an account for that address, or ask the sender "
            "to share the study with your own address."
        )


# --- Sending -----------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return secret_digest(token, purpose=INVITATION_PURPOSE)


def _spent_marker(digest: str) -> str:
    """What replaces an accepted invitation's digest: derived from the digest (so it can be
    computed for every recipient activated at once, whose tokens we never see), and matching
    no live digest."""
    return hashlib.sha256(f"{_SPENT_PURPOSE}:{digest}".encode()).hexdigest()


def invitation_link(token: str) -> str:
    return f"{settings.SITE_URL}{reverse('sharing:invitation', args=[token])}"


def invite(*, recipient: ShareRecipient, context: dict[str, Any]) -> None:
    """Give a pending email recipient its invitation token and queue the invitation email
    (``context``: the share message's) in the share's language. The token exists only in the
    email; the recipient row keeps its keyed digest."""
    share = recipient.share
    token = secrets.token_urlsafe(32)
    recipient.invitation_digest = _digest(token)
    recipient.save(update_fields=["invitation_digest"])
    queue_message(
        channel=Channel.EMAIL,
        to=recipient.email,
        template=INVITATION_TEMPLATE,
        context={**context, "email": recipient.email, "link": invitation_link(token)},
        language=share.language,
        concerning=("share", share.pk),
    )


# --- Finding an invitation ---------------------------------------------------------------------


def invitation_expires_at(share: Share) -> datetime:
    """The end of the share's last day, or SHARE_INVITATION_DAYS after the share: the sooner."""
    limit = share.created_at + timedelta(days=settings.SHARE_INVITATION_DAYS)
    if share.valid_until is not None:
        limit = min(limit, end_of_day(share.valid_until))
    return limit


def _share_running(share: Share, now: datetime) -> bool:
    return share.removed_at is None and (
        share.valid_until is None or end_of_day(share.valid_until) > now
    )


@dataclass(frozen=True)
class Invitation:
    """What the invitation page may show before registering: who shared what, by initials,
    description and date only (as the email does), and the address the account will have."""

    recipient: ShareRecipient
    email: str
    expires_at: datetime
    sender_name: str
    organization_name: str
    shared_at: datetime
    studies: list[dict[str, Any]] = field(default_factory=list)
    account_exists: bool = False
    # A pending share of the address asks for SMS codes: the account needs a mobile number.
    needs_mobile: bool = False

    @property
    def share(self) -> Share:
        return self.recipient.share


def _probe_account(request: HttpRequest | None) -> str:
    # The login throttle counts per account and per address. A token belongs to no account, so
    # the "account" here is this address's invitation guessing: tight, and its own, so nobody
    # can lock out every invitation by guessing from elsewhere.
    return f"share-invitation-probe:{client_ip(request) or 'unknown'}"


def _reserve_probe(request: HttpRequest | None) -> None:
    ip = client_ip(request)
    retry_at = reserve_attempt(username=_probe_account(request), ip=ip)
    if retry_at is None:
        return
    # Audited once per window and address: a prober must not be able to flood the trail.
    if cache.add(f"share-invitation-throttled:{ip}", True, timeout=settings.LOGIN_FAILURE_WINDOW):
        with transaction.atomic(durable=True):
            record(
                action=Action.LOGIN_THROTTLED,
                request=request,
                outcome=Outcome.MINOR_FAILURE,
                target_type="share_invitation",
                details={"step": "share invitation", "until": retry_at.isoformat()},
            )
    raise InvitationThrottled(retry_at)


def _digests_for(token: str) -> tuple[list[str], list[str]]:
    """The live and the spent digests this token would have (under every key of
    SECRET_KEY_FALLBACKS too); the lookup goes by them, never by comparing tokens."""
    live = candidate_digests(token, purpose=INVITATION_PURPOSE)
    return live, [_spent_marker(digest) for digest in live]


def _check_state(recipient: ShareRecipient, *, live: bool, now: datetime) -> None:
    share = recipient.share
    if not live or recipient.activated_at is not None or recipient.worklist_id is not None:
        raise InvitationAccepted(user_id=recipient.user_id)
    if share.removed_at is not None:
        raise InvitationWithdrawn()
    if now >= invitation_expires_at(share):
        raise InvitationExpired()


def find_invitation(*, token: str, request: HttpRequest | None) -> Invitation:
    """The invitation this token names, if it can still be accepted; otherwise InvitationUnknown,
    InvitationExpired, InvitationWithdrawn, InvitationAccepted, or InvitationThrottled when this
    address has sent too many tokens that name nothing."""
    _reserve_probe(request)
    recipient = None
    live_digests: list[str] = []
    if _TOKEN_SHAPE.fullmatch(token or ""):
        live_digests, spent_digests = _digests_for(token)
        recipient = (
            ShareRecipient.objects.select_related("share__sender", "share__organization")
            .filter(kind=RecipientKind.EMAIL, invitation_digest__in=live_digests + spent_digests)
            .first()
        )
    if recipient is None:
        # Stays counted: this was a guess, or a link cut short.
        raise InvitationUnknown()
    # A real token is not a guess, whatever state its invitation is in.
    release_attempt(username=_probe_account(request), ip=client_ip(request))
    _check_state(recipient, live=recipient.invitation_digest in live_digests, now=timezone.now())
    share = recipient.share
    studies = list(share.studies.select_related("patient").order_by("study_date", "pk"))
    sender = share.sender
    return Invitation(
        recipient=recipient,
        email=recipient.email,
        expires_at=invitation_expires_at(share),
        sender_name=sender.display_name,
        organization_name=share.organization.name,
        shared_at=share.created_at,
        studies=study_items(studies, share.anonymize),
        account_exists=User._default_manager.filter(email__iexact=recipient.email).exists(),
        needs_mobile=ShareRecipient.objects.filter(
            kind=RecipientKind.EMAIL,
            email__iexact=recipient.email,
            worklist__isnull=True,
            share__removed_at__isnull=True,
            share__two_factor=True,
        ).exists(),
    )


# --- Accepting ---------------------------------------------------------------------------------


def _lock_pending(invitation: Invitation) -> list[ShareRecipient]:
    """Lock every pending email recipient of the invited address, and their shares, in one
    order (so two acceptances for the same address queue instead of deadlocking, and a share
    being removed meanwhile either ends before we look or ends the entries we make); then check
    the invitation again as the lock left it. Returns the recipients to activate."""
    pending = list(
        ShareRecipient.objects.select_for_update(of=("self", "share"))
        .select_related("share")
        .filter(
            kind=RecipientKind.EMAIL,
            email__iexact=invitation.email,
            worklist__isnull=True,
            activated_at__isnull=True,
        )
        .order_by("pk")
    )
    now = timezone.now()
    current = next((r for r in pending if r.pk == invitation.recipient.pk), None)
    if current is None:
        # Accepted meanwhile (a double submit, or another invitation to the same address).
        current = ShareRecipient.objects.select_related("share").get(pk=invitation.recipient.pk)
        raise InvitationAccepted(user_id=current.user_id)
    _check_state(
        current, live=current.invitation_digest == invitation.recipient.invitation_digest, now=now
    )
    return [r for r in pending if _share_running(r.share, now)]


def _activate(
    *, user: User, recipients: list[ShareRecipient], request: HttpRequest | None
) -> list[ShareRecipient]:
    """Give each recipient the user, their personal worklist and the share's entries; audit one
    SHARE_ACTIVATED per study. A recipient activated by a concurrent transaction is skipped:
    the conditional UPDATE below finds it no longer pending."""
    worklist = personal_worklist(user)
    now = timezone.now()
    activated = []
    seen: dict[int, set[tuple[int, int]]] = {}
    for recipient in recipients:
        spent = _spent_marker(recipient.invitation_digest) if recipient.invitation_digest else ""
        claimed = ShareRecipient.objects.filter(
            pk=recipient.pk, worklist__isnull=True, activated_at__isnull=True
        ).update(user=user, worklist=worklist, activated_at=now, invitation_digest=spent)
        if not claimed:
            continue
        decisions.changed()
        recipient.user, recipient.worklist = user, worklist
        recipient.activated_at, recipient.invitation_digest = now, spent
        share = recipient.share
        studies = list(share.studies.select_related("patient").order_by("pk"))
        grant_entries(recipient, studies, seen=seen.setdefault(share.pk, set()))
        record_share_event(
            share,
            Action.SHARE_ACTIVATED,
            actor=user,
            request=request,
            studies=studies,
            details={"recipient": recipient.pk, "sender": share.sender_id},
        )
        activated.append(recipient)
    return activated


def register(
    *,
    invitation: Invitation,
    request: HttpRequest,
    first_name: str,
    last_name: str,
    password: str,
    language: str,
    mobile: str = "",
    physician_number: str = "",
) -> tuple[User, list[ShareRecipient]]:
    """Create the invited person's account with the invited address (the token proved they
    receive mail there), activate every pending email share of that address, and log them in.

    Raises InvitedAddressHasAccount when the address has an account by now, ValidationError for
    fields the account rules refuse, and the refusals of :func:`find_invitation` when the
    invitation was accepted, withdrawn or expired meanwhile; nothing is created then."""
    with transaction.atomic(durable=True):
        recipients = _lock_pending(invitation)
        if not (mobile or "").strip() and any(r.share.two_factor for r in recipients):
            # Without one, the shares asking for SMS codes could never be opened.
            raise ValidationError(
                {
                    "mobile": [
                        _(
                            "A study was shared with you with SMS codes: enter your mobile "
                            "number to receive them."
                        )
                    ]
                }
            )
        try:
            user = register_user(
                email=invitation.email,
                first_name=first_name,
                last_name=last_name,
                password=password,
                language=language,
                mobile=mobile,
                physician_number=physician_number,
                request=request,
                organization_id=invitation.share.organization_id,
                audit_details={
                    "invited_by": invitation.share.sender_id,
                    "share": invitation.share.pk,
                },
            )
        except AccountExists as exc:
            raise InvitedAddressHasAccount() from exc
        activated = _activate(user=user, recipients=recipients, request=request)
    # A fresh account has no second factor: the password it just chose is its login.
    complete_login(request=request, user=user, backend=PORTAL_BACKEND)
    return user, activated


def accept(*, invitation: Invitation, request: HttpRequest) -> list[ShareRecipient]:
    """Activate the invitation (and every other pending share to the same address) for the
    logged-in user, whose account has the invited address. WrongAccount otherwise."""
    user = request.user
    if not (user.is_authenticated and user.email.strip().lower() == invitation.email.lower()):
        raise WrongAccount()
    with transaction.atomic(durable=True):
        recipients = _lock_pending(invitation)
        return _activate(user=user, recipients=recipients, request=request)


def accepted_by(refusal: InvitationAccepted, user: User | AnonymousUser) -> bool:
    """Whether an already accepted invitation was accepted by this (logged-in) user."""
    return user.is_authenticated and refusal.user_id is not None and refusal.user_id == user.pk
