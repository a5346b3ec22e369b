"""Which language a message, or a page, is written in.

PACSonWEB's rule for a message to several recipients: the sender may pick the language; if not,
the language most recipients share, when strictly more than half of them share it; otherwise the
first recipient's language.
"""

from collections import Counter
from collections.abc import Sequence

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation


def supported_language(code: str | None) -> str | None:
    """The portal's language for ``code`` ("fr", "fr-BE", "FR_be" -> "fr"), or None if the portal
    has no such language."""
    if not code:
        return None
    supported = {language for language, _name in settings.LANGUAGES}
    normalized = code.strip().lower().replace("_", "-")
    if normalized in supported:
        return normalized
    primary = normalized.split("-", 1)[0]
    return primary if primary in supported else None


def speak(request: HttpRequest, code: str | None) -> None:
    """Answer ``request`` in the portal's language for ``code``, when the portal has it (after
    Django's LocaleMiddleware chose one from the cookie or the browser)."""
    language = supported_language(code)
    if language is not None and language != request.LANGUAGE_CODE:
        translation.activate(language)
        request.LANGUAGE_CODE = language


def choose_language(languages: Sequence[str], override: str | None = None) -> str:
    """The language of one message sent to recipients who speak ``languages`` (in the order the
    sender listed them). A recipient without a usable language counts as the portal's default."""
    chosen = supported_language(override)
    if chosen:
        return chosen
    spoken = [supported_language(code) or settings.LANGUAGE_CODE for code in languages]
    if not spoken:
        return settings.LANGUAGE_CODE
    language, count = Counter(spoken).most_common(1)[0]
    if count * 2 > len(spoken):
        return language
    return spoken[0]


def language_of(user: object) -> str:
    """The language a user reads messages in (their profile's), or the portal's default."""
    return supported_language(getattr(user, "language", None)) or settings.LANGUAGE_CODE
