import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME, logout
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from accounts.policy import has_two_factor, two_factor_required
from audit.models import Action
from audit.services import record
from notifications.languages import speak

SESSION_STARTED_KEY = "_session_started"
LAST_SEEN_KEY = "_last_seen"


class SessionLifetimeMiddleware:
    """Ends an authenticated session after SESSION_IDLE_TIMEOUT seconds without a request, and
    any session SESSION_COOKIE_AGE seconds after it began, however active.

    The absolute limit is enforced here rather than left to the cookie: the idle bookkeeping
    saves the session, and every save moves the server-side expiry forward.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = int(time.time())
            started = request.session.setdefault(SESSION_STARTED_KEY, now)
            last_seen = request.session.get(LAST_SEEN_KEY, now)
            idle = now - last_seen > settings.SESSION_IDLE_TIMEOUT
            too_old = now - started > settings.SESSION_COOKIE_AGE
            if idle or too_old:
                self._end(request, idle=idle)
            elif now - last_seen >= 60 or LAST_SEEN_KEY not in request.session:
                # Written at most once a minute so most requests do not rewrite the session.
                request.session[LAST_SEEN_KEY] = now
        return self.get_response(request)

    @staticmethod
    def _end(request, *, idle: bool) -> None:
        record(
            action=Action.SESSION_EXPIRED,
            request=request,
            details={"reason": "idle" if idle else "maximum age"},
        )
        logout(request)
        messages.info(
            request,
            _("You were logged out after 30 minutes without activity.")
            if idle
            else _("Your session reached its 12-hour limit. Please log in again."),
        )


# Pages a user who still owes the second factor may open: setting it up, giving the code, and
# leaving. The administration (namespace "admin") applies its own, stricter rule to all staff.
_TWO_FACTOR_PAGES = frozenset(
    {
        "accounts:two_factor",
        "accounts:two_factor_verify",
        "accounts:logout",
        "accounts:login",
        # The texts of the two-factor pages' own scripts.
        "javascript_catalog",
    }
)
# Paths answered in JSON (the REST API, DICOMweb): a refusal, not a redirect to a page.
_MACHINE_PREFIXES = ("/api/", "/dicomweb/")


class TwoFactorMiddleware:
    """Holds a session that has not given a one-time code to the pages above when its user has
    a device (the session began before it was set up) or must have one (``accounts.policy``):
    to the code page, or to the set-up page; the REST API and DICOMweb answer 403. A session
    verified with a code costs nothing here; an unverified one a query or two per request.

    Install after ``django_otp.middleware.OTPMiddleware``. API tokens are checked where they
    are read (``accounts.authentication``), not here: a token request has no session user."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = request.user
        if not user.is_authenticated or user.is_verified():
            return None
        match = request.resolver_match
        if match is not None and (
            match.view_name in _TWO_FACTOR_PAGES or "admin" in match.namespaces
        ):
            return None
        if has_two_factor(user):
            page, reason = (
                "accounts:two_factor_verify",
                _("Enter the code from your authenticator app to go on."),
            )
        elif two_factor_required(user):
            page, reason = (
                "accounts:two_factor",
                _(
                    "Your account must use two-factor authentication. Set up an authenticator app "
                    "here; you will then be taken where you were going."
                ),
            )
        else:
            return None
        if request.path_info.startswith(_MACHINE_PREFIXES):
            return JsonResponse({"detail": str(reason)}, status=403)
        messages.warning(request, reason)
        query = urlencode({REDIRECT_FIELD_NAME: request.get_full_path()})
        return redirect(f"{reverse(page)}?{query}")


class UserLanguageMiddleware:
    """A logged-in user reads every page in the language stored on their account, whatever the
    browser asks for (after Django's LocaleMiddleware, which serves everyone else from the
    language menu's cookie or the browser's languages)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            speak(request, request.user.language)
        return self.get_response(request)
