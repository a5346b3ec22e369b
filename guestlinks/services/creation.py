"""The sender's side of guest links: create a link (Send Link / New Guest Link), delete it, let
an administrator revoke it, and list a study's links for those who may see them.

Every function checks the caller's permission in the organization that owns the link's target
and runs in one transaction with its audit events and queued messages. The token is shown once
in the returned :class:`CreatedLink` (and again, through ``recover_token``, to users who may view
links); it never reaches an audit event, a log line or the stored message context. The link's
password is never sent and never stored in clear: only its argon2id hash is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from accounts.memberships import active_memberships, has_perm
from accounts.models import Organization, User
from accounts.permissions import Perm
from audit.models import Action
from audit.services import record
from guestlinks.models import GuestLink, LinkState, TargetKind
from guestlinks.passwords import hash_link_password
from guestlinks.services.state import LinkStatus, link_status
from guestlinks.tokens import digest_for, new_salt, recover_token, token_for
from notifications.languages import language_of, supported_language
from notifications.models import Channel
from notifications.services import queue_message, validate_recipient
from portal.validation import FieldErrors
from studies.access import (
    passes_on_in_full,
    user_studies_access,
    user_study_access,
    visible_worklist_ids,
    visible_worklists,
)
from studies.models import Folder, Study, Worklist

# Bounds a form or a script may not exceed, whatever the organization's policy.
MAX_USES_LIMIT = 10_000
MAX_PASSWORD_ATTEMPTS_LIMIT = 100
MIN_PASSWORD_LENGTH = 6
MAX_PASSWORD_LENGTH = 128
MAX_MESSAGE_LENGTH = 2_000
MAX_REASON_LENGTH = 1_000
BIRTH_DATE_FORMAT = "%Y%m%d"

GUEST_LINK_TEMPLATE = "guest_link"


# --- Inputs and results ------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkOptions:
    """What the sender chose in the Send Link dialog (or the API body). Empty means "not used";
    ``None`` for the numbers means "no limit" (uses, attempts) or "the default" (expiry)."""

    email: str = ""
    mobile: str = ""
    max_uses: int | None = None
    expires_in_days: int | None = None
    expires_in_hours: int | None = None
    login_required: bool = False
    password: str = field(default="", repr=False)
    password_is_birth_date: bool = False
    max_password_attempts: int | None = None
    require_email_confirmation: bool = False
    sms_code: bool = False
    include_priors: bool = False
    message: str = ""
    language: str | None = None


@dataclass(frozen=True)
class LinkTarget:
    """Exactly one study, worklist or folder."""

    study: Study | None = None
    worklist: Worklist | None = None
    folder: Folder | None = None

    def __post_init__(self) -> None:
        if sum(item is not None for item in (self.study, self.worklist, self.folder)) != 1:
            raise ValueError("A link target is exactly one study, worklist or folder.")

    @property
    def kind(self) -> str:
        if self.study is not None:
            return TargetKind.STUDY
        if self.worklist is not None:
            return TargetKind.WORKLIST
        return TargetKind.FOLDER

    @property
    def organization_id(self) -> int | None:
        if self.study is not None:
            return self.study.organization_id
        if self.worklist is not None:
            return self.worklist.organization_id
        return self.folder.worklist.organization_id

    @property
    def audit_id(self) -> str:
        """The target's identifier for audit details (UIDs and ids carry no patient data)."""
        if self.study is not None:
            return self.study.study_uid
        return str((self.worklist or self.folder).pk)


@dataclass(frozen=True)
class CreatedLink:
    link: GuestLink
    token: str = field(repr=False)
    url: str = field(repr=False)


@dataclass(frozen=True)
class LinkRow:
    """One line of a study's list of links."""

    link: GuestLink
    status: LinkStatus
    url: str | None = field(repr=False)
    can_delete: bool

    @property
    def uses_left(self) -> int | None:
        return self.status.uses_left


# --- Targets -----------------------------------------------------------------------------------


def sees_target(user: User, target: LinkTarget) -> bool:
    """Whether the user reaches the target through the portal's access rules."""
    if target.study is not None:
        return user_study_access(user, target.study) is not None
    worklist_id = target.worklist.pk if target.worklist is not None else target.folder.worklist_id
    return visible_worklists(user).filter(pk=worklist_id).exists()


def visible_target(
    user: User,
    *,
    study_uid: str | None = None,
    worklist_id: int | None = None,
    folder_id: int | None = None,
) -> LinkTarget | None:
    """The target named by a request, or None when it does not exist or the user may not see it
    (the two answer alike)."""
    if study_uid:
        study = (
            Study.objects.select_related("organization", "patient")
            .filter(study_uid=study_uid)
            .first()
        )
        target = LinkTarget(study=study) if study is not None else None
    elif worklist_id:
        worklist = Worklist.objects.select_related("organization").filter(pk=worklist_id).first()
        target = LinkTarget(worklist=worklist) if worklist is not None else None
    elif folder_id:
        folder = (
            Folder.objects.select_related("worklist__organization").filter(pk=folder_id).first()
        )
        target = LinkTarget(folder=folder) if folder is not None else None
    else:
        return None
    if target is None or not sees_target(user, target):
        return None
    return target


def target_organization(target: LinkTarget) -> Organization | None:
    organization_id = target.organization_id
    if organization_id is None:
        return None
    return Organization.objects.filter(pk=organization_id).first()


def may_create_links(user: User, target: LinkTarget) -> bool:
    """The role's permission in the owning organization, and a target the user may hand on: a
    study held only through a narrower share (anonymized, images only, SMS code, no further
    sharing) cannot be sent by link, since the link would give more than the share did. A
    personal worklist (and its folders) belongs to no organization and is never linked: it holds
    studies shared on their senders' terms."""
    item = target.study or target.worklist or target.folder
    return item.pk in linkable_target_ids(user, target.kind, [item])


def linkable_target_ids(user: User, kind: str, targets: list) -> set[int]:
    """Of some studies, worklists or folders (``kind``), the keys of those the user may send a
    link to (:func:`may_create_links`), reading the user's access once for all of them: the
    directory's menu offers Send Link on these only."""
    permitted = {
        m.organization_id for m in active_memberships(user) if m.role.grants(Perm.CREATE_LINKS)
    }
    if not permitted or not targets:
        return set()
    if kind == TargetKind.STUDY:
        accesses = user_studies_access(user, targets)
        return {
            study.pk
            for study in targets
            if study.organization_id in permitted and passes_on_in_full(accesses[study.pk])
        }
    worklist_of = {
        item.pk: item.pk if kind == TargetKind.WORKLIST else item.worklist_id for item in targets
    }
    organization_of = dict(
        Worklist.objects.filter(
            pk__in=set(worklist_of.values()) & set(visible_worklist_ids(user))
        ).values_list("pk", "organization_id")
    )
    return {
        pk
        for pk, worklist_id in worklist_of.items()
        if worklist_id in organization_of and organization_of[worklist_id] in permitted
    }


def refusal_reason(user: User, target: LinkTarget) -> str:
    """Why :func:`may_create_links` said no, for the dialog to explain: "personal" (a personal
    worklist or one of its folders), "role" (no permission in the owning organization) or
    "share" (the study is held through a narrower share)."""
    organization_id = target.organization_id
    if organization_id is None:
        return "personal"
    if has_perm(user, Perm.CREATE_LINKS, Organization(pk=organization_id)):
        return "share"
    return "role"


def _held_until(sender: User, target: LinkTarget) -> datetime | None:
    """When the sender's own access to a study link's study ends (a share's validity), if ever:
    a link never outlasts it."""
    if target.study is None:
        return None
    access = user_study_access(sender, target.study)
    return access.until if access is not None else None


def link_url(token: str) -> str:
    """The absolute address the recipient opens."""
    return f"{settings.SITE_URL}{reverse('guest:link', args=[token])}"


def _link_target(link: GuestLink) -> LinkTarget:
    return LinkTarget(study=link.study, worklist=link.worklist, folder=link.folder)


# --- Validation --------------------------------------------------------------------------------


def _not_allowed(errors: FieldErrors, name: str, what: str) -> None:
    errors.add(
        name,
        _("Your organization's policy does not allow %(option)s on guest links.")
        % {"option": what},
    )


def _messages_of(exc: ValidationError) -> list[str]:
    return [str(message) for message in exc.messages]


def _birth_date(target: LinkTarget) -> date | None:
    if target.study is None:
        return None
    return target.study.patient.birth_date


def default_validity_hours(organization: Organization) -> int:
    """How long a link stays valid when the sender does not say: the organization's default,
    never beyond its maximum."""
    max_hours = organization.max_link_validity_days * 24
    hours = organization.default_link_validity_hours or max_hours
    return min(hours, max_hours) if max_hours else hours


def _expiry(
    options: LinkOptions, organization: Organization, errors: FieldErrors, now: datetime
) -> datetime | None:
    days, hours = options.expires_in_days, options.expires_in_hours
    max_hours = organization.max_link_validity_days * 24
    if days is None and hours is None:
        return now + timedelta(hours=default_validity_hours(organization))
    if not organization.allow_link_expiry:
        name = "expires_in_days" if days is not None else "expires_in_hours"
        _not_allowed(errors, name, _("choosing the expiry"))
        return None
    valid = True
    for name, value in (("expires_in_days", days), ("expires_in_hours", hours)):
        if value is not None and value < 0:
            errors.add(name, _("Enter a number of zero or more."))
            valid = False
    if not valid:
        return None
    total_hours = (days or 0) * 24 + (hours or 0)
    name = "expires_in_hours" if hours else "expires_in_days"
    if total_hours < 1:
        errors.add(name, _("The link must stay valid for at least one hour."))
        return None
    if total_hours > max_hours:
        errors.add(
            name,
            _(
                "Your organization allows links valid for at most %(days)s days. Choose a "
                "shorter time."
            )
            % {"days": organization.max_link_validity_days},
        )
        return None
    return now + timedelta(hours=total_hours)


@dataclass(frozen=True)
class _Checked:
    email: str
    mobile: str
    expires_at: datetime | None
    password_hash: str
    password_is_birth_date: bool
    language: str


def _check(
    *,
    sender: User,
    target: LinkTarget,
    organization: Organization,
    options: LinkOptions,
    acknowledged: bool,
    now: datetime,
) -> _Checked:
    errors = FieldErrors()
    if not acknowledged:
        errors.add(
            "acknowledged",
            _(
                "Tick the box to confirm that you understand that authorization cannot be "
                "removed once the secure link is sent."
            ),
        )

    email = (options.email or "").strip()
    if email:
        if not organization.allow_link_email:
            _not_allowed(errors, "email", _("sending them by email"))
        else:
            try:
                email = validate_recipient(Channel.EMAIL, email)
            except ValidationError as exc:
                for message in _messages_of(exc):
                    errors.add("email", message)

    mobile = (options.mobile or "").strip()
    if mobile:
        if not organization.allow_link_sms:
            _not_allowed(errors, "mobile", _("sending them by SMS"))
        else:
            try:
                mobile = validate_recipient(Channel.SMS, mobile)
            except ValidationError as exc:
                for message in _messages_of(exc):
                    errors.add("mobile", message)

    if options.max_uses is not None:
        if not organization.allow_link_max_uses:
            _not_allowed(errors, "max_uses", _("limiting the number of uses"))
        elif options.max_uses < 1:
            errors.add("max_uses", _("A link must allow at least one use."))
        elif options.max_uses > MAX_USES_LIMIT:
            errors.add(
                "max_uses",
                _("Enter at most %(limit)s uses, or leave the field empty for no limit.")
                % {"limit": MAX_USES_LIMIT},
            )

    expires_at = _expiry(options, organization, errors, now)
    held_until = _held_until(sender, target)
    if held_until is not None:
        if options.expires_in_days is None and options.expires_in_hours is None:
            # The default expiry shortened to the sender's own access.
            expires_at = min(expires_at, held_until) if expires_at else held_until
        elif expires_at is not None and expires_at > held_until:
            errors.add(
                "expires_in_hours" if options.expires_in_hours else "expires_in_days",
                _(
                    "Your own access to this study ends on %(day)s: the link cannot stay "
                    "valid longer."
                )
                % {"day": date_format(timezone.localtime(held_until), "DATETIME_FORMAT")},
            )

    if options.login_required and not organization.allow_link_login_required:
        _not_allowed(errors, "login_required", _("requiring the recipient to log in"))

    password = options.password or ""
    password_hash = ""
    uses_birth_date = False
    if password:
        if not organization.allow_link_password:
            _not_allowed(errors, "password", _("passwords"))
        elif len(password) < MIN_PASSWORD_LENGTH:
            errors.add(
                "password",
                _("Use at least %(count)s characters for the password.")
                % {"count": MIN_PASSWORD_LENGTH},
            )
        elif len(password) > MAX_PASSWORD_LENGTH:
            errors.add(
                "password",
                _("Use at most %(count)s characters for the password.")
                % {"count": MAX_PASSWORD_LENGTH},
            )
    if options.password_is_birth_date:
        if not organization.allow_link_birth_date_password:
            _not_allowed(errors, "password_is_birth_date", _("the date of birth as password"))
        elif not password:
            # The manual: a password typed in the password field overrides this option.
            birth_date = _birth_date(target)
            if target.study is None:
                errors.add(
                    "password_is_birth_date",
                    _(
                        "A worklist or folder has no single date of birth. Enter a password "
                        "instead."
                    ),
                )
            elif birth_date is None:
                errors.add(
                    "password_is_birth_date",
                    _(
                        "This study has no date of birth in its DICOM data. Enter a password "
                        "instead."
                    ),
                )
            else:
                uses_birth_date = True
    if options.max_password_attempts is not None:
        if not organization.allow_link_password:
            _not_allowed(errors, "max_password_attempts", _("passwords"))
        elif options.max_password_attempts < 1:
            errors.add("max_password_attempts", _("Allow at least one attempt."))
        elif options.max_password_attempts > MAX_PASSWORD_ATTEMPTS_LIMIT:
            errors.add(
                "max_password_attempts",
                _("Allow at most %(limit)s attempts.") % {"limit": MAX_PASSWORD_ATTEMPTS_LIMIT},
            )
        elif not password and not options.password_is_birth_date:
            errors.add(
                "max_password_attempts",
                _("Set a password (or the date of birth as password) to limit its attempts."),
            )

    if options.require_email_confirmation:
        if not organization.allow_link_email_confirmation:
            _not_allowed(errors, "require_email_confirmation", _("confirmation via email"))
        elif not email:
            errors.add(
                "require_email_confirmation",
                _("Enter the recipient's email address: the confirmation is sent there."),
            )

    if options.sms_code:
        if not organization.allow_link_sms:
            _not_allowed(errors, "sms_code", _("codes sent by SMS"))
        elif not mobile:
            errors.add(
                "sms_code",
                _("Enter the recipient's mobile phone number: the code is sent there."),
            )

    if options.include_priors and not organization.allow_link_priors:
        _not_allowed(errors, "include_priors", _("including priors"))

    if len(options.message or "") > MAX_MESSAGE_LENGTH:
        errors.add(
            "message",
            _("Keep the message under %(count)s characters.") % {"count": MAX_MESSAGE_LENGTH},
        )

    language = language_of(sender)
    if options.language:
        language = supported_language(options.language)
        if language is None:
            errors.add("language", _("Choose one of the portal's languages."))

    errors.raise_if_any()

    if password:
        password_hash = hash_link_password(password)
    elif uses_birth_date:
        password_hash = hash_link_password(_birth_date(target).strftime(BIRTH_DATE_FORMAT))
    return _Checked(
        email=email,
        mobile=mobile,
        expires_at=expires_at,
        password_hash=password_hash,
        password_is_birth_date=uses_birth_date,
        language=language,
    )


# --- Creating ----------------------------------------------------------------------------------


def message_context(*, link: GuestLink, sender: User, url: str) -> dict[str, Any]:
    """The context of the ``guest_link`` email and SMS (see notifications.services)."""
    return {
        "sender_name": sender.get_full_name() or sender.get_username(),
        "link": url,
        "message": link.message,
        "expires_at": link.expires_at,
        "max_uses": link.max_uses,
        "password_required": bool(link.password_hash),
        "login_required": link.login_required,
    }


def _option_details(link: GuestLink) -> dict[str, Any]:
    """What an audit event says about a link's options: booleans and counts, never the password,
    the token, the message or the addresses. (Keys avoid the words the audit log redacts.)"""
    return {
        "target_kind": link.target_kind,
        "by_email": bool(link.email),
        "by_sms": bool(link.mobile),
        "max_uses": link.max_uses,
        "expires_at": link.expires_at,
        "login_required": link.login_required,
        "protected": "birth_date"
        if link.password_is_birth_date
        else ("chosen" if link.password_hash else "none"),
        "max_attempts": link.max_password_attempts,
        "email_confirmation": link.require_email_confirmation,
        "sms_check": link.sms_code_required,
        "include_priors": link.include_priors,
        "with_message": bool(link.message),
        "language": link.language,
    }


def _record(action: str, *, actor: User, link: GuestLink, request, details: dict) -> None:
    record(
        action=action,
        actor=actor,
        request=request,
        organization_id=link.organization_id,
        target_type="guest_link",
        target_id=link.pk,
        study=link.study,
        details=details,
    )


def create_link(
    *,
    sender: User,
    target: LinkTarget,
    options: LinkOptions,
    acknowledged: bool,
    request=None,
) -> CreatedLink:
    """Create a guest link to ``target`` with ``options``, queue its email and SMS, audit it.

    Raises PermissionDenied when the sender may not create links in the organization that owns
    the target or cannot see the target, and ValidationError({field: [message]}) for an option
    the organization's policy disables, an invalid address or number, or a missing
    acknowledgement. Nothing is created then.
    """
    organization = target_organization(target)
    if organization is None or not may_create_links(sender, target):
        raise PermissionDenied(_("You may not send links to this."))
    now = timezone.now()
    checked = _check(
        sender=sender,
        target=target,
        organization=organization,
        options=options,
        acknowledged=acknowledged,
        now=now,
    )
    salt = new_salt()
    token = token_for(salt)
    url = link_url(token)
    with transaction.atomic():
        link = GuestLink.objects.create(
            organization=organization,
            created_by=sender,
            target_kind=target.kind,
            study=target.study,
            worklist=target.worklist,
            folder=target.folder,
            include_priors=options.include_priors,
            token_salt=salt,
            token_digest=digest_for(token),
            email=checked.email,
            mobile=checked.mobile,
            language=checked.language,
            message=(options.message or "").strip(),
            max_uses=options.max_uses,
            expires_at=checked.expires_at,
            login_required=options.login_required,
            password_hash=checked.password_hash,
            password_is_birth_date=checked.password_is_birth_date,
            max_password_attempts=options.max_password_attempts,
            require_email_confirmation=options.require_email_confirmation,
            sms_code_required=options.sms_code,
        )
        queued = {"email": 0, "sms": 0, "confirmation": 0}
        context = message_context(link=link, sender=sender, url=url)
        if link.email and link.require_email_confirmation:
            # Two steps: the recipient first proves they read this mailbox; the recipient side
            # then sends the link itself.
            from guestlinks.services.opening import start_confirmation

            start_confirmation(link, request=request)
            queued["confirmation"] = 1
        elif link.email:
            queue_message(
                channel=Channel.EMAIL,
                to=link.email,
                template=GUEST_LINK_TEMPLATE,
                context=context,
                language=link.language,
                concerning=("guest_link", link.pk),
            )
            queued["email"] = 1
        if link.mobile and not link.require_email_confirmation:
            # With confirmation via email the link travels only through the confirmed mailbox;
            # the mobile number then serves the SMS code alone.
            queue_message(
                channel=Channel.SMS,
                to=link.mobile,
                template=GUEST_LINK_TEMPLATE,
                context=context,
                language=link.language,
                concerning=("guest_link", link.pk),
            )
            queued["sms"] = 1
        _record(
            Action.LINK_CREATED,
            actor=sender,
            link=link,
            request=request,
            details={
                "target_id": target.audit_id,
                **_option_details(link),
                "messages": queued,
            },
        )
        if queued["email"]:
            _record(
                Action.LINK_EMAILED,
                actor=sender,
                link=link,
                request=request,
                details={"channel": "email", "language": link.language},
            )
    return CreatedLink(link=link, token=token, url=url)


# --- Ending ------------------------------------------------------------------------------------


def may_delete_link(user: User, link: GuestLink) -> bool:
    return has_perm(user, Perm.DELETE_LINKS, Organization(pk=link.organization_id)) and sees_target(
        user, _link_target(link)
    )


def may_revoke_link(user: User, link: GuestLink) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return user.is_superuser or has_perm(
        user, Perm.REVOKE_ANY_LINK, Organization(pk=link.organization_id)
    )


def _end(*, user: User, link: GuestLink, state: str, reason: str, action: str, request) -> bool:
    with transaction.atomic():
        # Locked so that a concurrent delete and revoke end the link once, with one event.
        current = GuestLink.objects.select_for_update().get(pk=link.pk)
        if current.state != LinkState.ACTIVE:
            link.state, link.ended_at = current.state, current.ended_at
            link.ended_by_id, link.end_reason = current.ended_by_id, current.end_reason
            return False
        now = timezone.now()
        status_before = link_status(current, now=now).state
        current.state = state
        current.ended_at = now
        current.ended_by = user
        current.end_reason = reason
        current.save(update_fields=["state", "ended_at", "ended_by", "end_reason"])
        details: dict[str, Any] = {
            "target_kind": current.target_kind,
            "status_before": status_before,
            "uses": current.uses,
        }
        if reason:
            details["reason"] = reason
        _record(action, actor=user, link=current, request=request, details=details)
    link.state, link.ended_at, link.ended_by, link.end_reason = state, now, user, reason
    return True


def delete_link(*, user: User, link: GuestLink, request=None) -> bool:
    """End a link at once (the trash can). Needs "delete guest links" in the link's organization
    and access to its target. Returns whether this call ended it (False: it had already ended)."""
    if not may_delete_link(user, link):
        raise PermissionDenied(_("You may not delete this link."))
    return _end(
        user=user,
        link=link,
        state=LinkState.DELETED,
        reason="",
        action=Action.LINK_DELETED,
        request=request,
    )


def revoke_link(*, user: User, link: GuestLink, reason: str, request=None) -> bool:
    """An administrator ends a link (the manual: "the administrator is able to revoke a study
    link"); it stops opening at the recipient's next request. Returns whether this call ended it."""
    if not may_revoke_link(user, link):
        raise PermissionDenied(_("You may not revoke this link."))
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": [_("Say why the link is revoked.")]})
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError(
            {
                "reason": [
                    _("Keep the reason under %(count)s characters.") % {"count": MAX_REASON_LENGTH}
                ]
            }
        )
    return _end(
        user=user,
        link=link,
        state=LinkState.REVOKED,
        reason=reason,
        action=Action.LINK_REVOKED,
        request=request,
    )


# --- Listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyLinkPermissions:
    """What one user may do with one study's guest links (worked out once per page)."""

    can_create: bool
    can_view: bool
    can_delete: bool


def study_link_permissions(user: User, study: Study) -> StudyLinkPermissions:
    if not (user.is_authenticated and user.is_active):
        return StudyLinkPermissions(can_create=False, can_view=False, can_delete=False)
    granted = {
        perm
        for membership in active_memberships(user)
        if membership.organization_id == study.organization_id
        for perm in (Perm.VIEW_LINKS, Perm.DELETE_LINKS)
        if membership.role.grants(perm)
    }
    sees = bool(granted) and user_study_access(user, study) is not None
    return StudyLinkPermissions(
        can_create=may_create_links(user, LinkTarget(study=study)),
        can_view=sees and Perm.VIEW_LINKS in granted,
        can_delete=sees and Perm.DELETE_LINKS in granted,
    )


def may_view_links(user: User, study: Study) -> bool:
    return study_link_permissions(user, study).can_view


def links_for_study(
    user: User, study: Study, *, permissions: StudyLinkPermissions | None = None
) -> list[LinkRow]:
    """The study's guest links, newest first, with their status and (while they still open)
    their address, for users who may view links in the study's organization. ``permissions``
    (from :func:`study_link_permissions` for this user and study) saves working them out
    again."""
    permissions = permissions or study_link_permissions(user, study)
    if not permissions.can_view:
        raise PermissionDenied(_("You may not view this study's links."))
    now = timezone.now()
    rows = []
    for link in GuestLink.objects.filter(study=study).select_related("created_by", "ended_by"):
        status = link_status(link, now=now)
        url = None
        if status.is_open:
            token = recover_token(link.token_salt, link.token_digest)
            url = link_url(token) if token else None
        rows.append(
            LinkRow(
                link=link,
                status=status,
                url=url,
                can_delete=permissions.can_delete and link.state == LinkState.ACTIVE,
            )
        )
    return rows
