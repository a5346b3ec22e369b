from collections.abc import Callable, Iterator
from typing import cast

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.http import FileResponse, HttpRequest, HttpResponseBase, StreamingHttpResponse

from portal import decisions, worker_heartbeat
from portal.http import is_error_page, may_be_cached_privately

GetResponse = Callable[[HttpRequest], HttpResponseBase]

# Every dynamic page may show patient data, so none of them may be kept by a browser or proxy.
_NO_STORE = "no-store, max-age=0"


def content_security_policy() -> str:
    """The portal's policy; with OHIF configured, its forms may also lead there: "Open in OHIF"
    posts to the portal, which answers with a redirect to OHIF, and browsers hold a form's
    redirects to its page's form-action. Nothing else of the policy changes."""
    policy = settings.CONTENT_SECURITY_POLICY
    if settings.OHIF_URL:
        policy = policy.replace("form-action 'self'", f"form-action 'self' {settings.OHIF_URL}")
    return policy


class SecurityHeadersMiddleware:
    """Adds the headers Django 5.2 does not set itself: a strict Content-Security-Policy (the
    templates carry no inline script or style) and ``Cache-Control: no-store`` on everything that
    is not a static asset or a response its view let browsers keep (``allow_private_caching``)."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"
        )
        if not request.path.startswith(settings.STATIC_URL) and not may_be_cached_privately(
            response
        ):
            response.headers["Cache-Control"] = _NO_STORE
            response.headers.setdefault("Pragma", "no-cache")
        return response


class StreamingHeartbeatMiddleware:
    """A streamed answer (a study's ZIP, a WADO-RS retrieve) reports to gunicorn's master while
    its chunks go out (``portal.worker_heartbeat``), so that one longer than the worker timeout
    is not cut off. A file answer is left to the server's own file sending, an asynchronous
    stream to an asynchronous server."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if (
            isinstance(response, StreamingHttpResponse)
            and not isinstance(response, FileResponse)
            and not response.is_async
        ):
            chunks = cast("Iterator[bytes]", response.streaming_content)  # not async: checked
            response.streaming_content = worker_heartbeat.reporting(chunks)
        return response


class DemoNotFoundMiddleware:
    """In the demo (``DEMO_MODE``, which runs with ``DEBUG`` on) a page that does not exist is the
    portal's own "Not found" page, as on a real installation, not Django's technical one: that
    page is unstyled, breaks the Content-Security-Policy with its inline style, and lists the
    site's URL patterns to any visitor. Outside the demo, a developer keeps the technical page."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if (
            settings.DEMO_MODE
            and response.status_code == 404
            and response.get("Content-Type", "").startswith("text/html")
            and not is_error_page(response)
        ):
            from portal.views import page_not_found

            return page_not_found(request)
        return response


class DecisionsMiddleware:
    """Each request asks the shared cache for a remembered answer once (``portal.decisions``)."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        with decisions.kept_for_request():
            return self.get_response(request)


class DecisionsAheadMiddleware:
    """A logged-in user's request asks the shared cache, in one round trip before anything else,
    for the remembered answers the user's last request in this process asked for
    (``decisions.ask_as_last_time``), rather than for each when it is first needed: who the
    session's user is (``accounts.backends``) among them, so the user named by the session is
    asked ahead and authenticated afterwards, as Django does, from what was asked; and the
    session, when this process saw it logged in before (``portal.cached_sessions``). Install after
    ``AuthenticationMiddleware`` and before anything that asks (the two-factor check). Requests
    with an API or viewer token are not logged in here (their views authenticate them, and
    ``dicomweb.http`` asks ahead for them)."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        session = getattr(request, "session", None)
        if session is None:
            return self.get_response(request)
        # With the session in the shared cache (portal.cached_sessions), the session itself is
        # asked in the same round trip, for the user it was logged in as last time here.
        entry_of = getattr(session, "entry", None)
        entry: str | None = entry_of() if entry_of is not None else None
        guess = None
        if entry is not None:
            guess = decisions.session_stood_for(entry)
            if guess is not None:
                decisions.ask_as_last_time(guess, entry)
        user_id = session.get(SESSION_KEY)
        if user_id is None:
            return self.get_response(request)
        principal = f"user:{user_id}"
        if principal != guess:
            decisions.ask_as_last_time(principal)
        response = self.get_response(request)
        if request.user.is_authenticated and f"user:{request.user.pk}" == principal:
            decisions.note_asked(principal, decisions.asked_in_request())
            if entry is not None:
                decisions.note_session_stood_for(entry, principal)
        return response
