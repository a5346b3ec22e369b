"""Opening studies in OHIF: the portal makes a viewer token and sends the browser to OHIF's
origin with it. From the study page the button posts straight here; from the directory's
context menu, a dialog first says what will open."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from portal.csrf import accepts_opaque_origin
from portal.http import dialog_redirect, dialog_response, is_fragment_request
from viewers import services

_DIALOG = "viewers/_open_in_ohif_dialog.html"
# The dialogs' shared scaffolding (studies): the page around a fragment, and a refusal.
_REFUSED = "studies/_dialog_refused.html"
_PAGE = "studies/_dialog_page.html"


# Also posted from the guests' list of studies, a no-referrer page (portal.csrf).
@accepts_opaque_origin
@require_http_methods(["GET", "POST"])
def open_in_ohif(request: HttpRequest) -> HttpResponse:
    """GET ``?study=`` (one or more UIDs): what will open, and the button (the directory's
    dialog). POST ``study``: a new viewer token for those studies, then OHIF showing them (303,
    or ``X-Dialog-Redirect`` for the dialog). OHIF's address carries the token, which its origin
    never sends on (``Referrer-Policy: no-referrer``) and its log masks."""
    if not services.ohif_available():
        raise Http404("OHIF is not installed here.")
    source = request.POST if request.method == "POST" else request.GET
    study_uids = source.getlist("study")
    if request.method == "GET":
        try:
            studies = services.studies_to_open(request=request, study_uids=study_uids)
        except services.ViewerRefused as refusal:
            return _refused(request, str(refusal))
        context = {"title": _("Open in OHIF"), "studies": studies}
        return dialog_response(request, _DIALOG, _PAGE, context)
    try:
        opened = services.open_in_viewer(request=request, study_uids=study_uids, with_priors=True)
    except services.ViewerRefused as refusal:
        if is_fragment_request(request):
            return _refused(request, str(refusal))
        messages.error(request, str(refusal))
        return redirect(request.POST.get("back") or "studies:directory")
    query = urlencode({"StudyInstanceUIDs": ",".join(opened.study_uids), "token": opened.secret})
    return dialog_redirect(request, f"{settings.OHIF_URL}/viewer?{query}")


def _refused(request: HttpRequest, reason: str) -> HttpResponse:
    context = {"title": _("Open in OHIF"), "reason": reason}
    return dialog_response(request, _REFUSED, _PAGE, context, status=404)


@csrf_exempt
@require_http_methods(["POST", "OPTIONS"])
def refresh_ohif_token(request: HttpRequest) -> HttpResponse:
    """POST from OHIF's page (its origin only), with its viewer token (``Authorization:
    Bearer``) and the portal session's cookie: ``{"token", "expires_at"}``, a new token for
    the next minutes (``services.refresh_viewer_token``), or 401. No CSRF token: the request
    must come from OHIF's origin and carry the viewer token, which no other page knows."""
    origin = request.headers.get("Origin", "")
    if not services.ohif_available() or origin != settings.OHIF_URL:
        return JsonResponse({"detail": "Not allowed from here."}, status=403)
    if request.method == "OPTIONS":
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "POST"
        response["Access-Control-Allow-Headers"] = "Authorization"
        response["Access-Control-Max-Age"] = "600"
    else:
        scheme, _space, secret = request.headers.get("Authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not services.is_viewer_token(secret.strip()):
                raise services.ViewerRefused(_("Open the study from the portal again."))
            fresh = services.refresh_viewer_token(request=request, secret=secret.strip())
        except services.ViewerRefused as refusal:
            response = JsonResponse({"detail": str(refusal)}, status=401)
        else:
            response = JsonResponse(
                {"token": fresh.secret, "expires_at": fresh.expires_at.isoformat()}
            )
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Allow-Credentials"] = "true"
    response["Vary"] = "Origin"
    return response
