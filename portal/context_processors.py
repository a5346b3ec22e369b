from django.conf import settings


def portal(request) -> dict:
    return {
        "SITE_NAME": settings.SITE_NAME,
        # Each named in its own language, as settings.LANGUAGES writes it: Django's
        # get_available_languages would translate "English" into the page's language.
        "PORTAL_LANGUAGES": settings.LANGUAGES,
        "DEMO_MODE": settings.DEMO_MODE,
    }
