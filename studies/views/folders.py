"""Folder dialogs of the directory's context menu: New folder, Rename, Move folder, Delete folder
(on a worklist or folder) and Move to folder... (on the selected studies; also the target of
dragging studies onto a folder in the side tree).

Like the Share dialog, each view answers an HTML fragment for ``static/js/dialog.js`` and the
same fragment inside the portal's layout for a browser without scripts. A worklist or folder the
user may not see answers 404 like one that does not exist; one the user sees but may not
organize answers 403 naming the permission the role lacks. Success sends the browser to the
directory showing the result (``X-Dialog-Redirect`` for the dialog, a redirect for the page).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from accounts.http import AuthenticatedRequest
from accounts.permissions import Perm
from portal.http import MAX_ID, dialog_redirect, dialog_response
from studies.access import organizable_worklist_ids, visible_studies
from studies.models import Folder, Study, Worklist
from studies.selectors import (
    folder_ancestry,
    folder_and_descendants,
    folder_choices,
    held_entries,
    visible_folder,
    visible_worklist,
)
from studies.services.folders import (
    NAME_MAX_LENGTH,
    FolderError,
    FolderPermissionDenied,
    create_folder,
    delete_folder,
    deletion_summary,
    file_studies,
    move_folder,
    rename_folder,
)

PAGE_TEMPLATE = "studies/_dialog_page.html"
MAX_STUDIES = 500


def _respond(
    request: AuthenticatedRequest,
    template: str,
    context: Mapping[str, object],
    *,
    status: int = 200,
) -> HttpResponse:
    return dialog_response(request, template, PAGE_TEMPLATE, context, status=status)


def _done(request: AuthenticatedRequest, **params) -> HttpResponse:
    url = reverse("studies:directory")
    query = urlencode({k: v for k, v in params.items() if v is not None})
    if query:
        url = f"{url}?{query}"
    return dialog_redirect(request, url)


def _refused(
    request: AuthenticatedRequest, exc: FolderPermissionDenied, title: str
) -> HttpResponse:
    return _respond(
        request,
        "studies/_dialog_refused.html",
        {"title": title, "reason": exc.args[0]},
        status=403,
    )


def _id(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


def _param(request: AuthenticatedRequest, name: str) -> int | None:
    data = request.POST if request.method == "POST" else request.GET
    return _id(data.get(name))


def _folder_or_404(request: AuthenticatedRequest, name: str = "folder") -> Folder:
    folder_id = _param(request, name)
    folder = visible_folder(request.user, folder_id) if folder_id else None
    if folder is None:
        raise Http404("No such folder.")
    return folder


def _worklist_or_404(request: AuthenticatedRequest) -> Worklist:
    worklist_id = _param(request, "worklist")
    worklist = visible_worklist(request.user, worklist_id) if worklist_id else None
    if worklist is None:
        raise Http404("No such worklist.")
    return worklist


def _folder_path(folder: Folder) -> str:
    names = [f.name for f in reversed(folder_ancestry(folder))]
    return " / ".join([folder.worklist.name, *names])


@login_required
@require_http_methods(["GET", "POST"])
def new_folder(request: AuthenticatedRequest) -> HttpResponse:
    """``?worklist=<id>`` makes a top-level folder, ``?folder=<id>`` a subfolder of it."""
    if _param(request, "folder"):
        parent = _folder_or_404(request)
        worklist = parent.worklist
        place = _folder_path(parent)
    else:
        parent = None
        worklist = _worklist_or_404(request)
        place = worklist.name
    title = _("New folder")
    context = {
        "title": title,
        "action": reverse("studies:folder_new"),
        "hidden": {"folder": parent.pk} if parent else {"worklist": worklist.pk},
        "place": place,
        "name": "",
        "max_length": NAME_MAX_LENGTH,
        "submit_label": _("Create folder"),
    }
    status = 200
    if request.method == "POST":
        name = context["name"] = request.POST.get("name", "")
        try:
            folder = create_folder(
                user=request.user,
                worklist=worklist,
                name=name,
                parent=parent,
                request=request,
            )
        except FolderPermissionDenied as exc:
            return _refused(request, exc, title)
        except FolderError as exc:
            context["error"], status = str(exc), 400
        else:
            return _done(request, folder=folder.pk)
    elif worklist.pk not in organizable_worklist_ids(request.user):
        return _refused(request, FolderPermissionDenied(worklist), title)
    return _respond(request, "studies/_folder_name_form.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def rename(request: AuthenticatedRequest) -> HttpResponse:
    folder = _folder_or_404(request)
    title = _("Rename folder")
    context = {
        "title": title,
        "action": reverse("studies:folder_rename"),
        "hidden": {"folder": folder.pk},
        "place": _folder_path(folder),
        "name": folder.name,
        "max_length": NAME_MAX_LENGTH,
        "submit_label": _("Rename"),
    }
    status = 200
    if request.method == "POST":
        name = context["name"] = request.POST.get("name", "")
        try:
            rename_folder(user=request.user, folder=folder, name=name, request=request)
        except FolderPermissionDenied as exc:
            return _refused(request, exc, title)
        except FolderError as exc:
            context["error"], status = str(exc), 400
        else:
            return _done(request, folder=folder.pk)
    elif folder.worklist_id not in organizable_worklist_ids(request.user):
        return _refused(request, FolderPermissionDenied(folder.worklist), title)
    return _respond(request, "studies/_folder_name_form.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def move(request: AuthenticatedRequest) -> HttpResponse:
    """Nest the folder in another folder of its worklist, or bring it to the top level."""
    folder = _folder_or_404(request)
    title = _("Move folder")
    inside = set(folder_and_descendants(folder))
    places = [
        choice
        for choice in folder_choices(request.user, [folder.worklist_id])
        if choice.folder is None or choice.folder.pk not in inside
    ]
    if not places:
        return _refused(request, FolderPermissionDenied(folder.worklist), title)
    current = f"folder:{folder.parent_id}" if folder.parent_id else f"worklist:{folder.worklist_id}"
    context = {
        "title": title,
        "folder": folder,
        "place": _folder_path(folder),
        "places": places,
        "selected": current,
    }
    status = 200
    if request.method == "POST":
        target = request.POST.get("target", "")
        context["selected"] = target
        chosen = next((p for p in places if p.key == target), None)
        if chosen is None:
            context["error"], status = _("Choose where the folder goes."), 400
        else:
            try:
                move_folder(user=request.user, folder=folder, parent=chosen.folder, request=request)
            except FolderPermissionDenied as exc:
                return _refused(request, exc, title)
            except FolderError as exc:
                context["error"], status = str(exc), 400
            else:
                return _done(request, folder=folder.pk)
    return _respond(request, "studies/_folder_move.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def delete(request: AuthenticatedRequest) -> HttpResponse:
    """Asks first: what the folder holds and that its studies stay in the worklist."""
    folder = _folder_or_404(request)
    title = _("Delete folder")
    if folder.worklist_id not in organizable_worklist_ids(request.user):
        return _refused(request, FolderPermissionDenied(folder.worklist), title)
    if request.method == "POST":
        try:
            delete_folder(user=request.user, folder=folder, request=request)
        except FolderPermissionDenied as exc:
            return _refused(request, exc, title)
        return _done(request, worklist=folder.worklist_id)
    context = {
        "title": title,
        "folder": folder,
        "place": _folder_path(folder),
        "summary": deletion_summary(folder),
    }
    return _respond(request, "studies/_folder_delete.html", context)


def _selected_studies(request: AuthenticatedRequest) -> list[Study]:
    """The selected studies; 404 for any the user may not see, exactly like an unknown one."""
    data = request.POST if request.method == "POST" else request.GET
    uids = list(dict.fromkeys(uid.strip()[:64] for uid in data.getlist("study") if uid.strip()))
    if not uids or len(uids) > MAX_STUDIES:
        raise Http404("No such study.")
    studies = list(visible_studies(request.user).filter(study_uid__in=uids))
    if len(studies) != len(uids):
        raise Http404("No such study.")
    order = {uid: index for index, uid in enumerate(uids)}
    return sorted(studies, key=lambda study: order[study.study_uid])


@login_required
@require_http_methods(["GET", "POST"])
def file(request: AuthenticatedRequest) -> HttpResponse:
    """Move to folder...: the selected studies into a folder of a worklist holding them, or out
    of any folder to the worklist's top level."""
    studies = _selected_studies(request)
    title = _("Move to folder")
    organizable = organizable_worklist_ids(request.user)
    holding = {worklist_id for worklist_id, _study in held_entries(organizable, studies)}
    places = folder_choices(request.user, holding)
    context = {
        "title": title,
        "studies": studies,
        "places": places,
        "selected": request.GET.get("target", ""),
    }
    if not places:
        context["reason"] = _(
            "None of your worklists that hold these studies lets you file them in folders: "
            "your role does not include “%(permission)s” there."
        ) % {"permission": Perm.ORGANIZE_FOLDERS.label}
        return _respond(request, "studies/_dialog_refused.html", context, status=403)
    status = 200
    if request.method == "POST":
        target = request.POST.get("target", "")
        context["selected"] = target
        chosen = next((p for p in places if p.key == target), None)
        if chosen is None:
            context["error"], status = _("Choose a folder."), 400
        else:
            try:
                file_studies(
                    user=request.user,
                    worklist=chosen.worklist,
                    studies=studies,
                    folder=chosen.folder,
                    request=request,
                )
            except FolderPermissionDenied as exc:
                return _refused(request, exc, title)
            except FolderError as exc:
                context["error"], status = str(exc), 400
            else:
                if chosen.folder is not None:
                    return _done(request, folder=chosen.folder.pk)
                return _done(request, worklist=chosen.worklist.pk)
    return _respond(request, "studies/_folder_file.html", context, status=status)
