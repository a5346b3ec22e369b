"""The Patient Study Directory: worklist tree, search panel and study table.

Search criteria that identify a patient (name, ID, accession) never appear in a URL: the search
form POSTs to :func:`search`, which keeps the criteria in the session under a short random key
and redirects to the directory with ``?s=<key>``. Worklist and folder ids, the sort order and
the page cursor are not PHI and stay in the query string, so those views can be linked.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from accounts.http import AuthenticatedRequest
from portal import decisions
from portal.forms import DateField, DateInput
from portal.http import MAX_ID
from portal.remembered_pages import RememberedPage, page_question, render_page, shows_messages
from studies import menu
from studies.access import access_ends, organizable_worklist_ids, search_decision_key
from studies.models import Study
from studies.pagination import InvalidCursor, Sort
from studies.selectors import (
    MODALITIES,
    FolderNode,
    SearchCriteria,
    StudyRow,
    WorklistNode,
    can_use_directory,
    remembered_search_page,
    study_rows,
    visible_folder,
    visible_worklist,
    worklist_tree,
)
from studies.services.viewing import record_studies_listed

SEARCHES_SESSION_KEY = "directory_searches"
MAX_SAVED_SEARCHES = 20

TREE_GROUPS = {
    "location": gettext_lazy("Locations"),
    "group": gettext_lazy("Groups"),
    "personal": gettext_lazy("Personal"),
}

COLUMNS = [
    # (sort key or None, label, CSS class). Narrow screens fold the "secondary" columns into the
    # patient's cell (static/css/portal.css): patient, date, modality and description stay.
    ("name", gettext_lazy("Patient"), "col-name"),
    (None, gettext_lazy("Patient ID"), "col-plain col-patient-id secondary"),
    (None, gettext_lazy("Birth date"), "col-plain col-birth secondary"),
    ("date", gettext_lazy("Study date"), "col-date"),
    ("modality", gettext_lazy("Modality"), "col-modality"),
    ("description", gettext_lazy("Description"), "col-description"),
    (None, gettext_lazy("Accession"), "col-plain col-accession secondary"),
    (None, gettext_lazy("Series / images"), "col-plain col-counts secondary"),
]


class SearchForm(forms.Form):
    q = forms.CharField(label=gettext_lazy("Patient name"), max_length=200, required=False)
    patient_id = forms.CharField(label=gettext_lazy("Patient ID"), max_length=64, required=False)
    accession = forms.CharField(
        label=gettext_lazy("Accession number"), max_length=64, required=False
    )
    modality = forms.ChoiceField(
        label=gettext_lazy("Modality"),
        choices=[("", gettext_lazy("All modalities")), *MODALITIES],
        required=False,
    )
    date_from = DateField(
        label=gettext_lazy("Study date from"),
        required=False,
        widget=DateInput(attrs={"aria-label": gettext_lazy("From")}),
    )
    date_to = DateField(
        label=gettext_lazy("to"),
        required=False,
        widget=DateInput(attrs={"aria-label": gettext_lazy("To")}),
    )
    worklist = forms.IntegerField(
        required=False, widget=forms.HiddenInput, min_value=1, max_value=MAX_ID
    )
    folder = forms.IntegerField(
        required=False, widget=forms.HiddenInput, min_value=1, max_value=MAX_ID
    )
    sort = forms.CharField(required=False, widget=forms.HiddenInput, max_length=20)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("The end date is before the start date."))
        return data

    def criteria(self) -> SearchCriteria:
        data = self.cleaned_data
        return SearchCriteria(
            q=data["q"].strip(),
            patient_id=data["patient_id"].strip(),
            accession=data["accession"].strip(),
            modality=data["modality"],
            date_from=data["date_from"],
            date_to=data["date_to"],
        )


def _int_param(value: str | None) -> int | None:
    try:
        number = int(value) if value else None
    except ValueError:
        return None
    return number if number is not None and 0 < number <= MAX_ID else None


def _directory_url(**params) -> str:
    query = {key: value for key, value in params.items() if value not in (None, "")}
    url = reverse("studies:directory")
    return f"{url}?{urlencode(query)}" if query else url


def _saved_criteria(request: AuthenticatedRequest, key: str | None) -> SearchCriteria | None:
    if not key:
        return SearchCriteria()
    saved = request.session.get(SEARCHES_SESSION_KEY, {})
    if key not in saved:
        return None
    return SearchCriteria.from_session(saved[key])


def _save_criteria(request: AuthenticatedRequest, criteria: SearchCriteria) -> str:
    saved = dict(request.session.get(SEARCHES_SESSION_KEY, {}))
    key = secrets.token_urlsafe(6)
    saved[key] = criteria.to_session()
    # Dicts keep insertion order: drop the oldest searches beyond the limit.
    while len(saved) > MAX_SAVED_SEARCHES:
        saved.pop(next(iter(saved)))
    request.session[SEARCHES_SESSION_KEY] = saved
    return key


def _require_directory(request: AuthenticatedRequest) -> None:
    if not can_use_directory(request.user):
        raise PermissionDenied(
            _("Your account has no access to the study directory. Ask your administrator.")
        )


@login_required
@require_GET
def directory(request: AuthenticatedRequest) -> HttpResponse:
    _require_directory(request)
    key = request.GET.get("s") or None
    criteria = _saved_criteria(request, key)
    if criteria is None:
        messages.info(request, _("That search has expired. Please search again."))
        criteria, key = SearchCriteria(), None
    return _render_directory(request, criteria=criteria, search_key=key, form=None)


@login_required
@require_POST
def search(request: AuthenticatedRequest) -> HttpResponse:
    _require_directory(request)
    form = SearchForm(request.POST)
    if not form.is_valid():
        # Re-render with the errors, keeping the worklist, folder and sort the form carried.
        return _render_directory(
            request,
            criteria=SearchCriteria(),
            search_key=None,
            form=form,
            params=request.POST,
            status=400,
        )
    criteria = form.criteria()
    sort = Sort.parse(form.cleaned_data.get("sort"))
    key = None if criteria.is_empty else _save_criteria(request, criteria)
    return redirect(
        _directory_url(
            s=key,
            worklist=form.cleaned_data.get("worklist"),
            folder=form.cleaned_data.get("folder"),
            sort=None if sort == Sort() else sort.param,
        )
    )


def _render_directory(
    request: AuthenticatedRequest,
    *,
    criteria: SearchCriteria,
    search_key: str | None,
    form: SearchForm | None,
    params=None,
    status: int = 200,
) -> HttpResponse:
    """The directory page: remembered for the session (``portal.remembered_pages``) unless it
    shows a form's errors or a one-time message, which are this request's alone."""
    params = request.GET if params is None else params
    listing = _Listing(criteria, search_key, params)

    def page() -> RememberedPage:
        return _directory_page(request, listing, form)

    try:
        if form is not None or shows_messages(request):
            rendered = page()
        else:
            rendered = decisions.remember(
                search_decision_key(
                    request, "directory-page", *listing.question(), *page_question(request)
                ),
                lambda: (page(), access_ends(request.user)),
                near=True,
            )
    except InvalidCursor:
        return redirect(listing.url())
    record_studies_listed(
        request=request,
        via="directory",
        keys=criteria.keys_used(),
        rows=rendered.facts["rows"],
    )
    return rendered.response(request, status=status)


class _Listing:
    """What the directory lists, as the address (and the session's saved search) asks: the
    criteria, the worklist or folder, the sort and the page."""

    def __init__(self, criteria: SearchCriteria, search_key: str | None, params) -> None:
        self.criteria = criteria
        self.search_key = search_key
        self.sort = Sort.parse(params.get("sort"))
        self.worklist_id = _int_param(params.get("worklist"))
        self.folder_id = _int_param(params.get("folder"))
        criteria.worklist_id = self.worklist_id
        criteria.folder_id = self.folder_id
        self.cursor = params.get("cursor") or None
        self.page_size = settings.DIRECTORY_PAGE_SIZE

    def url(self, **changes) -> str:
        params = {
            "s": self.search_key,
            "worklist": self.worklist_id,
            "folder": self.folder_id,
            "sort": None if self.sort == Sort() else self.sort.param,
        }
        params.update(changes)
        return _directory_url(**params)

    def question(self) -> tuple[object, ...]:
        """Everything of the listing that a remembered page answers for."""
        return (
            self.criteria.to_session(),
            self.worklist_id,
            self.folder_id,
            self.sort.param,
            self.cursor,
            self.page_size,
        )


def _directory_page(
    request: AuthenticatedRequest, listing: _Listing, form: SearchForm | None
) -> RememberedPage:
    """The page rendered. Raises :class:`InvalidCursor`."""
    user = request.user
    criteria, sort, url = listing.criteria, listing.sort, listing.url
    worklist_id, folder_id, cursor = listing.worklist_id, listing.folder_id, listing.cursor
    page = remembered_search_page(
        request, criteria, sort=sort, cursor=cursor, page_size=listing.page_size
    )
    # Where the user may file studies in folders: the menu's folder items and drag and drop.
    organizable = organizable_worklist_ids(user)
    rows = _rows(request, page.studies, organizable)

    if form is None:
        form = SearchForm(
            initial={
                **criteria.to_session(),
                "worklist": worklist_id,
                "folder": folder_id,
                "sort": sort.param,
            }
        )

    context = {
        "form": form,
        "criteria": criteria,
        "search_key": listing.search_key,
        "searching": criteria.has_search,
        "rows": rows,
        "columns": _columns(sort, url),
        "sort": sort,
        "tree": _tree(request, url, organizable),
        "selected_worklist_id": worklist_id if folder_id is None else None,
        "selected_folder_id": folder_id,
        "scope_name": _scope_name(user, worklist_id, folder_id),
        "all_studies_url": url(worklist=None, folder=None, cursor=None),
        "clear_search_url": url(s=None, cursor=None),
        "first_page_url": url(cursor=None) if cursor else None,
        "next_url": url(cursor=page.next_cursor) if page.next_cursor else None,
        "previous_url": url(cursor=page.previous_cursor) if page.previous_cursor else None,
        "page_size": listing.page_size,
        "menu_data": {"items": menu.menu_for_client(user)},
        "file_studies_url": reverse("studies:folder_file") if organizable else None,
    }
    return render_page(request, "studies/directory.html", context, rows=len(rows))


def _rows(
    request: AuthenticatedRequest, studies: list[Study], organizable: set[int]
) -> list[StudyRow]:
    """The page's rows, with their study page's address, whether the user may file them in
    folders, and the menu items each allows."""
    rows = study_rows(request.user, studies, request)
    for row in rows:
        row.href = reverse("studies:study", args=[row.study.study_uid])
        row.link = request.build_absolute_uri(row.href)
        row.organize = any(pk in organizable for pk in row.worklist_ids)
    allows = menu.allowed_items(request, "study", [row.study for row in rows])
    study_links = menu.page_links(menu.items_for(request.user, "study"))
    for row in rows:
        row.allows = allows[row.study.pk]
        # Real links, for a browser without scripts; the menu script enhances them.
        row.links = menu.target_links(
            study_links, "study", row.study.study_uid, row.allows, own_url=row.href
        )
    return rows


def _columns(sort: Sort, url: Callable[..., str]) -> list[dict]:
    """The table's headers; a sortable one links to the other direction of its order."""
    columns = []
    for key, label, css in COLUMNS:
        column = {"label": label, "key": key, "css": css, "sorted": None, "url": None}
        if key:
            column["url"] = url(sort=sort.toggled(key).param, cursor=None)
            if sort.key == key:
                column["sorted"] = "descending" if sort.descending else "ascending"
        columns.append(column)
    return columns


def _tree(
    request: AuthenticatedRequest, url: Callable[..., str], organizable: set[int]
) -> list[WorklistNode]:
    """The worklists and their folders, each with its address, filter and menu items."""
    tree = worklist_tree(request.user)
    _annotate_allowed(request, tree)
    for node in tree:
        node.group_label = TREE_GROUPS.get(node.worklist.kind, node.worklist.kind)
        node.href = _directory_url(worklist=node.worklist.pk)
        node.link = request.build_absolute_uri(node.href)
        node.filter_url = url(worklist=node.worklist.pk, folder=None, cursor=None)
        node.organize = node.worklist.pk in organizable
        _annotate_folders(request, node.folders, url, organize=node.organize)
    return tree


def _scope_name(user, worklist_id: int | None, folder_id: int | None) -> str | None:
    """The name of the worklist or folder the list is narrowed to."""
    folder = visible_folder(user, folder_id) if folder_id else None
    if folder is not None:
        return f"{folder.worklist.name} / {folder.name}"
    worklist = visible_worklist(user, worklist_id) if worklist_id else None
    if worklist is not None:
        return worklist.name
    if worklist_id or folder_id:
        # An id the user may not see: the list is empty, and its name stays unknown.
        return _("Unknown worklist")
    return None


def _annotate_allowed(request: AuthenticatedRequest, tree: list[WorklistNode]) -> None:
    """Each worklist's and folder's ``allows``: the menu items that depend on the target."""
    folders: list[FolderNode] = []
    pending = [child for node in tree for child in node.folders]
    while pending:
        folder = pending.pop()
        folders.append(folder)
        pending.extend(folder.children)
    worklist_allows = menu.allowed_items(request, "worklist", [node.worklist for node in tree])
    for node in tree:
        node.allows = worklist_allows[node.worklist.pk]
    folder_allows = menu.allowed_items(request, "folder", [folder.folder for folder in folders])
    for folder in folders:
        folder.allows = folder_allows[folder.folder.pk]


def _annotate_folders(
    request: AuthenticatedRequest,
    folders: list[FolderNode],
    url: Callable[..., str],
    *,
    organize: bool,
) -> None:
    for node in folders:
        node.href = _directory_url(folder=node.folder.pk)
        node.link = request.build_absolute_uri(node.href)
        node.filter_url = url(folder=node.folder.pk, worklist=None, cursor=None)
        node.organize = organize
        _annotate_folders(request, node.children, url, organize=organize)
