"""Health check, the scripts' text catalog, and the generic error pages: they say what happened
and what to do next, and never show a traceback or anything about the request."""

import functools
import hashlib
from typing import cast

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import etag, require_GET
from django.views.i18n import JavaScriptCatalog

from portal.http import allow_private_caching, mark_error_page


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@functools.cache
def _javascript_catalog(language: str) -> tuple[bytes, str]:
    """The catalog's body and its ETag, built once per language and process: the catalogs
    change only with a deploy."""
    # The catalog depends on the language alone: built from a bare GET, not a visitor's request.
    request = HttpRequest()
    request.method = "GET"
    with translation.override(language):
        view = JavaScriptCatalog.as_view(domain="djangojs", packages=["portal"])
        # The catalog view renders a whole page: an HttpResponse, never a streaming one.
        catalog = cast(HttpResponse, view(request))
    return catalog.content, hashlib.sha256(catalog.content).hexdigest()[:32]


def _catalog_etag(request: HttpRequest, language: str) -> str | None:
    return _javascript_catalog(language)[1] if language in dict(settings.LANGUAGES) else None


@require_GET
@etag(_catalog_etag)
def javascript_catalog(request: HttpRequest, language: str) -> HttpResponse:
    """The texts of the portal's scripts (``static/js``, the ``djangojs`` catalogs in
    ``locale/``) in ``language``. The language is in the address, not taken from the request,
    because a page may speak another language than its visitor's (a guest page speaks its link's
    language); the page names the catalog of the language it was rendered in. Browsers ask again
    on every page and get a 304 while the catalog is unchanged."""
    if language not in dict(settings.LANGUAGES):
        raise Http404
    response = HttpResponse(
        _javascript_catalog(language)[0], content_type="text/javascript; charset=utf-8"
    )
    patch_cache_control(response, private=True, no_cache=True)
    allow_private_caching(response)
    return response


# Machine clients (the REST API, DICOMweb viewers and PACS) get JSON errors, never a page.
_JSON_PREFIXES = ("/api/", "/dicomweb/")


def _error(request: HttpRequest, status: int, title: str, advice: str) -> HttpResponse:
    if request.path.startswith(_JSON_PREFIXES):
        return JsonResponse({"detail": title}, status=status)
    response = render(
        request, "error.html", {"title": title, "advice": advice, "status": status}, status=status
    )
    mark_error_page(response)
    return response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 400, _("Bad request"), _("Check what you entered and try again."))


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(
        request,
        403,
        _("Not allowed"),
        _("Your account may not do this. Ask your organization's administrator if you need it."),
    )


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(
        request,
        404,
        _("Not found"),
        _("This page does not exist or you may not see it. Go back to the directory."),
    )


def server_error(request: HttpRequest) -> HttpResponse:
    return _error(
        request,
        500,
        _("Something went wrong"),
        _("The error was logged. Try again in a moment; if it persists, call your service desk."),
    )
