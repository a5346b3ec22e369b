from django.conf import settings
from django.http import HttpRequest


def portal(request: HttpRequest) -> dict[str, object]:
    return {
        "SITE_NAME": settings.SITE_NAME,
        # Each named in its own language, as settings.LANGUAGES writes it: Django's
        # get_available_languages would translate "English" into the page's language.
        "PORTAL_LANGUAGES": settings.LANGUAGES,
        "DEMO_MODE": settings.DEMO_MODE,
    }
