from django.utils.functional import SimpleLazyObject

from accounts.memberships import administered_organization_ids, has_perm
from accounts.permissions import Perm


def navigation(request) -> dict:
    """What the navigation offers the signed-in user: upload, share, and the administration."""
    user = getattr(request, "user", None)
    return {
        # Lazy: only pages that show the navigation pay for the membership lookup.
        "can_upload": SimpleLazyObject(
            lambda: bool(user and user.is_authenticated and has_perm(user, Perm.UPLOAD_STUDIES))
        ),
        "can_share": SimpleLazyObject(
            lambda: bool(user and user.is_authenticated and has_perm(user, Perm.SHARE_STUDY))
        ),
        # Organization administrators (and the service desk) unblock shares: the nav links them.
        "can_administer": SimpleLazyObject(
            lambda: bool(
                user
                and user.is_authenticated
                and (user.is_superuser or bool(administered_organization_ids(user)))
            )
        ),
    }
