"""What every DICOMweb route shares: who is asking, CORS, and errors in DICOMweb's style.

DICOMweb clients (OHIF, dicomweb-client, other PACS) authenticate with the REST API's tokens,
sent as ``Authorization: Token <secret>`` or ``Authorization: Bearer <secret>``; same-origin
viewers use the browser session, and a guest-link recipient the grant held in that session. The
external viewer reads with a viewer token (``viewers``, ``Bearer vt_...``): read-only, limited
to the studies it was made for, refused with 401 ``invalid_token`` once it has ended or its
principal reaches none of them.
A request with none of these gets 401 with ``WWW-Authenticate`` on every route, so a client
knows to authenticate; a study the caller may not see is 404, exactly like an unknown UID.

A token-authenticated request carries no cookie a third-party page could ride on, so it needs
no CSRF token; a session-authenticated write (STOW-RS from a same-origin page) still does.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import (
    ApiTokenAuthentication,
    BearerTokenAuthentication,
    token_decision_key,
)
from portal import decisions
from studies.access import decision_principal, granted_study_ids
from viewers import services as viewer_tokens

DICOM_JSON = "application/dicom+json"
_CHALLENGE = 'Bearer realm="DICOMweb", Token realm="DICOMweb"'
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# A view's answer may stream (WADO-RS instances, frames): HttpResponseBase covers both kinds.
View = Callable[..., HttpResponseBase]


class DicomwebError(Exception):
    """Raised anywhere under a DICOMweb view; answered as ``status`` with a JSON reason."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(
        json.dumps({"detail": detail}), status=status, content_type="application/json"
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def not_found(detail: str = "No such resource.") -> DicomwebError:
    """404, worded the same whether the resource does not exist or the caller may not see it."""
    return DicomwebError(404, detail)


def bad_request(detail: str) -> DicomwebError:
    return DicomwebError(400, detail)


class Credential(enum.Enum):
    """How a DICOMweb request was authenticated, which decides what else it must show."""

    # The browser session (a user, or a guest's grants), or nothing yet: a write needs CSRF.
    SESSION = enum.auto()
    # An API token: no cookie a third-party page could ride on, so no CSRF token.
    API_TOKEN = enum.auto()
    # A viewer token: as an API token, and it only reads.
    VIEWER_TOKEN = enum.auto()


# The decisions a view will ask for its principal (``decisions.ask_ahead_for_token``), given the
# principal, the request and the view's arguments: an instance-level view's access to its
# instance, a search's remembered answer.
DecisionsAhead = Callable[[str, HttpRequest, dict[str, object]], list[str]]


def _ask_ahead(
    token_key: str | None,
    ahead: DecisionsAhead | None,
    request: HttpRequest,
    kwargs: dict[str, object],
) -> None:
    """Ask the cache at once for what the token's last request asked, as this one will."""
    if token_key is not None and ahead is not None:
        decisions.ask_ahead_for_token(
            token_key, lambda principal: ahead(principal, request, kwargs)
        )


def _note_asked(token_key: str | None, request: HttpRequest, *own_keys: str) -> None:
    if token_key is not None:
        decisions.note_stood_for(token_key, decision_principal(request), *own_keys)


def _authenticate_token(
    request: HttpRequest, ahead: DecisionsAhead | None, kwargs: dict[str, object]
) -> Credential | HttpResponse:
    """Log the request in as the API token's user (or as a viewer token's principal) and say
    which credential it came with, or answer 401 for a bad token."""
    header = request.headers.get("Authorization", "")
    scheme, _space, secret = header.partition(" ")
    scheme, secret = scheme.lower(), secret.strip()
    if scheme == "bearer" and viewer_tokens.is_viewer_token(secret):
        token_key = viewer_tokens.token_decision_key(secret) if ahead is not None else None
        _ask_ahead(token_key, ahead, request, kwargs)
        if not viewer_tokens.authenticate(request, secret):
            return error_response(
                401,
                "The viewer token is invalid or has ended: open the study again from the portal.",
                {"WWW-Authenticate": 'Bearer realm="DICOMweb", error="invalid_token"'},
            )
        _note_asked(token_key, request, *viewer_tokens.own_decision_keys(request))
        return Credential.VIEWER_TOKEN
    backends = {"token": ApiTokenAuthentication, "bearer": BearerTokenAuthentication}
    if scheme not in backends:
        return Credential.SESSION
    token_key = token_decision_key(secret) if ahead is not None else None
    _ask_ahead(token_key, ahead, request, kwargs)
    try:
        authenticated = backends[scheme]().authenticate(request)
    except AuthenticationFailed as failed:
        return error_response(401, str(failed.detail), {"WWW-Authenticate": _CHALLENGE})
    if authenticated is None:
        return Credential.SESSION
    request.user = authenticated[0]
    _note_asked(token_key, request)
    return Credential.API_TOKEN


def _has_principal(request: HttpRequest) -> bool:
    return request.user.is_authenticated or bool(granted_study_ids(request))


def _csrf_failure(request: HttpRequest, view: View) -> HttpResponse | None:
    """Django's own CSRF check of ``view``, for a session-authenticated write."""
    # process_request and process_view alone decide; the middleware never calls get_response.
    check = CsrfViewMiddleware(lambda _request: HttpResponse())
    check.process_request(request)
    rejected = check.process_view(request, view, (), {})
    if rejected is not None:
        return error_response(403, "CSRF verification failed: send the X-CSRFToken header.")
    return None


def _allowed_origin(request: HttpRequest) -> str | None:
    origin = request.headers.get("Origin")
    if origin and (origin in settings.DICOMWEB_CORS_ALLOWED_ORIGINS or origin == settings.OHIF_URL):
        return origin
    return None


def _add_cors(request: HttpRequest, response: HttpResponseBase, methods: Iterable[str]) -> None:
    origin = _allowed_origin(request)
    if origin is None:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = (
        "Warning, Content-Type, Content-Length, Content-Location, Location"
    )
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Accept, Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    vary = response.headers.get("Vary")
    response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"


def dicomweb_view(*methods: str, ahead: DecisionsAhead | None = None) -> Callable[[View], View]:
    """Decorate a DICOMweb view answering ``methods`` (HEAD goes with GET): authentication,
    the 401/405 answers, CORS and :class:`DicomwebError` turned into responses. ``ahead`` names
    the decisions the view asks for: an API token's request asks the cache for them with the
    token's own."""
    allowed = list(methods) + (["HEAD"] if "GET" in methods else [])
    allow_header = ", ".join([*allowed, "OPTIONS"])

    def decorator(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
            response = _dispatch(request, args, kwargs)
            _add_cors(request, response, allowed)
            return response

        def _dispatch(
            request: HttpRequest, args: tuple[object, ...], kwargs: dict[str, object]
        ) -> HttpResponseBase:
            if request.method == "OPTIONS":
                # A CORS preflight carries no credentials; it reveals nothing but the methods.
                return HttpResponse(status=204, headers={"Allow": allow_header})
            if request.method not in allowed:
                return error_response(
                    405,
                    f"{request.method} is not supported here.",
                    {"Allow": allow_header},
                )
            credential = _authenticate_token(request, ahead, kwargs)
            if isinstance(credential, HttpResponse):
                return credential
            if credential is Credential.VIEWER_TOKEN and request.method not in _SAFE_METHODS:
                return error_response(403, "A viewer token only reads: it cannot store.")
            if not _has_principal(request):
                return error_response(
                    401,
                    "Authentication required: send an API token (Authorization: Bearer ...).",
                    {"WWW-Authenticate": _CHALLENGE},
                )
            if (
                request.method not in _SAFE_METHODS
                and credential is Credential.SESSION
                and (failed := _csrf_failure(request, view)) is not None
            ):
                return failed
            try:
                return view(request, *args, **kwargs)
            except DicomwebError as error:
                return error_response(error.status, error.detail, error.headers)

        return wrapper

    return decorator


def by_method(**views: View) -> View:
    """One URL answered by several DICOMweb views, chosen by method: ``/studies`` is a QIDO-RS
    search on GET and a STOW-RS store on POST. Each view keeps its own :func:`dicomweb_view`."""
    handlers = {method.upper(): view for method, view in views.items()}
    if "GET" in handlers:
        handlers.setdefault("HEAD", handlers["GET"])
    allow_header = ", ".join([*handlers, "OPTIONS"])

    @csrf_exempt
    def dispatch(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
        view = handlers.get(request.method or "")
        if request.method == "OPTIONS":
            view = next(iter(handlers.values()))
        if view is None:
            return error_response(
                405, f"{request.method} is not supported here.", {"Allow": allow_header}
            )
        response = view(request, *args, **kwargs)
        if request.method == "OPTIONS":
            response.headers["Allow"] = allow_header
            if "Access-Control-Allow-Methods" in response.headers:
                response.headers["Access-Control-Allow-Methods"] = ", ".join(handlers)
        return response

    return dispatch
