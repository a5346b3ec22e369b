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

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

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


# Each option the organization's policy may disable: the policy flag that offers it, and how a
# refusal names it. The Send Link form shows an option only where its flag is set.
OPTION_POLICIES: dict[str, tuple[str, Promise]] = {
    "email": ("allow_link_email", gettext_lazy("sending them by email")),
    "mobile": ("allow_link_sms", gettext_lazy("sending them by SMS")),
    "max_uses": ("allow_link_max_uses", gettext_lazy("limiting the number of uses")),
    "expires_in_days": ("allow_link_expiry", gettext_lazy("choosing the expiry")),
    "expires_in_hours": ("allow_link_expiry", gettext_lazy("choosing the expiry")),
    "login_required": (
        "allow_link_login_required",
        gettext_lazy("requiring the recipient to log in"),
    ),
    "password": ("allow_link_password", gettext_lazy("passwords")),
    "password_is_birth_date": (
        "allow_link_birth_date_password",
        gettext_lazy("the date of birth as password"),
    ),
    "max_password_attempts": ("allow_link_password", gettext_lazy("passwords")),
    "require_email_confirmation": (
        "allow_link_email_confirmation",
        gettext_lazy("confirmation via email"),
    ),
    "sms_code": ("allow_link_sms", gettext_lazy("codes sent by SMS")),
    "include_priors": ("allow_link_priors", gettext_lazy("including priors")),
}


def _not_allowed(errors: FieldErrors, name: str, what: str) -> None:
    errors.add(
        name,
        _("Your organization's policy does not allow %(option)s on guest links.")
        % {"option": what},
    )


def _messages_of(exc: ValidationError) -> list[str]:
    return [str(message) for message in exc.messages]


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
        _not_allowed(errors, name, str(OPTION_POLICIES[name][1]))
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
class _Draft:
    """The options as the rules read them: addresses without surrounding spaces."""

    options: LinkOptions
    target: LinkTarget
    email: str
    mobile: str

    @property
    def password(self) -> str:
        return self.options.password or ""

    def chosen(self) -> dict[str, Any]:
        """The options the sender used, by name. The expiry is left to :func:`_expiry`, which
        names one field for both of its numbers."""
        values = {
            "email": self.email,
            "mobile": self.mobile,
            "max_uses": self.options.max_uses,
            "login_required": self.options.login_required,
            "password": self.password,
            "password_is_birth_date": self.options.password_is_birth_date,
            "max_password_attempts": self.options.max_password_attempts,
            "require_email_confirmation": self.options.require_email_confirmation,
            "sms_code": self.options.sms_code,
            "include_priors": self.options.include_priors,
        }
        return {name: value for name, value in values.items() if _is_chosen(value)}


def _is_chosen(value: Any) -> bool:
    # Not "in (None, False, '')": 0 equals False, and zero uses is a choice (a refused one).
    return value is not None and value is not False and value != ""


def _study_without_birth_date(draft: _Draft) -> bool:
    return draft.target.study is not None and draft.target.study.patient.birth_date is None


# What a chosen option the policy allows must also hold: (breaks the rule?, its message), checked
# in order; the first rule an option breaks is its error.
_OptionRule = tuple[Callable[[Any, _Draft], bool], Callable[[], str]]
OPTION_RULES: dict[str, tuple[_OptionRule, ...]] = {
    "max_uses": (
        (lambda uses, _d: uses < 1, lambda: _("A link must allow at least one use.")),
        (
            lambda uses, _d: uses > MAX_USES_LIMIT,
            lambda: (
                _("Enter at most %(limit)s uses, or leave the field empty for no limit.")
                % {"limit": MAX_USES_LIMIT}
            ),
        ),
    ),
    "password": (
        (
            lambda password, _d: len(password) < MIN_PASSWORD_LENGTH,
            lambda: (
                _("Use at least %(count)s characters for the password.")
                % {"count": MIN_PASSWORD_LENGTH}
            ),
        ),
        (
            lambda password, _d: len(password) > MAX_PASSWORD_LENGTH,
            lambda: (
                _("Use at most %(count)s characters for the password.")
                % {"count": MAX_PASSWORD_LENGTH}
            ),
        ),
    ),
    # The manual: a password typed in the password field overrides the date of birth, which
    # then needs nothing more.
    "password_is_birth_date": (
        (
            lambda _v, draft: not draft.password and draft.target.study is None,
            lambda: _(
                "A worklist or folder has no single date of birth. Enter a password instead."
            ),
        ),
        (
            lambda _v, draft: not draft.password and _study_without_birth_date(draft),
            lambda: _(
                "This study has no date of birth in its DICOM data. Enter a password instead."
            ),
        ),
    ),
    "max_password_attempts": (
        (lambda attempts, _d: attempts < 1, lambda: _("Allow at least one attempt.")),
        (
            lambda attempts, _d: attempts > MAX_PASSWORD_ATTEMPTS_LIMIT,
            lambda: _("Allow at most %(limit)s attempts.") % {"limit": MAX_PASSWORD_ATTEMPTS_LIMIT},
        ),
        (
            lambda _v, draft: not draft.password and not draft.options.password_is_birth_date,
            lambda: _("Set a password (or the date of birth as password) to limit its attempts."),
        ),
    ),
    "require_email_confirmation": (
        (
            lambda _v, draft: not draft.email,
            lambda: _("Enter the recipient's email address: the confirmation is sent there."),
        ),
    ),
    "sms_code": (
        (
            lambda _v, draft: not draft.mobile,
            lambda: _("Enter the recipient's mobile phone number: the code is sent there."),
        ),
    ),
}

# The options that carry an address, and the channel that checks it.
_ADDRESS_CHANNELS = {"email": Channel.EMAIL, "mobile": Channel.SMS}


def _check_options(
    draft: _Draft, organization: Organization, errors: FieldErrors
) -> dict[str, str]:
    """Refuse each chosen option the policy disables, else apply its rules; returns the
    addresses as their channels write them."""
    addresses = {"email": draft.email, "mobile": draft.mobile}
    for name, value in draft.chosen().items():
        flag, words = OPTION_POLICIES[name]
        if not getattr(organization, flag):
            _not_allowed(errors, name, str(words))
        elif name in _ADDRESS_CHANNELS:
            addresses[name] = _checked_address(name, value, errors)
        else:
            broken = _first_broken_rule(name, value, draft)
            if broken is not None:
                errors.add(name, broken)
    return addresses


def _first_broken_rule(name: str, value: Any, draft: _Draft) -> str | None:
    """The message of the first of the option's rules its value breaks, if any."""
    for breaks, message in OPTION_RULES.get(name, ()):
        if breaks(value, draft):
            return message()
    return None


def _checked_address(name: str, address: str, errors: FieldErrors) -> str:
    try:
        return validate_recipient(_ADDRESS_CHANNELS[name], address)
    except ValidationError as exc:
        for message in _messages_of(exc):
            errors.add(name, message)
        return address


def _link_expiry(
    *,
    sender: User,
    target: LinkTarget,
    organization: Organization,
    options: LinkOptions,
    errors: FieldErrors,
    now: datetime,
) -> datetime | None:
    """The chosen (or default) expiry, never past the sender's own access to the study."""
    expires_at = _expiry(options, organization, errors, now)
    held_until = _held_until(sender, target)
    if held_until is None:
        return expires_at
    if options.expires_in_days is None and options.expires_in_hours is None:
        # The default expiry shortened to the sender's own access.
        return min(expires_at, held_until) if expires_at else held_until
    if expires_at is not None and expires_at > held_until:
        errors.add(
            "expires_in_hours" if options.expires_in_hours else "expires_in_days",
            _("Your own access to this study ends on %(day)s: the link cannot stay valid longer.")
            % {"day": date_format(timezone.localtime(held_until), "DATETIME_FORMAT")},
        )
    return expires_at


def _language(sender: User, options: LinkOptions, errors: FieldErrors) -> str:
    if not options.language:
        return language_of(sender)
    language = supported_language(options.language)
    if language is None:
        errors.add("language", _("Choose one of the portal's languages."))
        # Never stored: the error refuses the options (errors.raise_if_any).
        return ""
    return language


def _password_hash(draft: _Draft, *, uses_birth_date: bool) -> str:
    if draft.password:
        return hash_link_password(draft.password)
    if not uses_birth_date:
        return ""
    study = draft.target.study
    birth_date = study.patient.birth_date if study is not None else None
    if birth_date is None:
        # The option's rules refuse a worklist, a folder and a study without a date of birth.
        raise ValueError("A date of birth password needs the study's date of birth.")
    return hash_link_password(birth_date.strftime(BIRTH_DATE_FORMAT))


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
    """The options as the link stores them, or ValidationError naming every broken rule."""
    errors = FieldErrors()
    if not acknowledged:
        errors.add(
            "acknowledged",
            _(
                "Tick the box to confirm that you understand that authorization cannot be "
                "removed once the secure link is sent."
            ),
        )
    draft = _Draft(
        options=options,
        target=target,
        email=(options.email or "").strip(),
        mobile=(options.mobile or "").strip(),
    )
    addresses = _check_options(draft, organization, errors)
    expires_at = _link_expiry(
        sender=sender,
        target=target,
        organization=organization,
        options=options,
        errors=errors,
        now=now,
    )
    if len(options.message or "") > MAX_MESSAGE_LENGTH:
        errors.add(
            "message",
            _("Keep the message under %(count)s characters.") % {"count": MAX_MESSAGE_LENGTH},
        )
    language = _language(sender, options, errors)
    errors.raise_if_any()

    uses_birth_date = options.password_is_birth_date and not draft.password
    return _Checked(
        email=addresses["email"],
        mobile=addresses["mobile"],
        expires_at=expires_at,
        password_hash=_password_hash(draft, uses_birth_date=uses_birth_date),
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
    with transaction.atomic(durable=True):
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
