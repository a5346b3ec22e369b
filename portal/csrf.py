"""An opening in Django's CSRF origin check for pages that hide their address.

Pages reached through a secret in their URL (guest links) send ``Referrer-Policy: no-referrer``.
Browsers then post their forms with ``Origin: null`` and no Referer (the Fetch standard
serializes the origin as null under that policy), and Django's CsrfViewMiddleware refuses them.
For views marked with :func:`accepts_opaque_origin`, :class:`OpaqueOriginMiddleware` (listed
before Django's) reads that one value as this site's own origin. Django's middleware then still
requires the CSRF token, which must match the CSRF cookie; the cookie is SameSite=Lax, so a post
from another site (even from a sandboxed frame, which also sends ``Origin: null``) still fails.
"""

from functools import wraps

_OPAQUE = "null"


def no_referrer(view):
    """Pages whose address holds a token tell no other page where they came from
    (``Referrer-Policy: no-referrer``); their forms then post with ``Origin: null``, so such
    views are marked with :func:`accepts_opaque_origin` too."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return wrapper


def accepts_opaque_origin(view):
    """Mark a view whose forms are posted from a no-referrer page."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        return view(*args, **kwargs)

    wrapper.accepts_opaque_origin = True
    return wrapper


class OpaqueOriginMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, callback, callback_args, callback_kwargs):
        if request.META.get("HTTP_ORIGIN") == _OPAQUE and getattr(
            callback, "accepts_opaque_origin", False
        ):
            request.META["HTTP_ORIGIN"] = f"{request.scheme}://{request.get_host()}"
        return None
