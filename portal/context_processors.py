from django.conf import settings
from django.utils.functional import SimpleLazyObject

from accounts.memberships import has_perm
from accounts.permissions import Perm


def portal(request):
    user = getattr(request, "user", None)
    return {
        "SITE_NAME": settings.SITE_NAME,
        # Each named in its own language, as settings.LANGUAGES writes it: Django's
        # get_available_languages would translate "English" into the page's language.
        "PORTAL_LANGUAGES": settings.LANGUAGES,
        "DEMO_MODE": settings.DEMO_MODE,
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
                and (user.is_superuser or has_perm(user, Perm.ADMINISTER))
            )
        ),
    }
