"""Responses the apps share."""

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render


class SeeOther(HttpResponseRedirect):
    """303: after a POST the browser follows with a GET."""

    status_code = 303


def is_fragment_request(request: HttpRequest) -> bool:
    """Whether the page's script asked (for a dialog's content) rather than the browser (for a
    whole page: scripts off, or the address opened directly)."""
    return request.headers.get("X-Requested-With") == "XMLHttpRequest"


def dialog_response(
    request: HttpRequest, template: str, page_template: str, context: dict, *, status: int = 200
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
