"""Who must use two-factor authentication, asked by the login flow, the two-factor middleware,
the API token endpoint and API token authentication (REST and DICOMweb) alike.

Administrators always must: staff and superusers (the Django admin and its audit trail), and
every user whose role in an organization grants "Organization: administer". Every other user
must when one of their organizations' policy says so (``Organization.require_two_factor``), and
anyone may set it up. A user with a device always logs in with its code.
"""

from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.memberships import active_memberships, administered_organization_ids
from accounts.models import User
from portal import decisions


def has_two_factor(user: User) -> bool:
    """Whether the user has a confirmed authenticator app. Asked on every page of a session
    that has not passed a code: remembered (``portal.decisions``) until a device changes."""

    def read() -> tuple[bool, None]:
        return TOTPDevice.objects.devices_for_user(user, confirmed=True).exists(), None

    return decisions.remember(f"has-two-factor:{user.pk}", read, scope=decisions.ACCOUNTS)


def two_factor_required(user: User) -> bool:
    """Whether the user must have two-factor authentication (see the module's docstring): asked
    of the user's active memberships (``accounts.memberships``), remembered until a membership,
    role, organization or the user changes."""
    if not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True

    return bool(administered_organization_ids(user)) or any(
        m.organization.require_two_factor for m in active_memberships(user)
    )


def needs_two_factor(user: User) -> bool:
    """Whether a login, session or token of this user counts only with a one-time code: the
    user has a device, or must have one."""
    return has_two_factor(user) or two_factor_required(user)
