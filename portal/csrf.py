"""An opening in Django's CSRF origin check for pages that hide their address.

Pages reached through a secret in their URL (guest links) send ``Referrer-Policy: no-referrer``.
Browsers then post their forms with ``Origin: null`` and no Referer (the Fetch standard
serializes the origin as null under that policy), and Django's CsrfViewMiddleware refuses them.
For views marked with :func:`accepts_opaque_origin`, :class:`OpaqueOriginMiddleware` (listed
before Django's) reads that one value as this site's own origin. Django's middleware then still
requires the CSRF token, which must match the CSRF cookie; the cookie is SameSite=Lax, so a post
from another site (even from a sandboxed frame, which also sends ``Origin: null``) still fails.
"""

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from django.http import HttpRequest, HttpResponseBase

_OPAQUE = "null"
# What accepts_opaque_origin marks a view with, and OpaqueOriginMiddleware looks for.
_MARK = "accepts_opaque_origin"

Params = ParamSpec("Params")
Response = TypeVar("Response", bound=HttpResponseBase)


def no_referrer(view: Callable[Params, Response]) -> Callable[Params, Response]:
    """Pages whose address holds a token tell no other page where they came from
    (``Referrer-Policy: no-referrer``); their forms then post with ``Origin: null``, so such
    views are marked with :func:`accepts_opaque_origin` too."""

    @wraps(view)
    def wrapper(*args: Params.args, **kwargs: Params.kwargs) -> Response:
        response = view(*args, **kwargs)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return wrapper


def accepts_opaque_origin(view: Callable[Params, Response]) -> Callable[Params, Response]:
    """Mark a view whose forms are posted from a no-referrer page."""

    @wraps(view)
    def wrapper(*args: Params.args, **kwargs: Params.kwargs) -> Response:
        return view(*args, **kwargs)

    setattr(wrapper, _MARK, True)
    return wrapper


class OpaqueOriginMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        callback: Callable[..., HttpResponseBase],
        callback_args: tuple[object, ...],
        callback_kwargs: dict[str, object],
    ) -> None:
        if request.META.get("HTTP_ORIGIN") == _OPAQUE and getattr(callback, _MARK, False):
            request.META["HTTP_ORIGIN"] = f"{request.scheme}://{request.get_host()}"
        return None
