"""Reads for the Share dialog, the Shares page and the REST API: finding recipients, listing
favorites, the shares a user may manage with their studies as that user may see them, and the
share codes of the user's worklists.

A sender finds the users, groups and locations ("radiology departments") they could share with,
and nothing else. The reachability rules live here alone (``reachable_users``,
``reachable_groups``, ``reachable_locations``), and ``sharing.services.shares`` asks them when it
resolves a recipient:

- users with an active membership in one of the sender's organizations or in a searchable
  organization (only those memberships are named; a non-searchable organization's users are
  never listed through it);
- groups of the sender's organizations, and searchable groups of searchable organizations;
- locations of the sender's organizations and of searchable organizations.

Users are found by first name, last name and physician number, and by mobile number and email
address only where they made them public; a result never carries a mobile number or an email
address that is not public.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import HttpRequest
from django.utils.formats import date_format

from accounts.memberships import (
    administered_organization_ids,
    has_perm,
    member_organization_ids,
)
from accounts.models import Group, Location, Membership, User
from accounts.permissions import Perm
from sharing.access import recipients_of
from sharing.models import Favorite, RecipientKind, Share, ShareRecipient
from studies.access import (
    active_entries,
    studies_access,
    visible_worklist_ids,
    visible_worklists,
)
from studies.anonymize import PatientDisplay, patient_display
from studies.models import EntryOrigin, Study, Worklist

SEARCH_KINDS = (RecipientKind.USER, RecipientKind.GROUP, RecipientKind.LOCATION)
# The permission and the policy flag each recipient kind needs (besides SHARE_STUDY).
KIND_RULES: dict[str, tuple[Perm | None, str]] = {
    RecipientKind.USER: (Perm.SHARE_USERS, "allow_share_users"),
    RecipientKind.GROUP: (Perm.SHARE_GROUPS, "allow_share_groups"),
    RecipientKind.LOCATION: (Perm.SHARE_LOCATIONS, "allow_share_locations"),
    RecipientKind.SHARE_CODE: (None, "allow_share_codes"),
    RecipientKind.EMAIL: (Perm.SHARE_EMAIL, "allow_share_email"),
}
MIN_QUERY_LENGTH = 2
MAX_QUERY_LENGTH = 100
MAX_RESULTS = 20
_PHONE_SEPARATORS = re.compile(r"[\s().\-/]")


@dataclass(frozen=True)
class RecipientResult:
    """One user, group or location as a search result or a favorite shows it."""

    kind: str
    id: int
    name: str
    organization: str
    physician_number: str = ""
    # Only where the user made them public.
    email: str = ""
    mobile: str = ""

    @property
    def kind_label(self) -> str:
        return str(RecipientKind(self.kind).label)

    @property
    def key(self) -> str:
        """``kind:id``, what the dialog's buttons post to choose this recipient."""
        return f"{self.kind}:{self.id}"

    def as_api(self) -> dict[str, Any]:
        data = {
            "kind": self.kind,
            "id": self.id,
            "name": self.name,
            "organization": self.organization,
        }
        if self.kind == RecipientKind.USER:
            data["physician_number"] = self.physician_number
            for name in ("email", "mobile"):
                if getattr(self, name):
                    data[name] = getattr(self, name)
        return data


@dataclass(frozen=True)
class RecipientQuery:
    """A quick search (``text`` over every field) or a detailed one (``name``,
    ``physician_number``, ``organization``), optionally for one kind."""

    text: str = ""
    kind: str | None = None
    name: str = ""
    physician_number: str = ""
    organization: str = ""

    @property
    def is_empty(self) -> bool:
        return not any(
            len(value.strip()) >= MIN_QUERY_LENGTH
            for value in (self.text, self.name, self.physician_number, self.organization)
        )


@dataclass
class FavoriteItem:
    favorite: Favorite
    recipient: RecipientResult = field(repr=False)


# --- Reachability ------------------------------------------------------------------------------


def _reachable_memberships(sender_orgs: set[int]) -> Q:
    return Q(is_active=True) & (
        Q(organization_id__in=sender_orgs) | Q(organization__searchable=True)
    )


def reachable_users(sender: User) -> QuerySet[User]:
    """The active users with a membership through which the sender may reach them."""
    memberships = Membership.objects.filter(_reachable_memberships(member_organization_ids(sender)))
    return User.objects.filter(is_active=True).filter(
        Exists(memberships.filter(user=OuterRef("pk")))
    )


def _listed_users(sender: User) -> QuerySet[User]:
    """:func:`reachable_users` as searches and favorites list them: without the sender, with
    the memberships through which each is reachable (the only organizations a result names)."""
    memberships = Membership.objects.filter(_reachable_memberships(member_organization_ids(sender)))
    return (
        reachable_users(sender)
        .exclude(pk=sender.pk)
        .prefetch_related(
            Prefetch(
                "memberships",
                queryset=memberships.select_related("organization").order_by("organization__name"),
                to_attr="reachable_memberships",
            )
        )
    )


def reachable_groups(sender: User) -> QuerySet[Group]:
    sender_orgs = member_organization_ids(sender)
    return Group.objects.filter(
        Q(organization_id__in=sender_orgs) | Q(searchable=True, organization__searchable=True)
    ).select_related("organization")


def reachable_locations(sender: User) -> QuerySet[Location]:
    sender_orgs = member_organization_ids(sender)
    return Location.objects.filter(
        Q(organization_id__in=sender_orgs) | Q(organization__searchable=True)
    ).select_related("organization")


def searchable_kinds(sender: User) -> list[str]:
    """The kinds this sender may look for: none without the share permission, and each kind
    behind its own permission (in any of the sender's organizations: the owning organization
    of the studies decides again when the share is made)."""
    if not has_perm(sender, Perm.SHARE_STUDY):
        return []
    return [kind for kind in SEARCH_KINDS if _kind_permitted(sender, kind)]


def _kind_permitted(sender: User, kind: str) -> bool:
    perm = KIND_RULES[kind][0]
    return perm is None or has_perm(sender, perm)


# --- Results -----------------------------------------------------------------------------------


def _user_result(user: User) -> RecipientResult:
    memberships = getattr(user, "reachable_memberships", None)
    if memberships is None:
        memberships = []
    return RecipientResult(
        kind=RecipientKind.USER,
        id=user.pk,
        name=str(user),
        organization=", ".join(m.organization.name for m in memberships),
        physician_number=user.physician_number,
        email=user.email if user.email_public else "",
        mobile=user.mobile if user.mobile_public else "",
    )


def _group_result(group: Group) -> RecipientResult:
    return RecipientResult(
        kind=RecipientKind.GROUP,
        id=group.pk,
        name=group.name,
        organization=group.organization.name,
    )


def _location_result(location: Location) -> RecipientResult:
    return RecipientResult(
        kind=RecipientKind.LOCATION,
        id=location.pk,
        name=location.name,
        organization=location.organization.name,
    )


def _words(text: str) -> list[str]:
    return [word for word in text[:MAX_QUERY_LENGTH].split() if word][:6]


def _phone_digits(text: str) -> str:
    """A typed phone number's significant digits ("+32 470 12 34 56" and "0470 123456" both
    end up inside the stored "+32470123456"); empty unless it looks like a phone number."""
    compact = _PHONE_SEPARATORS.sub("", text.strip())
    if not re.fullmatch(r"\+?\d{6,15}", compact):
        return ""
    digits = compact.lstrip("+")
    # A national number's trunk prefix is not part of the international form.
    return digits[1:] if not compact.startswith("+") and digits.startswith("0") else digits


def _user_text_condition(text: str) -> Q:
    condition = Q()
    for word in _words(text):
        condition &= (
            Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(physician_number__icontains=word)
            | Q(email_public=True, email__icontains=word)
        )
    digits = _phone_digits(text)
    if digits:
        condition |= Q(mobile_public=True, mobile__contains=digits)
    return condition


def _name_condition(text: str, *fields: str) -> Q:
    condition = Q()
    for word in _words(text):
        any_field = Q()
        for name in fields:
            any_field |= Q(**{f"{name}__icontains": word})
        condition &= any_field
    return condition


def _users(sender: User, query: RecipientQuery) -> list[RecipientResult]:
    users = _listed_users(sender)
    if query.text.strip():
        users = users.filter(_user_text_condition(query.text))
    if query.name.strip():
        users = users.filter(_name_condition(query.name, "first_name", "last_name"))
    if query.physician_number.strip():
        users = users.filter(physician_number__icontains=query.physician_number.strip()[:40])
    if query.organization.strip():
        # Only the organizations through which the user is reachable may match.
        sender_orgs = member_organization_ids(sender)
        memberships = Membership.objects.filter(_reachable_memberships(sender_orgs)).filter(
            _name_condition(query.organization, "organization__name")
        )
        users = users.filter(Exists(memberships.filter(user=OuterRef("pk"))))
    users = users.order_by("last_name", "first_name", "pk")[:MAX_RESULTS]
    return [_user_result(user) for user in users]


def _groups(sender: User, query: RecipientQuery) -> list[RecipientResult]:
    groups = reachable_groups(sender)
    if query.text.strip():
        groups = groups.filter(_name_condition(query.text, "name", "organization__name"))
    if query.name.strip():
        groups = groups.filter(_name_condition(query.name, "name"))
    if query.organization.strip():
        groups = groups.filter(_name_condition(query.organization, "organization__name"))
    if query.physician_number.strip():
        return []
    groups = groups.order_by("name", "organization__name", "pk")[:MAX_RESULTS]
    return [_group_result(group) for group in groups]


def _locations(sender: User, query: RecipientQuery) -> list[RecipientResult]:
    locations = reachable_locations(sender)
    if query.text.strip():
        locations = locations.filter(_name_condition(query.text, "name", "organization__name"))
    if query.name.strip():
        locations = locations.filter(_name_condition(query.name, "name"))
    if query.organization.strip():
        locations = locations.filter(_name_condition(query.organization, "organization__name"))
    if query.physician_number.strip():
        return []
    locations = locations.order_by("name", "organization__name", "pk")[:MAX_RESULTS]
    return [_location_result(location) for location in locations]


# Keyed by the kinds' values: a query names its kind as text.
_SEARCHES: dict[str, Callable[[User, RecipientQuery], list[RecipientResult]]] = {
    RecipientKind.USER: _users,
    RecipientKind.GROUP: _groups,
    RecipientKind.LOCATION: _locations,
}


def search_recipients(
    sender: User, query: RecipientQuery, *, kinds: list[str] | tuple[str, ...] | None = None
) -> list[RecipientResult]:
    """The recipients matching ``query`` that ``sender`` could share with, users first, at most
    ``MAX_RESULTS`` of each kind. ``kinds`` narrows further (the dialog passes the kinds the
    owning organization allows); an empty or too short query finds nothing."""
    if query.is_empty:
        return []
    allowed = searchable_kinds(sender)
    if kinds is not None:
        allowed = [kind for kind in allowed if kind in kinds]
    if query.kind:
        allowed = [kind for kind in allowed if kind == query.kind]
    results: list[RecipientResult] = []
    for kind in allowed:
        results.extend(_SEARCHES[kind](sender, query))
    return results


def recipient_by_id(sender: User, kind: str, pk: int) -> RecipientResult | None:
    """One user, group or location the sender could share with, or None (unknown and
    unreachable alike)."""
    if kind == RecipientKind.USER:
        user = _listed_users(sender).filter(pk=pk).first()
        return _user_result(user) if user else None
    if kind == RecipientKind.GROUP:
        group = reachable_groups(sender).filter(pk=pk).first()
        return _group_result(group) if group else None
    if kind == RecipientKind.LOCATION:
        location = reachable_locations(sender).filter(pk=pk).first()
        return _location_result(location) if location else None
    return None


# --- Favorites ---------------------------------------------------------------------------------


def favorites_of(
    owner: User, *, kinds: list[str] | tuple[str, ...] | None = None
) -> list[FavoriteItem]:
    """The owner's favorites they could still share with (an organization that stopped being
    searchable hides its users, groups and locations here too), in the order starred."""
    favorites = Favorite.objects.filter(owner=owner)
    if kinds is not None:
        favorites = favorites.filter(kind__in=kinds)
    wanted: dict[str, list[int]] = {kind: [] for kind in SEARCH_KINDS}
    rows = list(favorites)
    for favorite in rows:
        wanted[favorite.kind].append(favorite.target_id)
    found: dict[tuple[str, int], RecipientResult] = {}
    if wanted[RecipientKind.USER]:
        for user in _listed_users(owner).filter(pk__in=wanted[RecipientKind.USER]):
            found[(RecipientKind.USER, user.pk)] = _user_result(user)
    if wanted[RecipientKind.GROUP]:
        for group in reachable_groups(owner).filter(pk__in=wanted[RecipientKind.GROUP]):
            found[(RecipientKind.GROUP, group.pk)] = _group_result(group)
    if wanted[RecipientKind.LOCATION]:
        for location in reachable_locations(owner).filter(pk__in=wanted[RecipientKind.LOCATION]):
            found[(RecipientKind.LOCATION, location.pk)] = _location_result(location)
    items = []
    for favorite in rows:
        result = found.get((favorite.kind, favorite.target_id))
        if result is not None:
            items.append(FavoriteItem(favorite=favorite, recipient=result))
    return items


# --- Shares a user may manage ------------------------------------------------------------------


def recipient_name(recipient: ShareRecipient) -> str:
    """Who a share was for, as its sender or an administrator knows them: the user, group or
    location; for an email share the address it was sent to, before and after its owner
    registers; for a share code the worklist."""
    if recipient.kind == RecipientKind.EMAIL:
        return recipient.email
    target = recipient.user or recipient.group or recipient.location or recipient.worklist
    return str(target) if target is not None else ""


def _study_summary(study: Study) -> str:
    return " · ".join(
        part
        for part in (
            study.description or study.modalities,
            date_format(study.study_date, "DATE_FORMAT") if study.study_date else "",
        )
        if part
    )


def study_summaries(share: Share, limit: int = 5) -> tuple[list[str], int]:
    """The first studies of a share as "description · date" (never the patient: these lists are
    screens an office shares), and how many more there are."""
    studies = list(share.studies.order_by("pk")[: limit + 1])
    lines = [_study_summary(study) for study in studies[:limit]]
    more = share.studies.count() - limit if len(studies) > limit else 0
    return lines, more


@dataclass(frozen=True)
class SharedStudy:
    """One study of a share as the Shares page names it to whoever looks: the patient only to
    someone who may see the study now, and then as they may see it (a study held through an
    anonymized share shows the pseudonym, one behind an SMS code not entered in this session
    shows no patient)."""

    study: Study
    patient: PatientDisplay | None

    @property
    def summary(self) -> str:
        """Description (or modalities) and date."""
        return _study_summary(self.study)


def shared_studies(
    request: HttpRequest, shares: list[Share], *, limit: int = 5
) -> dict[int, tuple[list[SharedStudy], int]]:
    """For each share (by id): its first ``limit`` studies with their patient as the request's
    user may see them (``studies.access``, asked once for all of them), and how many more."""
    firsts: dict[int, list[Study]] = {}
    more: dict[int, int] = {}
    for share in shares:
        studies = list(share.studies.select_related("patient").order_by("pk")[: limit + 1])
        firsts[share.pk] = studies[:limit]
        more[share.pk] = share.studies.count() - limit if len(studies) > limit else 0
    every = list({study.pk: study for studies in firsts.values() for study in studies}.values())
    accesses = studies_access(request, every) if every else {}
    found = {}
    for share_id, studies in firsts.items():
        lines = []
        for study in studies:
            access = accesses.get(study.pk)
            patient = (
                patient_display(study, anonymized=access.anonymized) if access is not None else None
            )
            lines.append(SharedStudy(study=study, patient=patient))
        found[share_id] = (lines, more[share_id])
    return found


# --- Share codes -------------------------------------------------------------------------------

_WORKLIST_ORDER = {"location": 0, "group": 1, "personal": 2}


def worklist_share_codes(user: User) -> list[Worklist]:
    """The worklists whose share code the user may hand out (CIMAR: "Share to a worklist's
    unique share code", which reaches any worklist of any organization): those the user works
    from, for a user who may share studies. Whoever is given a code can share into that
    worklist, so it is shown to no one else."""
    if not (user.is_authenticated and user.is_active) or not has_perm(user, Perm.SHARE_STUDY):
        return []
    worklists = visible_worklists(user).select_related("organization")
    return sorted(
        worklists, key=lambda w: (_WORKLIST_ORDER.get(w.kind, 9), w.name.casefold(), w.pk)
    )


def received_shares(user: User) -> QuerySet[Share]:
    """The running shares a user receives, as ``studies.access`` counts access: of a share not
    removed, a recipient that is not blocked and that made an active entry (not removed,
    blocked or expired) in one of the user's worklists."""
    entries = active_entries().filter(
        origin=EntryOrigin.SHARE, worklist_id__in=visible_worklist_ids(user)
    )
    running = recipients_of(entries).filter(blocked_at__isnull=True)
    return Share.objects.filter(pk__in=running.values("share_id"))


def manageable_shares(user: User) -> QuerySet[Share]:
    """The shares a user may remove, newest first: those they sent, and those of the
    organizations they administer (every share for a superuser). The one rule on removing a
    share: :func:`may_remove_share` and ``remove_share`` ask it too."""
    if not (user.is_authenticated and user.is_active):
        return Share.objects.none()
    shares = Share.objects.select_related("sender", "organization")
    if user.is_superuser:
        return shares
    administered = administered_organization_ids(user)
    return shares.filter(Q(sender=user) | Q(organization_id__in=administered))


def may_remove_share(user: User, share: Share) -> bool:
    return manageable_shares(user).filter(pk=share.pk).exists()
