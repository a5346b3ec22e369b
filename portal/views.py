"""Health check and the generic error pages: they say what happened and what to do next, and
never show a traceback or anything about the request."""

from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@require_GET
@never_cache
def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


# Machine clients (the REST API, DICOMweb viewers and PACS) get JSON errors, never a page.
_JSON_PREFIXES = ("/api/", "/dicomweb/")


def _error(request, status: int, title: str, advice: str) -> HttpResponse:
    if request.path.startswith(_JSON_PREFIXES):
        return JsonResponse({"detail": title}, status=status)
    response = render(
        request, "error.html", {"title": title, "advice": advice, "status": status}, status=status
    )
    # Already the portal's page: portal.middleware.DemoNotFoundMiddleware leaves it alone.
    response.portal_error_page = True
    return response


def bad_request(request, exception=None):
    return _error(request, 400, "Bad request", "Check what you entered and try again.")


def permission_denied(request, exception=None):
    return _error(
        request,
        403,
        "Not allowed",
        "Your account may not do this. Ask your organization's administrator if you need it.",
    )


def page_not_found(request, exception=None):
    return _error(
        request,
        404,
        "Not found",
        "This page does not exist or you may not see it. Go back to the directory.",
    )


def server_error(request):
    return _error(
        request,
        500,
        "Something went wrong",
        "The error was logged. Try again in a moment; if it persists, contact your service desk.",
    )
