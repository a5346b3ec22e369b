"""The sender's pages: the Send Link dialog (context menu and study page), the study's list of
guest links, and the trash can.

Dialog views answer HTML fragments that ``static/js/dialog.js`` puts into the remote dialog; a
form with errors comes back with status 400, the Get Link result with 200. A target the user may
not see answers 404 like one that does not exist; a visible target whose organization does not
let the user send links answers 403 with an explanation.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.http import AuthenticatedRequest
from accounts.models import User
from accounts.permissions import Perm
from guestlinks.forms import SendLinkForm
from guestlinks.models import GuestLink
from guestlinks.presentation import mailto_for, options_summary
from guestlinks.selectors import (
    LinkTarget,
    StudyLinkPermissions,
    links_for_study,
    may_create_links,
    may_delete_link,
    refusal_reason,
    sees_target,
    study_link_permissions,
    target_organization,
    visible_target,
)
from guestlinks.services.creation import CreatedLink, create_link
from guestlinks.services.ending import delete_link
from guestlinks.services.opening import link_reach
from guestlinks.services.state import link_status
from notifications.languages import language_of
from portal.http import MAX_ID, is_fragment_request
from portal.qr import qr_svg
from studies.access import user_study_access
from studies.anonymize import patient_display
from studies.models import Study, Worklist


def _int_param(value: str | None) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if 0 < number <= MAX_ID else None


def _target_from(request: AuthenticatedRequest) -> LinkTarget:
    data = request.POST if request.method == "POST" else request.GET
    target = visible_target(
        request.user,
        study_uid=(data.get("study") or "").strip()[:64] or None,
        worklist_id=_int_param(data.get("worklist")),
        folder_id=_int_param(data.get("folder")),
    )
    if target is None:
        raise Http404("No such study, worklist or folder.")
    return target


def _patient_name(user: User, target: LinkTarget) -> str:
    """Whose study is about to be sent, so the sender can check it is the right patient (the
    sender's own screen; titles and URLs never carry it)."""
    if target.study is None:
        return ""
    access = user_study_access(user, target.study)
    return patient_display(target.study, anonymized=bool(access and access.anonymized)).name


def _subject(target: LinkTarget) -> str:
    """What the dialog says it sends."""
    item = target.item
    if isinstance(item, Study):
        return item.description or _("Study")
    if isinstance(item, Worklist):
        return _("Worklist “%(name)s”") % {"name": item.name}
    return _("Folder “%(name)s”") % {"name": item.name}


def _result_context(created: CreatedLink) -> dict[str, Any]:
    link = created.link
    mailto = mailto_for(email=link.email, url=created.url, language=link.language)
    return {
        "link": link,
        "url": created.url,
        "mailto": mailto,
        # Our own SVG (paths only, from the qrcode library), so it is safe to inline.
        "qr_svg": mark_safe(qr_svg(mailto, label=_("QR code of an email with the link")))  # noqa: S308
        if link.email
        else "",
        "status": link_status(link),
        "summary": options_summary(link),
    }


@login_required
@require_http_methods(["GET", "POST"])
def send_link_dialog(request: AuthenticatedRequest) -> HttpResponse:
    """GET: the Send Link form for ``?study=`` / ``?worklist=`` / ``?folder=``. POST: create the
    link and answer the Get Link result, or the form again with its errors."""
    target = _target_from(request)
    organization = target_organization(target)
    context = {
        "target": target,
        "subject": _subject(target),
        "patient_name": _patient_name(request.user, target),
    }
    if organization is None or not may_create_links(request.user, target):
        context["refusal"] = refusal_reason(request.user, target)
        context["permission_label"] = Perm.CREATE_LINKS.label
        return render(request, "guestlinks/_send_link_refused.html", context, status=403)
    if target.study is None:
        # A worklist's or folder's link hands the guest every study in it: say how many first.
        context["reach"] = link_reach(worklist=target.worklist, folder=target.folder)
    form = SendLinkForm(
        request.POST if request.method == "POST" else None,
        organization=organization,
        target=target,
        language=language_of(request.user),
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                created = create_link(
                    sender=request.user,
                    target=target,
                    options=form.options(),
                    acknowledged=form.cleaned_data["acknowledged"],
                    request=request,
                )
            except ValidationError as exc:
                form.add_service_errors(exc)
            except PermissionDenied:
                return render(request, "guestlinks/_send_link_refused.html", context, status=403)
            else:
                context.update(_result_context(created))
                return render(request, "guestlinks/_get_link.html", context)
        status = 400
    context.update({"form": form, "organization": organization})
    return render(request, "guestlinks/_send_link_form.html", context, status=status)


# --- The study page ----------------------------------------------------------------------------


def study_links_context(request: HttpRequest, study: Study) -> dict[str, Any]:
    """What the viewer's Guest links button and dialog need (``studies/views/viewer.py`` adds it
    to the page). Empty for guests and for users who may neither create nor view links."""
    user = request.user
    if not user.is_authenticated:
        return {}
    permissions = study_link_permissions(user, study)
    if not (permissions.can_create or permissions.can_view):
        return {}
    rows = _rows(user, study, permissions) if permissions.can_view else []
    return {
        "guest_links": {
            "study": study,
            "can_create": permissions.can_create,
            "can_view": permissions.can_view,
            "rows": rows,
            "open_count": sum(1 for item in rows if item["status"].is_open),
        }
    }


def _rows(
    user: User, study: Study, permissions: StudyLinkPermissions | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "link": row.link,
            "status": row.status,
            "url": row.url,
            "summary": options_summary(row.link),
            "can_delete": row.can_delete,
        }
        for row in links_for_study(user, study, permissions=permissions)
    ]


def _visible_study(request: AuthenticatedRequest, study_uid: str) -> Study:
    target = visible_target(request.user, study_uid=study_uid[:64])
    if target is None or target.study is None:
        raise Http404("No such study.")
    return target.study


def _list_response(
    request: AuthenticatedRequest, study: Study, *, status: int = 200
) -> HttpResponse:
    permissions = study_link_permissions(request.user, study)
    if not permissions.can_view:
        raise PermissionDenied
    context = {"study": study, "rows": _rows(request.user, study, permissions)}
    return render(request, "guestlinks/_study_links_list.html", context, status=status)


@login_required
@require_GET
def study_links(request: AuthenticatedRequest, study_uid: str) -> HttpResponse:
    """The study's list of guest links, as a fragment (refreshed after a link is made)."""
    return _list_response(request, _visible_study(request, study_uid))


@login_required
@require_POST
def delete(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """The trash can: the link stops opening at once. From the study page's script the answer is
    the refreshed list; without scripts, the study page again."""
    link = (
        GuestLink.objects.select_related("study__organization", "worklist", "folder__worklist")
        .filter(pk=pk)
        .first()
    )
    if link is None or not sees_target(request.user, LinkTarget.of(link)):
        raise Http404("No such link.")
    if not may_delete_link(request.user, link):
        raise PermissionDenied
    delete_link(user=request.user, link=link, request=request)
    if link.study is None:
        messages.success(request, _("The guest link was deleted. It no longer opens."))
        return redirect("studies:directory")
    if is_fragment_request(request):
        return _list_response(request, link.study)
    messages.success(request, _("The guest link was deleted. It no longer opens."))
    return redirect(reverse("studies:study", args=[link.study.study_uid]) + "#guest-links")
