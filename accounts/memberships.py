"""Which organizations a user belongs to, and what the roles held there grant.

Every "may this user do P (in this organization)?", "in which organizations does this user hold
P?" and "which organizations does this user administer?" is answered here, from the user's
active memberships, which ``portal.decisions`` remembers until a membership, role or
organization changes. What a user may do with a study is ``studies.access``'s question, which
starts from these answers.
"""

from django.contrib.auth.models import AnonymousUser

from accounts.models import Membership, Organization, User
from accounts.permissions import Perm
from portal import decisions


def active_memberships(user: User | AnonymousUser) -> list[Membership]:
    """The user's active memberships with their roles and organizations. Every access question
    starts here, several times a request: remembered (``portal.decisions``) until a membership,
    role or organization changes. An anonymous visitor has none, so everything below grants
    them nothing."""
    if not user.is_authenticated or not user.is_active:
        return []

    def read() -> tuple[list[Membership], None]:
        memberships = Membership.objects.filter(user=user, is_active=True).select_related(
            "role", "organization"
        )
        return list(memberships), None

    return decisions.remember(memberships_key(user.pk), read, scope=decisions.ACCOUNTS)


def memberships_key(user_id: int) -> str:
    """The remembered answer of :func:`active_memberships` for the user (for asking ahead)."""
    return f"memberships:{user_id}"


def member_organization_ids(user: User | AnonymousUser) -> set[int]:
    """The organizations the user is an active member of, whatever the role."""
    return {m.organization_id for m in active_memberships(user)}


def has_perm(
    user: User | AnonymousUser, perm: Perm, organization: Organization | None = None
) -> bool:
    """Whether one of the user's active memberships (in ``organization``, if given) grants it."""
    return any(
        m.role.grants(perm)
        for m in active_memberships(user)
        if organization is None or m.organization_id == organization.pk
    )


def organizations_with(user: User | AnonymousUser, perm: Perm) -> list[int]:
    """The organizations in which one of the user's active memberships grants ``perm``."""
    return [m.organization_id for m in active_memberships(user) if m.role.grants(perm)]


def administered_organization_ids(user: User | AnonymousUser) -> set[int]:
    """The organizations the user administers (a role there granting "Organization:
    administer"): whose audit trail they read, whose blocked shares they unblock and whose shares
    they remove, and whose accounts, locations, groups and DICOM nodes they manage in the admin."""
    return set(organizations_with(user, Perm.ADMINISTER))
