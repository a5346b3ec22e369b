"""Reads of guest links: the target a request names and whether the user may see it, who may
create, delete or revoke links (one answer for the services that act, the dialog that explains
and the menu that offers Send Link), and a study's list of links.

Everything starts from :mod:`studies.access`: a target the user cannot reach there is no target
here, and a study held only through a narrower share is never one a link may hand on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.memberships import active_memberships, has_perm, organizations_with
from accounts.models import Organization, User
from accounts.permissions import Perm
from guestlinks.models import GuestLink, LinkState, TargetKind
from guestlinks.services.state import LinkStatus, link_status
from guestlinks.tokens import recovered_link_url
from portal.prepared_queries import prepared_models
from studies.access import (
    passes_on_in_full,
    user_studies_access,
    user_study_access,
    visible_worklist_ids,
    visible_worklists,
)
from studies.models import Folder, Study, Worklist

# --- The link a token names --------------------------------------------------------------------

# What the link page and the gates read besides the link: its organization's name, and the study
# and patient its audit events name.
_LINK_PAGE_RELATIONS = ("organization", "study__patient")


def _links_with_digests(digests: list[str]) -> QuerySet[GuestLink]:
    # Digests are unique: no order is needed to take the one match.
    return (
        GuestLink.objects.select_related(*_LINK_PAGE_RELATIONS)
        .filter(token_digest__in=digests)
        .order_by()[:1]
    )


def link_by_token_digests(digests: Sequence[str]) -> GuestLink | None:
    """The link whose token has one of these keyed digests (``guestlinks.tokens``), whatever its
    state, with its organization, study and patient; None if there is none. The link page is
    the busiest address anyone may fetch without logging in (recipients, mail scanners, chat
    previews), and building this one query took four times as long as running it: it is built
    once (``portal.prepared_queries``)."""
    found = prepared_models(_links_with_digests, digests)
    return found[0] if found else None


# --- Targets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkTarget:
    """Exactly one study, worklist or folder."""

    study: Study | None = None
    worklist: Worklist | None = None
    folder: Folder | None = None

    def __post_init__(self) -> None:
        if sum(item is not None for item in (self.study, self.worklist, self.folder)) != 1:
            raise ValueError("A link target is exactly one study, worklist or folder.")

    @classmethod
    def of(cls, link: GuestLink) -> LinkTarget:
        """What ``link`` names."""
        return cls(study=link.study, worklist=link.worklist, folder=link.folder)

    @property
    def item(self) -> Study | Worklist | Folder:
        """The study, worklist or folder."""
        # __post_init__ holds exactly one of the three.
        return cast(Study | Worklist | Folder, self.study or self.worklist or self.folder)

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
        item = self.item
        if isinstance(item, Folder):
            return item.worklist.organization_id
        return item.organization_id

    @property
    def audit_id(self) -> str:
        """The target's identifier for audit details (UIDs and ids carry no patient data)."""
        if self.study is not None:
            return self.study.study_uid
        return str(self.item.pk)


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


# --- Targets and permissions -------------------------------------------------------------------


def sees_target(user: User, target: LinkTarget) -> bool:
    """Whether the user reaches the target through the portal's access rules."""
    if target.study is not None:
        return user_study_access(user, target.study) is not None
    item = target.item
    worklist_id = item.worklist_id if isinstance(item, Folder) else item.pk
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
    item = target.item
    return item.pk in linkable_target_ids(user, target.kind, [item])


def linkable_target_ids(user: User, kind: str, targets: list[Any]) -> set[int]:
    """Of some studies, worklists or folders (``kind``), the keys of those the user may send a
    link to (:func:`may_create_links`), reading the user's access once for all of them: the
    directory's menu offers Send Link on these only."""
    permitted = set(organizations_with(user, Perm.CREATE_LINKS))
    if not permitted or not targets:
        return set()
    if kind == TargetKind.STUDY:
        accesses = user_studies_access(user, targets)
        return {
            study.pk
            for study in targets
            if study.organization_id in permitted and passes_on_in_full(accesses[study.pk])
        }
    visible = set(visible_worklist_ids(user))
    if kind == TargetKind.WORKLIST:
        # The page's worklists carry their organization.
        return {
            worklist.pk
            for worklist in targets
            if worklist.pk in visible and worklist.organization_id in permitted
        }
    worklist_of = {folder.pk: folder.worklist_id for folder in targets}
    organization_of = dict(
        Worklist.objects.filter(pk__in=set(worklist_of.values()) & visible).values_list(
            "pk", "organization_id"
        )
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


def may_delete_link(user: User, link: GuestLink) -> bool:
    return has_perm(user, Perm.DELETE_LINKS, Organization(pk=link.organization_id)) and sees_target(
        user, LinkTarget.of(link)
    )


def may_revoke_link(user: User, link: GuestLink) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return user.is_superuser or has_perm(
        user, Perm.REVOKE_ANY_LINK, Organization(pk=link.organization_id)
    )


# --- A study's links ---------------------------------------------------------------------------


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
        rows.append(
            LinkRow(
                link=link,
                status=status,
                url=recovered_link_url(link) if status.is_open else None,
                can_delete=permissions.can_delete and link.state == LinkState.ACTIVE,
            )
        )
    return rows
