"""Share studies with users, groups, locations, worklist share codes and email addresses, and
remove a share (PACSonWEB "Sharing studies with a user", CIMAR "Sharing a Study").

``share_studies`` checks everything first (permissions per recipient kind, the owning
organization's policy, the sender's own access to each study), then in one transaction writes
the Share, one Entry per study and recipient worklist (carrying the share's terms, so access
ends with the share and needs no job), its audit events and its queued emails. Either all of it
happens or none of it does. Further sharing never widens access: a sender who holds a study
through a share passes on at most what they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.memberships import has_perm, member_organization_ids
from accounts.models import Group, Location, Organization, User
from accounts.permissions import Perm
from audit.models import Action
from notifications.languages import choose_language, supported_language
from notifications.models import Channel
from notifications.services import queue_messages, validate_recipient
from portal import decisions
from portal.validation import FieldErrors
from sharing.models import RecipientKind, SenderDefaults, Share, ShareRecipient
from sharing.selectors import (
    KIND_RULES,
    may_remove_share,
    reachable_groups,
    reachable_locations,
    reachable_users,
)
from sharing.services.entries import grant_entries
from sharing.services.favorites import star_targets
from sharing.services.invitations import invite
from sharing.services.study_items import study_items
from sharing.services.trail import record_share_event
from sharing.services.two_factor import recipients_without_mobile
from studies.access import StudyAccess, studies_access, user_studies_access
from studies.models import (
    ACCESS_RANK,
    AccessLevel,
    Entry,
    LabelScope,
    Study,
    Worklist,
    WorklistKind,
)
from studies.services.worklists import group_worklist, location_worklist, personal_worklist

MAX_REASON_LENGTH = 1_000
MAX_MESSAGE_LENGTH = 2_000
MAX_LABEL_LENGTH = 100
MAX_RECIPIENTS = 100

SHARE_TEMPLATE = "share_notification"

# The recipients a sender may star as favorites.
STARRABLE_KINDS = frozenset({RecipientKind.USER, RecipientKind.GROUP, RecipientKind.LOCATION})


# --- Inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """One recipient as named by the sender: a user, group or location id, a worklist share
    code, or an email address."""

    kind: str
    value: int | str


@dataclass(frozen=True)
class ShareOptions:
    access: str = AccessLevel.REPORT_READ
    reason: str = ""
    patient_agreed: bool = False
    valid_until: date | None = None
    unlimited: bool = False
    language: str | None = None
    label: str = ""
    # Who among the recipients sees the label (studies.models.LabelScope).
    label_scope: str = LabelScope.GROUP
    urgent: bool = False
    anonymize: bool = False
    allow_further_sharing: bool = False
    message: str = ""
    two_factor: bool = False
    send_mail: bool = False


@dataclass(frozen=True)
class ShareTerms:
    """What a sender may choose when sharing some studies, for the Share dialog to offer only
    that (``share_studies`` still enforces every rule on what is posted)."""

    organization: Organization
    # The recipient kinds the owning organization's policy and the sender's role allow.
    recipient_kinds: tuple[str, ...]
    default_valid_until: date
    # The last day a share may last (the policy's maximum, the sender's own access); None: none.
    latest_valid_until: date | None
    unlimited_allowed: bool
    # Held through an anonymized or two-factor share: passed on whatever the sender ticks.
    anonymized: bool
    two_factor_required: bool


@dataclass
class _Resolved:
    recipient: Recipient
    worklist: Worklist | None
    user: User | None = None
    group: Group | None = None
    location: Location | None = None
    email: str = ""


# --- Rules -------------------------------------------------------------------------------------


def _may(sender: User, perm: Perm, organization: Organization) -> bool:
    """The sender's permission in the owning organization, or, for a recipient of another
    organization sharing further, in their own memberships."""
    if organization.pk in member_organization_ids(sender):
        return has_perm(sender, perm, organization)
    return has_perm(sender, perm)


def _resolve(recipient: Recipient, *, sender: User, errors: FieldErrors) -> _Resolved | None:
    """The recipient as the sender may reach it (``sharing.selectors``' reachability rules), or
    None with the refusal added to ``errors``."""
    resolver = _RESOLVERS.get(recipient.kind)
    if resolver is None:
        refusals = [_("Unknown recipient kind %(kind)s.") % {"kind": recipient.kind}]
    else:
        resolved = resolver(recipient, sender)
        if isinstance(resolved, _Resolved):
            return resolved
        refusals = resolved
    for message in refusals:
        errors.add("recipients", message)
    return None


# Each kind's resolver answers the recipient resolved, or the messages that refuse it.
_Resolution = _Resolved | list[str]


def _unknown(recipient: Recipient) -> list[str]:
    return [
        _("No such recipient: %(kind)s %(value)s.")
        % {"kind": recipient.kind, "value": recipient.value}
    ]


def _resolve_user(recipient: Recipient, sender: User) -> _Resolution:
    user = reachable_users(sender).filter(pk=recipient.value).first()
    if user is None:
        return _unknown(recipient)
    return _Resolved(recipient, personal_worklist(user), user=user)


def _resolve_group(recipient: Recipient, sender: User) -> _Resolution:
    group = reachable_groups(sender).filter(pk=recipient.value).first()
    if group is None:
        return _unknown(recipient)
    return _Resolved(recipient, group_worklist(group), group=group)


def _resolve_location(recipient: Recipient, sender: User) -> _Resolution:
    location = reachable_locations(sender).filter(pk=recipient.value).first()
    if location is None:
        return _unknown(recipient)
    return _Resolved(recipient, location_worklist(location), location=location)


def _resolve_share_code(recipient: Recipient, _sender: User) -> _Resolution:
    # Any worklist of any organization: knowing the code is what the sender brings.
    code = str(recipient.value).strip().upper()
    worklist = Worklist.objects.filter(share_code=code).first() if code else None
    if worklist is None:
        return [_("No worklist has the share code %(code)s.") % {"code": code}]
    return _Resolved(recipient, worklist)


def _resolve_email(recipient: Recipient, _sender: User) -> _Resolution:
    try:
        email = validate_recipient(Channel.EMAIL, str(recipient.value))
    except ValidationError as exc:
        return list(exc.messages)
    user = User.objects.filter(email__iexact=email, is_active=True).first()
    if user is None:
        return _Resolved(recipient, None, email=email)
    return _Resolved(recipient, personal_worklist(user), user=user, email=email)


_RESOLVERS: dict[str, Callable[[Recipient, User], _Resolution]] = {
    RecipientKind.USER: _resolve_user,
    RecipientKind.GROUP: _resolve_group,
    RecipientKind.LOCATION: _resolve_location,
    RecipientKind.SHARE_CODE: _resolve_share_code,
    RecipientKind.EMAIL: _resolve_email,
}


def _images_only_refusal(recipients: Sequence[Recipient], sender: User) -> str:
    """Why "Images only" cannot be chosen for these recipients, naming the users and email
    addresses that make it unavailable (PACSonWEB: not available when sharing with a user); ""
    when none does. A user is named only when the sender could reach them (as ``_resolve``
    decides), so that an id typed into the API reveals no one's name."""
    concerned = [r for r in recipients if r.kind in (RecipientKind.USER, RecipientKind.EMAIL)]
    if not concerned:
        return ""
    names = []
    for recipient in concerned:
        if recipient.kind == RecipientKind.EMAIL:
            names.append(str(recipient.value).strip())
            continue
        try:
            user = reachable_users(sender).filter(pk=int(recipient.value)).first()
        except (TypeError, ValueError):
            user = None
        if user is not None:
            names.append(str(user))
    names = [name for name in dict.fromkeys(names) if name]
    if not names:
        return _("“Images only” is not available when sharing with a user.")
    return _(
        "“Images only” is not available for %(names)s: sharing with a user always includes the "
        "report. Choose an access that includes the report, or remove them from the recipients."
    ) % {"names": ", ".join(names)}


def _held_until(held: list[StudyAccess]) -> date | None:
    """The earliest end of the sender's shared access: it bounds what they pass on."""
    return min((timezone.localdate(a.until) for a in held if a.until is not None), default=None)


def _policy_maximum(organization: Organization, today: date) -> date | None:
    if not organization.max_share_validity_days:
        return None
    return today + timedelta(days=organization.max_share_validity_days)


def _default_day(organization: Organization, held_until: date | None, today: date) -> date:
    day = today + timedelta(days=organization.default_share_validity_days)
    for bound in (_policy_maximum(organization, today), held_until):
        if bound is not None:
            day = min(day, bound)
    return day


def _validity(
    options: ShareOptions,
    organization: Organization,
    held: list[StudyAccess],
    errors: FieldErrors,
    today: date,
) -> date | None:
    """The last day of access (None: unlimited), within the policy and the sender's own."""
    held_until = _held_until(held)
    if options.unlimited:
        if not organization.allow_unlimited_validity:
            errors.add(
                "unlimited", _("Your organization's policy does not allow unlimited access.")
            )
        elif held_until is not None:
            errors.add(
                "unlimited",
                _("Your own access ends on %(day)s: you cannot share it for longer.")
                % {"day": date_format(held_until, "DATE_FORMAT")},
            )
        return None
    maximum = _policy_maximum(organization, today)
    if options.valid_until is None:
        return _default_day(organization, held_until, today)
    day = options.valid_until
    if day < today:
        errors.add("valid_until", _("Choose today or a later day."))
    elif maximum is not None and day > maximum:
        errors.add(
            "valid_until",
            _("Your organization allows shares valid for at most %(days)s days.")
            % {"days": organization.max_share_validity_days},
        )
    elif held_until is not None and day > held_until:
        errors.add(
            "valid_until",
            _("Your own access ends on %(day)s: you cannot share it for longer.")
            % {"day": date_format(held_until, "DATE_FORMAT")},
        )
    return day


def _viewer_link(studies: Sequence[Study]) -> str:
    if len(studies) == 1:
        return f"{settings.SITE_URL}{reverse('studies:study', args=[studies[0].study_uid])}"
    return f"{settings.SITE_URL}{reverse('studies:directory')}"


def _message_context(
    *, share: Share, sender: User, studies: Sequence[Study], link: str
) -> dict[str, Any]:
    items = study_items(studies, share.anonymize)
    context = {
        "sender_name": sender.display_name,
        "link": link,
        "message": share.message,
        "urgent": share.urgent,
        "expires_at": share.valid_until,
    }
    if len(items) == 1:
        context.update(items[0])
    else:
        context["studies"] = items
    return context


def summary_of(share: Share) -> str:
    counts: dict[str, int] = {}
    for recipient in share.recipients.all():
        counts[recipient.kind] = counts.get(recipient.kind, 0) + 1
    who = ", ".join(f"{count} {kind}" for kind, count in counts.items())
    until = date_format(share.valid_until, "DATE_FORMAT") if share.valid_until else _("unlimited")
    count = share.studies.count()
    text = ngettext(
        "%(count)s study shared with %(who)s (%(level)s) until %(until)s",
        "%(count)s studies shared with %(who)s (%(level)s) until %(until)s",
        count,
    )
    return text % {
        "count": count,
        "who": who,
        "level": share.level,
        "until": until,
    }


# --- Sharing -----------------------------------------------------------------------------------


def senders_access(
    sender: User, studies: Sequence[Study], request=None
) -> dict[int, StudyAccess | None]:
    """The sender's access to each study. With the sender's own request, grants held in the
    session count too: a share whose SMS code was entered in this session can be shared further
    (its terms, two-factor included, pass on). Without one, only what the account holds."""
    if request is not None and getattr(request.user, "pk", None) == sender.pk:
        return studies_access(request, studies)
    return user_studies_access(sender, studies)


def studies_seen_by_sender(
    sender: User, uids: Sequence[str], request=None
) -> dict[str, tuple[Study, StudyAccess]]:
    """Of the studies these uids name, those the sender sees as sharing does
    (:func:`senders_access`), with the sender's access, by uid; the others are left out alike,
    whether they do not exist or are hidden. The Share dialog and the REST API find the studies
    to share here, so that one shares what the other does."""
    studies = list(
        Study.objects.select_related("patient", "organization").filter(study_uid__in=uids)
    )
    accesses = senders_access(sender, studies, request)
    return {
        study.study_uid: (study, access)
        for study in studies
        if (access := accesses[study.pk]) is not None
    }


def _check_sender(
    sender: User, studies: Sequence[Study], request=None
) -> tuple[Organization, list[StudyAccess]]:
    """The owning organization, and the sender's access to studies they hold through a share.
    Raises as ``share_studies`` documents when the sender may not share these studies."""
    if not studies:
        raise ValidationError({"studies": [_("Choose at least one study.")]})
    if len({study.organization_id for study in studies}) > 1:
        raise ValidationError({"studies": [_("Share studies of one organization at a time.")]})
    organization = Organization.objects.get(pk=studies[0].organization_id)
    if not (sender.is_authenticated and sender.is_active) or not _may(
        sender, Perm.SHARE_STUDY, organization
    ):
        raise PermissionDenied(_("You may not share studies."))
    held: list[StudyAccess] = []
    accesses = senders_access(sender, studies, request)
    for study in studies:
        access = accesses[study.pk]
        if access is None or not access.can_share:
            raise PermissionDenied(_("You may not share this study."))
        if access.via == "share":
            held.append(access)
    return organization, held


def shareable_study_ids(sender: User, studies: Sequence[Study], request=None) -> set[int]:
    """Of some studies, those the sender may share, each on its own (what :func:`_check_sender`
    asks of every study shared): the permission in the owning organization (or, holding it
    through a share from another organization, in the sender's own) and access that allows
    further sharing. The directory's menu offers Share on these only."""
    if not (sender.is_authenticated and sender.is_active) or not studies:
        return set()
    accesses = senders_access(sender, studies, request)
    permitted: dict[int, bool] = {}
    shareable = set()
    for study in studies:
        access = accesses[study.pk]
        if access is None or not access.can_share:
            continue
        if study.organization_id not in permitted:
            permitted[study.organization_id] = _may(
                sender, Perm.SHARE_STUDY, Organization(pk=study.organization_id)
            )
        if permitted[study.organization_id]:
            shareable.add(study.pk)
    return shareable


def share_terms(*, sender: User, studies: Sequence[Study], request=None) -> ShareTerms:
    """What the Share dialog offers for these studies. Raises PermissionDenied or
    ValidationError on "studies" exactly as ``share_studies`` would."""
    studies = list(dict.fromkeys(studies))
    organization, held = _check_sender(sender, studies, request)
    today = timezone.localdate()
    held_until = _held_until(held)
    bounds = [b for b in (_policy_maximum(organization, today), held_until) if b is not None]
    kinds = tuple(
        kind
        for kind, (perm, flag) in KIND_RULES.items()
        if getattr(organization, flag) and (perm is None or _may(sender, perm, organization))
    )
    return ShareTerms(
        organization=organization,
        recipient_kinds=kinds,
        default_valid_until=_default_day(organization, held_until, today),
        latest_valid_until=min(bounds, default=None),
        unlimited_allowed=organization.allow_unlimited_validity and held_until is None,
        anonymized=any(a.anonymized for a in held),
        two_factor_required=any(a.two_factor_required for a in held),
    )


@dataclass(frozen=True)
class _CheckedOptions:
    """The share's terms once ``options`` passed every rule: cleaned, and narrowed to what a
    share held by the sender passes on."""

    level: AccessLevel | None
    reason: str
    label: str
    label_scope: str
    language: str | None
    anonymize: bool
    two_factor: bool
    valid_until: date | None


def _check_texts(options: ShareOptions, errors: FieldErrors) -> None:
    reason = (options.reason or "").strip()
    if not reason:
        errors.add("reason", _("Register a reason for sharing: it is mandatory."))
    elif len(reason) > MAX_REASON_LENGTH:
        errors.add(
            "reason", _("Keep the reason under %(n)s characters.") % {"n": MAX_REASON_LENGTH}
        )
    if not options.patient_agreed:
        errors.add(
            "patient_agreed", _("Without the patient's consent the study may not be shared.")
        )
    if len(options.message or "") > MAX_MESSAGE_LENGTH:
        errors.add(
            "message", _("Keep the message under %(n)s characters.") % {"n": MAX_MESSAGE_LENGTH}
        )
    if len(options.label or "") > MAX_LABEL_LENGTH:
        errors.add("label", _("Keep the label under %(n)s characters.") % {"n": MAX_LABEL_LENGTH})
    if options.label_scope not in LabelScope.values:
        errors.add("label_scope", _("Choose “group” or “user”."))


def _check_language(options: ShareOptions, errors: FieldErrors) -> str | None:
    if not options.language:
        return None
    language = supported_language(options.language)
    if language is None:
        errors.add("language", _("Choose one of the portal's languages."))
    return language


def _check_policy_options(
    options: ShareOptions, organization: Organization, errors: FieldErrors
) -> None:
    """Options the owning organization's policy may disable."""
    if options.anonymize and not organization.allow_share_anonymize:
        errors.add("anonymize", _("Your organization's policy does not allow anonymized shares."))
    if options.two_factor and not organization.allow_share_two_factor:
        errors.add("two_factor", _("Your organization's policy does not allow SMS two-factor."))
    if options.allow_further_sharing and not organization.allow_further_sharing:
        errors.add(
            "allow_further_sharing",
            _("Your organization's policy does not allow recipients to share further."),
        )


def _check_options(
    options: ShareOptions,
    *,
    organization: Organization,
    held: list[StudyAccess],
    errors: FieldErrors,
) -> _CheckedOptions:
    """Every rule on the options, each broken one added to ``errors``."""
    try:
        level = AccessLevel(options.access)
    except ValueError:
        errors.add("access", _("Choose images, report_read or report_write."))
        level = None
    _check_texts(options, errors)
    label = (options.label or "").strip()
    language = _check_language(options, errors)
    _check_policy_options(options, organization, errors)
    # Further sharing never widens access.
    if level is not None and any(ACCESS_RANK[level] > ACCESS_RANK[a.level] for a in held):
        errors.add("access", _("You cannot give more access than you were given."))
    return _CheckedOptions(
        level=level,
        reason=(options.reason or "").strip(),
        label=label,
        # Without a label there is nothing to show to anyone: the choice is moot.
        label_scope=options.label_scope if label else LabelScope.GROUP,
        language=language,
        anonymize=options.anonymize or any(a.anonymized for a in held),
        two_factor=options.two_factor or any(a.two_factor_required for a in held),
        valid_until=_validity(options, organization, held, errors, timezone.localdate()),
    )


def _check_recipient_kinds(
    sender: User,
    organization: Organization,
    recipients: Sequence[Recipient],
    errors: FieldErrors,
) -> None:
    """Each kind needs its permission and the policy's consent; each refusal is said once."""
    refused_kinds: set[str] = set()
    for recipient in recipients:
        if recipient.kind not in KIND_RULES or recipient.kind in refused_kinds:
            continue
        perm, flag = KIND_RULES[recipient.kind]
        label = RecipientKind(recipient.kind).label
        if not getattr(organization, flag):
            errors.add(
                "recipients",
                _("Your organization's policy does not allow sharing with: %(kind)s.")
                % {"kind": label},
            )
            refused_kinds.add(recipient.kind)
        elif perm is not None and not _may(sender, perm, organization):
            errors.add(
                "recipients",
                _("Your role does not allow sharing with: %(kind)s.") % {"kind": label},
            )
            refused_kinds.add(recipient.kind)


def _check_recipients(
    sender: User,
    organization: Organization,
    recipients: Sequence[Recipient],
    *,
    star: Sequence[Recipient],
    level: AccessLevel | None,
    errors: FieldErrors,
) -> None:
    """Every rule on the recipients as named, before any is resolved."""
    if not recipients:
        errors.add("recipients", _("Choose at least one recipient."))
    elif len(recipients) > MAX_RECIPIENTS:
        errors.add("recipients", _("Choose at most %(n)s recipients.") % {"n": MAX_RECIPIENTS})
    _check_recipient_kinds(sender, organization, recipients, errors)
    if level == AccessLevel.IMAGES:
        refusal = _images_only_refusal(recipients, sender)
        if refusal:
            errors.add("access", refusal)
    if any(s not in recipients or s.kind not in STARRABLE_KINDS for s in star):
        errors.add("star", _("Star a user, group or location you share with."))


def _resolve_recipients(
    sender: User,
    recipients: Sequence[Recipient],
    checked: _CheckedOptions,
    errors: FieldErrors,
) -> list[_Resolved]:
    """The recipients resolved to their worklists, and the rules that need them resolved.
    Runs in the share's transaction: raising rolls back any worklist made while resolving."""
    # A recipient that does not resolve is refused in ``errors``; the rules below judge the others.
    resolved = [
        item
        for item in (_resolve(r, sender=sender, errors=errors) for r in recipients)
        if item is not None
    ]
    if checked.two_factor:
        # A user without a registered mobile could never receive the code to open it.
        unreachable = recipients_without_mobile(r.user for r in resolved)
        if unreachable:
            errors.add(
                "two_factor",
                _(
                    "SMS two-factor needs a registered mobile number, and %(names)s has "
                    "none. Share without two-factor, or ask them to add their number."
                )
                % {"names": ", ".join(str(user) for user in unreachable)},
            )
    if checked.label_scope == LabelScope.USER and not any(_is_personal(r) for r in resolved):
        errors.add(
            "label_scope",
            _(
                "A label only for the recipient user needs a user among the recipients: "
                "groups and locations would not see it. Choose “For the whole group”."
            ),
        )
    errors.raise_if_any()
    return resolved


def _add_recipients(
    share: Share, resolved: list[_Resolved], studies: Sequence[Study]
) -> list[dict[str, Any]]:
    """Write each recipient and the entries it gives; what the audit event says of them."""
    seen: set[tuple[int, int]] = set()
    audit_recipients = []
    for item in resolved:
        row = ShareRecipient.objects.create(
            share=share,
            kind=item.recipient.kind,
            user=item.user,
            group=item.group,
            location=item.location,
            worklist=item.worklist,
            email=item.email,
        )
        # The user, group or location id; a share code's worklist id; None while pending.
        target = item.user or item.group or item.location or item.worklist
        audit_recipients.append(
            {
                "kind": row.kind,
                "id": target.pk if target is not None else None,
                "pending": row.pending,
            }
        )
        if item.worklist is not None:
            grant_entries(row, studies, seen=seen)
    return audit_recipients


def _write_share(
    *,
    sender: User,
    organization: Organization,
    studies: Sequence[Study],
    resolved: list[_Resolved],
    options: ShareOptions,
    checked: _CheckedOptions,
    star: Sequence[Recipient],
    request=None,
) -> Share:
    """Write the share, its recipients and entries, its audit event, its messages, the stars
    and the sender's defaults, in the caller's transaction."""
    if checked.level is None:
        raise ValueError("A share is written only with options that passed their rules.")
    recipient_users = [r.user for r in resolved if r.user is not None]
    share = Share.objects.create(
        organization=organization,
        sender=sender,
        level=checked.level,
        reason=checked.reason,
        patient_agreed=True,
        valid_until=checked.valid_until,
        language=checked.language or choose_language([u.language for u in recipient_users]),
        label=checked.label,
        label_scope=checked.label_scope,
        urgent=options.urgent,
        anonymize=checked.anonymize,
        allow_further_sharing=options.allow_further_sharing,
        message=(options.message or "").strip(),
        two_factor=checked.two_factor,
        send_mail=options.send_mail,
    )
    share.studies.set(studies)
    audit_recipients = _add_recipients(share, resolved, studies)
    record_share_event(
        share,
        Action.SHARE_CREATED,
        actor=sender,
        request=request,
        studies=studies,
        details={
            "recipients": audit_recipients,
            "level": checked.level,
            "valid_until": checked.valid_until,
            "anonymize": checked.anonymize,
            "two_factor": checked.two_factor,
            "further_sharing": share.allow_further_sharing,
            "urgent": share.urgent,
            "send_mail": share.send_mail,
            "label_scope": share.label_scope,
            "reason": checked.reason,
        },
    )
    _queue_messages(share=share, sender=sender, studies=studies, resolved=resolved)
    starred = set(star)
    star_targets(
        owner=sender,
        targets=[
            target
            for r in resolved
            if r.recipient in starred and (target := r.user or r.group or r.location) is not None
        ],
    )
    if recipient_users:
        # The sender's own choices, not what a held two-factor share forced on this one.
        SenderDefaults.objects.update_or_create(
            user=sender,
            defaults={"two_factor": options.two_factor, "send_mail": options.send_mail},
        )
    return share


def share_studies(
    *,
    sender: User,
    studies: Sequence[Study],
    recipients: Sequence[Recipient],
    options: ShareOptions,
    star: Sequence[Recipient] = (),
    request=None,
) -> Share:
    """Share ``studies`` with ``recipients`` on the terms of ``options``.

    ``star``: recipients (among ``recipients``; users, groups or locations) the sender starred
    in the dialog; they become the sender's favorites in the same transaction, so only once the
    share is done. A share with a user remembers the sender's two-factor and send-mail choices
    for their next dialog (``SenderDefaults``).

    Raises PermissionDenied when the sender may not share at all or lacks re-sharable access to
    a study, and ValidationError({field: [message]}) for every other broken rule; nothing is
    shared then.
    """
    studies = list(dict.fromkeys(studies))
    organization, held = _check_sender(sender, studies, request)
    errors = FieldErrors()
    checked = _check_options(options, organization=organization, held=held, errors=errors)
    _check_recipients(
        sender, organization, recipients, star=star, level=checked.level, errors=errors
    )
    errors.raise_if_any()
    with transaction.atomic(durable=True):
        resolved = _resolve_recipients(sender, recipients, checked, errors)
        return _write_share(
            sender=sender,
            organization=organization,
            studies=studies,
            resolved=resolved,
            options=options,
            checked=checked,
            star=star,
            request=request,
        )


def _is_personal(resolved: _Resolved) -> bool:
    """Whether the recipient is one user: a personal worklist, or an email address whose
    entries go to a personal worklist once its owner registers."""
    if resolved.worklist is None:
        return True
    return resolved.worklist.kind == WorklistKind.PERSONAL


def _queue_messages(
    *, share: Share, sender: User, studies: Sequence[Study], resolved: list[_Resolved]
) -> None:
    if share.send_mail:
        addresses = list(
            dict.fromkeys(r.user.email for r in resolved if r.user is not None and r.user.email)
        )
        if addresses:
            queue_messages(
                channel=Channel.EMAIL,
                recipients=addresses,
                template=SHARE_TEMPLATE,
                context=_message_context(
                    share=share, sender=sender, studies=studies, link=_viewer_link(studies)
                ),
                language=share.language,
                concerning=("share", share.pk),
            )
    # An address without an account must register before it sees anything: always told.
    for row in share.recipients.filter(kind=RecipientKind.EMAIL, worklist__isnull=True):
        invite(
            recipient=row,
            context=_message_context(share=share, sender=sender, studies=studies, link=""),
        )


# --- Removing ----------------------------------------------------------------------------------


def remove_share(*, user: User, share: Share, request=None) -> bool:
    """End a share at once: the share and every entry it made. Returns whether this call ended
    it (False: it had already been removed)."""
    if not may_remove_share(user, share):
        raise PermissionDenied(_("You may not remove this share."))
    with transaction.atomic():
        current = Share.objects.select_for_update().get(pk=share.pk)
        if current.removed_at is not None:
            share.removed_at, share.removed_by_id = current.removed_at, current.removed_by_id
            return False
        now = timezone.now()
        current.removed_at, current.removed_by = now, user
        current.save(update_fields=["removed_at", "removed_by"])
        Entry.objects.filter(
            pk__in=ShareRecipient.entries.through.objects.filter(
                sharerecipient__share=current
            ).values("entry_id"),
            removed_at__isnull=True,
        ).update(removed_at=now)
        decisions.changed()
        record_share_event(
            current,
            Action.SHARE_REMOVED,
            actor=user,
            request=request,
            details={"sender": current.sender_id},
        )
    share.removed_at, share.removed_by = now, user
    return True
