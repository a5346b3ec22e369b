"""Responses the apps share."""

from collections.abc import Mapping

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import render

# The largest primary key a database accepts (64-bit): a larger id in an address, a form or an API
# request names nothing.
MAX_ID = 2**63 - 1

# Marks a view puts on its response for portal.middleware.
_PRIVATELY_CACHEABLE = "_portal_privately_cacheable"
_ERROR_PAGE = "_portal_error_page"


class SeeOther(HttpResponseRedirect):
    """303: after a POST the browser follows with a GET."""

    status_code = 303


def is_fragment_request(request: HttpRequest) -> bool:
    """Whether the page's script asked (for a dialog's content) rather than the browser (for a
    whole page: scripts off, or the address opened directly)."""
    return request.headers.get("X-Requested-With") == "XMLHttpRequest"


def dialog_response(
    request: HttpRequest,
    template: str,
    page_template: str,
    context: Mapping[str, object],
    *,
    status: int = 200,
) -> HttpResponse:
    """A dialog's fragment for the page's script, or the whole page ``page_template`` around
    it (which includes the template named ``fragment``) for a browser without scripts."""
    if is_fragment_request(request):
        return render(request, template, context, status=status)
    return render(request, page_template, {**context, "fragment": template}, status=status)


def dialog_redirect(request: HttpRequest, url: str) -> HttpResponse:
    """Where a dialog's form leads once done: ``X-Dialog-Redirect`` for the page's script (it
    sends the browser there), a 303 for a browser without scripts."""
    if is_fragment_request(request):
        response = HttpResponse(status=204)
        response["X-Dialog-Redirect"] = url
        return response
    return SeeOther(url)


def allow_private_caching(response: HttpResponseBase) -> None:
    """Let the user's own browser keep this response (its Cache-Control says for how long): an
    image whose address names its exact content, the scripts' texts. Every other dynamic
    response gets ``no-store`` (portal.middleware.SecurityHeadersMiddleware)."""
    setattr(response, _PRIVATELY_CACHEABLE, True)


def may_be_cached_privately(response: HttpResponseBase) -> bool:
    return getattr(response, _PRIVATELY_CACHEABLE, False)


def mark_error_page(response: HttpResponseBase) -> None:
    """This response is already the portal's own error page (portal.middleware's
    DemoNotFoundMiddleware leaves it alone)."""
    setattr(response, _ERROR_PAGE, True)


def is_error_page(response: HttpResponseBase) -> bool:
    return getattr(response, _ERROR_PAGE, False)
