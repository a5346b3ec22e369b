import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.utils.translation import gettext as _

from audit.models import Action
from audit.services import record

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
