"""Creating a guest link (Send Link / New Guest Link): the sender's options checked against the
organization's policy and the portal's bounds, the link written, its messages queued and the
event audited, in one transaction.

The token is shown once, in the returned :class:`CreatedLink` (and again, through
``guestlinks.tokens.recovered_link_url``, to users who may view links); it never reaches an audit
event, a log line or the stored message context. The link's password is never sent and never
stored in clear: only its argon2id hash is kept. Ending a link is ``guestlinks.services.ending``;
who may create one, and a study's list of links, ``guestlinks.selectors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from accounts.models import Organization, User
from audit.models import Action
from guestlinks.models import GuestLink
from guestlinks.passwords import hash_link_password
from guestlinks.selectors import LinkTarget, may_create_links, target_organization
from guestlinks.services.events import record_link_event
from guestlinks.services.messages import queue_link_message
from guestlinks.services.opening import start_confirmation
from guestlinks.tokens import digest_for, link_url, new_salt, token_for
from notifications.languages import language_of, supported_language
from notifications.models import Channel
from notifications.services import validate_recipient
from portal.validation import FieldErrors
from studies.access import user_study_access

# Bounds a form or a script may not exceed, whatever the organization's policy.
MAX_USES_LIMIT = 10_000
MAX_PASSWORD_ATTEMPTS_LIMIT = 100
MIN_PASSWORD_LENGTH = 6
MAX_PASSWORD_LENGTH = 128
MAX_MESSAGE_LENGTH = 2_000
BIRTH_DATE_FORMAT = "%Y%m%d"


# --- Inputs and result --------------------------------------------------------------------------


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
class CreatedLink:
    link: GuestLink
    token: str = field(repr=False)
    url: str = field(repr=False)


def _held_until(sender: User, target: LinkTarget) -> datetime | None:
    """When the sender's own access to a study link's study ends (a share's validity), if ever:
    a link never outlasts it."""
    if target.study is None:
        return None
    access = user_study_access(sender, target.study)
    return access.until if access is not None else None


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
        if link.email and link.require_email_confirmation:
            # Two steps: the recipient first proves they read this mailbox; the recipient side
            # then sends the link itself.
            start_confirmation(link, request=request)
            queued["confirmation"] = 1
        elif link.email:
            queue_link_message(link, channel=Channel.EMAIL, to=link.email, url=url)
            queued["email"] = 1
        if link.mobile and not link.require_email_confirmation:
            # With confirmation via email the link travels only through the confirmed mailbox;
            # the mobile number then serves the SMS code alone.
            queue_link_message(link, channel=Channel.SMS, to=link.mobile, url=url)
            queued["sms"] = 1
        record_link_event(
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
            record_link_event(
                Action.LINK_EMAILED,
                actor=sender,
                link=link,
                request=request,
                details={"channel": "email", "language": link.language},
            )
    return CreatedLink(link=link, token=token, url=url)
