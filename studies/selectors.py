"""Reads of the studies app: the directory's search and its worklist tree, the rows a page shows,
a study's series and priors.

Everything starts from :mod:`studies.access` (``visible_studies``, ``visible_worklists``,
``user_study_access``): this module narrows and orders what the authority allows and never
decides on its own who may see a study.

Its pages are cut by :mod:`studies.pagination` (keyset pagination).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import cached_property
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.files.storage import storages
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.http import HttpRequest
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from accounts.http import AuthenticatedRequest
from accounts.memberships import (
    active_memberships,
    has_perm,
    member_organization_ids,
    organizations_with,
)
from accounts.models import User
from accounts.permissions import Perm
from portal import decisions
from studies.access import (
    StudyAccess,
    access_ends,
    active_entries,
    entries_reaching,
    granted_study_ids,
    organizable_worklist_ids,
    search_decision_key,
    studies_access,
    user_studies_access,
    visible_studies,
    visible_worklist_ids,
    visible_worklists,
)
from studies.anonymize import PatientDisplay, patient_display, withheld_patient

# The one normalization of names: stored by ingestion, applied to queries here.
from studies.dicom_header import normalize_name
from studies.models import (
    AccessLevel,
    Entry,
    EntryOrigin,
    Folder,
    Instance,
    Patient,
    Series,
    Study,
    Worklist,
)
from studies.pagination import DEFAULT_SORT, Sort, StudyPage, paginate

logger = logging.getLogger(__name__)

# The modalities offered in the directory's filter, in the order radiology staff expect them.
MODALITIES: list[tuple[str, Any]] = [
    ("CT", _("CT (computed tomography)")),
    ("MR", _("MR (magnetic resonance)")),
    ("CR", _("CR (computed radiography)")),
    ("DX", _("DX (digital radiography)")),
    ("MG", _("MG (mammography)")),
    ("US", _("US (ultrasound)")),
    ("XA", _("XA (X-ray angiography)")),
    ("RF", _("RF (fluoroscopy)")),
    ("NM", _("NM (nuclear medicine)")),
    ("PT", _("PT (PET)")),
    ("OP", _("OP (ophthalmic photography)")),
    ("OPT", _("OPT (ophthalmic tomography)")),
    ("IO", _("IO (intra-oral radiography)")),
    ("PX", _("PX (panoramic X-ray)")),
    ("ES", _("ES (endoscopy)")),
    ("XC", _("XC (external camera photography)")),
    ("SM", _("SM (slide microscopy)")),
    ("ECG", _("ECG (electrocardiography)")),
    ("SC", _("SC (secondary capture)")),
    ("SR", _("SR (structured report)")),
    ("DOC", _("DOC (document)")),
    ("OT", _("OT (other)")),
]
MODALITY_CODES = frozenset(code for code, _label in MODALITIES)


# --- Search criteria ---------------------------------------------------------------------------


@dataclass
class SearchCriteria:
    """What the user searches for. Name, patient ID and accession are PHI: the directory keeps
    them in the session (see ``studies.views.directory``), never in a URL."""

    q: str = ""
    patient_id: str = ""
    accession: str = ""
    modality: str = ""
    date_from: date | None = None
    date_to: date | None = None
    worklist_id: int | None = None
    folder_id: int | None = None

    @property
    def identifying(self) -> bool:
        """Whether the criteria match on patient identity (name, ID, accession)."""
        return bool(self.q.strip() or self.patient_id.strip() or self.accession.strip())

    @property
    def has_search(self) -> bool:
        """Whether anything beyond the worklist or folder narrows the list."""
        return bool(self.identifying or self.modality or self.date_from or self.date_to)

    @property
    def is_empty(self) -> bool:
        return not (self.has_search or self.worklist_id or self.folder_id)

    def keys_used(self) -> list[str]:
        """The names of the criteria that narrow the search, never their values: what the
        audit trail may keep of a query."""
        used = {
            "name": self.q.strip(),
            "patient_id": self.patient_id.strip(),
            "accession": self.accession.strip(),
            "modality": self.modality,
            "date_from": self.date_from,
            "date_to": self.date_to,
            "worklist": self.worklist_id,
            "folder": self.folder_id,
        }
        return [key for key, value in used.items() if value]

    def to_session(self) -> dict[str, Any]:
        """A JSON-serializable copy for the session (without worklist and folder, which are
        ids and travel in the URL)."""
        return {
            "q": self.q,
            "patient_id": self.patient_id,
            "accession": self.accession,
            "modality": self.modality,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
        }

    @classmethod
    def from_session(cls, data: dict[str, Any] | None) -> SearchCriteria:
        data = data or {}

        def _date(value: Any) -> date | None:
            try:
                return date.fromisoformat(value) if value else None
            except (TypeError, ValueError):
                return None

        return cls(
            q=str(data.get("q") or ""),
            patient_id=str(data.get("patient_id") or ""),
            accession=str(data.get("accession") or ""),
            modality=str(data.get("modality") or ""),
            date_from=_date(data.get("date_from")),
            date_to=_date(data.get("date_to")),
        )


# --- The directory's search --------------------------------------------------------------------


# Query words: letters and digits (any script), keeping in-name hyphens and apostrophes.
_WORD = re.compile(r"[\w'-]+")


def _identified_condition(user: User, worklist_ids: list[int]) -> Q:
    """Rows the user may see with the patient's identity, i.e. through something other than an
    anonymized share or a share asking for an SMS code: the organization-wide role, a received
    or filed entry of an organization the user is a member of, or a share entry that is neither
    (as ``access.best_access`` prefers such a grant). A two-factor share counts as masked even once
    its code was entered: searching has no session, and the match would name the patient."""
    org_wide = organizations_with(user, Perm.VIEW_ALL_STUDIES)
    member_orgs = member_organization_ids(user)
    entries = active_entries().filter(study=OuterRef("pk"), worklist_id__in=worklist_ids)
    own_entries = Exists(entries.exclude(origin=EntryOrigin.SHARE))
    clear_shares = Exists(
        entries.filter(origin=EntryOrigin.SHARE, anonymized=False, two_factor_required=False)
    )
    return (
        Q(organization_id__in=org_wide)
        | (Q(organization_id__in=member_orgs) & own_entries)
        | clear_shares
    )


def _has_masked_entries(worklist_ids: list[int]) -> bool:
    """Whether any study is held through an anonymized or two-factor share."""
    return (
        active_entries()
        .filter(worklist_id__in=worklist_ids, origin=EntryOrigin.SHARE)
        .filter(Q(anonymized=True) | Q(two_factor_required=True))
        .exists()
    )


@dataclass(frozen=True)
class AccessConditions:
    """The authority's per-study answers for one user as conditions on Study, for a search that
    filters and pages in the database and cannot ask row by row (DICOMweb QIDO-RS). Grants held
    in a session (a guest link, a share's SMS code entered) are not in them: the caller adds the
    studies those admit. Each is None when the user holds no share that narrows it, so the
    common search stays one plain query.

    - ``opens``: the access is not None, i.e. not held only through shares asking for an SMS
      code (:func:`studies.access._entry_access` opens nothing for them without a session);
    - ``identified``: the directory's rule for matching on identity (:func:`_identified_condition`);
    - ``reports``: the best access (:func:`studies.access.best_access`) reads reports, so objects
      without pixel data (structured reports, PDFs) may be listed: neither anonymized nor
      images only.
    """

    opens: Q | None = None
    identified: Q | None = None
    reports: Q | None = None


def _narrowing_shares(user: User) -> set[tuple[bool, bool, str]]:
    """The kinds (anonymized, two-factor, level) of the user's active shares that narrow what
    they open. Most users hold none: one query says so, remembered (``portal.decisions``) until
    an entry or worklist changes. An entry that ends by its date leaves a kind here until then;
    that only adds conditions each row is checked against anyway."""

    def read() -> tuple[set[tuple[bool, bool, str]], None]:
        kinds = (
            active_entries()
            .filter(worklist_id__in=visible_worklist_ids(user), origin=EntryOrigin.SHARE)
            .filter(Q(anonymized=True) | Q(two_factor_required=True) | Q(level=AccessLevel.IMAGES))
            .values_list("anonymized", "two_factor_required", "level")
            .distinct()
        )
        return set(kinds), None

    return decisions.remember(f"narrowing:{user.pk}", read)


def access_conditions(user: User | AnonymousUser) -> AccessConditions:
    if not user.is_authenticated:
        return AccessConditions()
    narrowing = _narrowing_shares(user)
    if not narrowing:
        return AccessConditions()
    worklist_ids = visible_worklist_ids(user)
    two_factor = any(required for _anonymized, required, _level in narrowing)
    masked = any(anonymized or required for anonymized, required, _level in narrowing)
    withholding = any(
        anonymized or level == AccessLevel.IMAGES for anonymized, _required, level in narrowing
    )
    memberships = list(active_memberships(user))
    org_wide = [m.organization_id for m in memberships if m.role.grants(Perm.VIEW_ALL_STUDIES)]
    member_orgs = [m.organization_id for m in memberships]
    entries = active_entries().filter(
        study=OuterRef("pk"), worklist_id__in=worklist_ids, two_factor_required=False
    )
    # The organization's role, and a received or filed entry read through the member's role,
    # open a study identified and with its reports.
    through_role = Q(organization_id__in=org_wide) | (
        Q(organization_id__in=member_orgs) & Exists(entries.exclude(origin=EntryOrigin.SHARE))
    )
    shares = entries.filter(origin=EntryOrigin.SHARE)
    return AccessConditions(
        opens=(through_role | Exists(shares)) if two_factor else None,
        identified=_identified_condition(user, worklist_ids) if masked else None,
        # best_access prefers a share without SMS code, then one not anonymized, then the
        # higher level: the reports are readable when such a share reads them.
        reports=(
            through_role | Exists(shares.filter(anonymized=False).exclude(level=AccessLevel.IMAGES))
            if withholding
            else None
        ),
    )


def folder_children(worklist_id: int) -> dict[int | None, list[int]]:
    """A worklist's folder tree as parent id -> child ids (``None``: the top level)."""
    children: dict[int | None, list[int]] = defaultdict(list)
    for pk, parent_id in Folder.objects.filter(worklist_id=worklist_id).values_list(
        "pk", "parent_id"
    ):
        children[parent_id].append(pk)
    return children


# More levels than any folder tree may have (studies.services.folders.MAX_DEPTH): only a
# corrupted parent cycle could reach it.
_ANCESTRY_LIMIT = 64


def folder_ancestry(folder: Folder) -> list[Folder]:
    """The folder and its parents up to the worklist's top level, nearest first, from one read
    of the worklist's folders."""
    by_id = {f.pk: f for f in Folder.objects.filter(worklist_id=folder.worklist_id)}
    chain: list[Folder] = []
    current: Folder | None = by_id.get(folder.pk, folder)
    while current is not None and len(chain) < _ANCESTRY_LIMIT:
        chain.append(current)
        current = None if current.parent_id is None else by_id.get(current.parent_id)
    return chain


def folder_and_descendants(folder: Folder) -> list[int]:
    """The ids of the folder and of every folder under it: what the directory shows in it, a
    folder's deletion removes and a folder's guest link opens."""
    children = folder_children(folder.worklist_id)
    found, stack = [], [folder.pk]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children[current])
    return found


# Up to this many matching patients are looked up first and the studies filtered by them.
_PATIENT_PREFILTER_LIMIT = 300


def _patient_condition(words: list[str], patient_id: str) -> Q:
    """The studies of the patients matching the name words and patient ID prefix.

    A rare name or ID is looked up among patients first: SQLite keeps no statistics, and would
    otherwise walk every visible study in date order testing the joined name row by row. A
    common one stays a join condition, which finds a page of matches quickly in date order.
    """
    if not words and not patient_id:
        return Q()
    condition = Q()
    for word in words:
        condition &= Q(name_search__contains=word)
    if patient_id:
        condition &= Q(patient_id__startswith=patient_id)
    matching = list(
        Patient.objects.filter(condition).values_list("pk", flat=True)[
            : _PATIENT_PREFILTER_LIMIT + 1
        ]
    )
    if len(matching) <= _PATIENT_PREFILTER_LIMIT:
        return Q(patient__in=matching)
    joined = Q()
    for word in words:
        joined &= Q(patient__name_search__contains=word)
    if patient_id:
        joined &= Q(patient__patient_id__startswith=patient_id)
    return joined


@dataclass
class SearchScope:
    """What a search runs over: the user's visible studies (annotated for sorting) and the
    filtered result. ``visible`` is where cursors are looked up."""

    visible: QuerySet[Study]
    results: QuerySet[Study]


def search_scope(user: User, criteria: SearchCriteria) -> SearchScope:
    worklist_ids = visible_worklist_ids(user)
    chosen = criteria.worklist_id
    in_worklist = chosen is not None and chosen in worklist_ids
    if in_worklist and chosen is not None:
        # An active entry in one of the user's worklists is what makes a study visible, so the
        # chosen worklist's condition alone says both; stated twice (visible anywhere, and in
        # this worklist) it misleads PostgreSQL's row estimate into scanning the whole table.
        base = Study.objects.filter(
            Exists(active_entries().filter(study=OuterRef("pk"), worklist_id=chosen))
        )
    else:
        base = visible_studies(user)
    visible = base.select_related("patient")
    masked_possible = _has_masked_entries(worklist_ids)
    identified = _identified_condition(user, worklist_ids) if masked_possible else None
    if identified is not None:
        # Sorting by name must not place an anonymized or withheld study by its real name: that
        # order would give the name away. Those rows sort as if nameless.
        visible = visible.annotate(
            sort_name=Case(When(identified, then=F("patient_sort_name")), default=Value(""))
        )
    else:
        # The normalized DICOM name ("family given"), stored on the study so it is indexed.
        visible = visible.annotate(sort_name=F("patient_sort_name"))

    results = visible
    if criteria.identifying and identified is not None:
        # Nor may a search by name, patient ID or accession find a study the user only sees
        # anonymized or withheld: the match itself would reveal who it is.
        results = results.filter(identified)
    results = results.filter(
        _patient_condition(_WORD.findall(normalize_name(criteria.q)), criteria.patient_id.strip())
    )
    accession = criteria.accession.strip()
    if accession:
        results = results.filter(accession=accession)
    modality = criteria.modality.strip().upper()
    if modality:
        results = results.filter(
            Q(modalities=modality)
            | Q(modalities__startswith=f"{modality} ")
            | Q(modalities__endswith=f" {modality}")
            | Q(modalities__contains=f" {modality} ")
        )
    if criteria.date_from:
        results = results.filter(study_date__gte=criteria.date_from)
    if criteria.date_to:
        results = results.filter(study_date__lte=criteria.date_to)
    if criteria.worklist_id is not None and not in_worklist:
        results = results.none()
    if criteria.folder_id is not None:
        folder = Folder.objects.filter(pk=criteria.folder_id, worklist_id__in=worklist_ids).first()
        if folder is None:
            results = results.none()
        else:
            results = results.filter(
                Exists(
                    active_entries().filter(
                        study=OuterRef("pk"),
                        worklist_id=folder.worklist_id,
                        folder_id__in=folder_and_descendants(folder),
                    )
                )
            )
    return SearchScope(visible=visible, results=results)


def search_studies(user: User, criteria: SearchCriteria, *, sort: Sort | str = DEFAULT_SORT):
    """The studies ``user`` may see that match ``criteria``, in ``sort`` order (ties by id)."""
    sort = Sort.parse(sort) if isinstance(sort, str) else sort
    return search_scope(user, criteria).results.order_by(*sort.ordering())


def search_page(
    user: User,
    criteria: SearchCriteria,
    *,
    sort: Sort,
    cursor: str | None = None,
    page_size: int = 50,
) -> StudyPage:
    """One page of :func:`search_studies`. Raises :class:`InvalidCursor`."""
    scope = search_scope(user, criteria)
    return paginate(
        scope.results, sort=sort, cursor=cursor, page_size=page_size, lookup=scope.visible
    )


def remembered_search_page(
    request: AuthenticatedRequest,
    criteria: SearchCriteria,
    *,
    sort: Sort,
    cursor: str | None = None,
    page_size: int = 50,
) -> StudyPage:
    """:func:`search_page` for the request's user, remembered (``portal.decisions``) for this
    principal, the session's grants and these criteria, sort, cursor and size, as the API's
    search is: a user goes back to the same list again and again. Only the studies' keys and
    the cursors are kept; the studies are read again by key, so a page shows them as they are
    now. Every change to a study, an entry, a folder or anything else access depends on moves
    the generation on, and the first of the user's dated shares to end ends the answer.
    Raises :class:`InvalidCursor` (never remembered)."""
    user = request.user
    computed: list[StudyPage] = []

    def compute() -> tuple[tuple[list[int], str | None, str | None], datetime | None]:
        page = search_page(user, criteria, sort=sort, cursor=cursor, page_size=page_size)
        computed.append(page)
        keys = [study.pk for study in page.studies]
        return (keys, page.next_cursor, page.previous_cursor), access_ends(user)

    key = search_decision_key(request, "search-page", criteria, sort.param, cursor, page_size)
    keys, next_cursor, previous_cursor = decisions.remember(key, compute)
    if computed:
        return computed[0]
    by_key = Study.objects.select_related("patient").in_bulk(keys)
    # Deleting a study moves the generation on, so every key is found but for one deleted
    # between the two reads: that row is left out rather than failing the page.
    return StudyPage(
        studies=[by_key[pk] for pk in keys if pk in by_key],
        next_cursor=next_cursor,
        previous_cursor=previous_cursor,
    )


# --- What a listed row shows -------------------------------------------------------------------


@dataclass(frozen=True)
class SharedMessage:
    """A message a study was shared with, as its recipient reads it."""

    text: str
    sender: User | None
    # When the newest share that carries it was made.
    sent_at: datetime
    # Every entry that carries it was opened.
    read: bool


def distinct_messages(entries: Iterable[Entry]) -> list[SharedMessage]:
    """The messages these shared entries carry, each sender's text once however many shares (or
    worklists: the user's own, their group's, their location's) brought it, newest first. A
    message is unread while any entry that carries it is (PACSonWEB's red "Message" label)."""
    found: dict[tuple[int | None, str], SharedMessage] = {}
    for entry in sorted(entries, key=lambda e: (e.added_at, e.pk), reverse=True):
        text = (entry.message or "").strip()
        if not text:
            continue
        key = (entry.added_by_id, " ".join(text.split()))
        known = found.get(key)
        if known is None:
            found[key] = SharedMessage(
                text=text,
                sender=entry.added_by,
                sent_at=entry.added_at,
                read=entry.opened_at is not None,
            )
        elif known.read and entry.opened_at is None:
            found[key] = replace(known, read=False)
    return list(found.values())


@dataclass
class StudyRow:
    """One study as the directory and the API list it for one user."""

    study: Study
    access: StudyAccess | None
    patient: PatientDisplay
    worklist_ids: list[int] = field(default_factory=list)
    shared_entries: list[Entry] = field(default_factory=list)
    # What the directory page adds (studies.views.directory): the study page's address and
    # absolute link, whether the user may file it in folders, the menu items that depend on it
    # (``data-allows``) and the real links of its menu.
    href: str = ""
    link: str = ""
    organize: bool = False
    allows: str = ""
    links: list[dict[str, str]] = field(default_factory=list)

    @property
    def anonymized(self) -> bool:
        return self.patient.anonymized

    @property
    def withheld(self) -> bool:
        return self.patient.withheld

    @property
    def accession(self) -> str:
        return "" if self.anonymized or self.withheld else self.study.accession

    @property
    def modalities(self) -> list[str]:
        return self.study.modalities.split()

    @cached_property
    def messages(self) -> list[SharedMessage]:
        """Each distinct message once (one "Message" badge per study, however many shares)."""
        return distinct_messages(self.shared_entries)

    @property
    def unread_messages(self) -> bool:
        """The badge is red while any message is unread."""
        return any(not message.read for message in self.messages)

    @property
    def labels(self) -> list[str]:
        return shown_labels(self.shared_entries)


def shown_labels(entries: Iterable[Entry]) -> list[str]:
    """The labels these shared entries show, each once: a label only for the recipient user is
    not shown through a group's or location's worklist (``Entry.shown_label``)."""
    return sorted({label for entry in entries if (label := entry.shown_label)})


def study_rows(
    user: User, studies: list[Study], request: HttpRequest | None = None
) -> list[StudyRow]:
    """Rows for a page of studies: the patient as this user may see it, the user's worklists
    holding each study, and the shared entries (messages, labels) it was reached through.

    Only studies reached through an anonymized share, or a share asking for an SMS code, can be
    shown otherwise than plainly; for those the authority decides, per row (with ``request``,
    grants held in its session count: a code entered there). A row it does not admit at all is
    withheld when a two-factor share holds it, anonymized otherwise. ``StudyRow.access`` is
    filled for those rows only.
    """
    by_study = entries_reaching(user, studies)
    # Without an anonymized or two-factor grant among the candidates the best one is plain:
    # only those rows need the authority's full answer, asked once for all of them.
    masked = [
        study
        for study in studies
        if any(
            e.origin == EntryOrigin.SHARE and (e.anonymized or e.two_factor_required)
            for e in by_study.get(study.pk, [])
        )
    ]
    if not masked:
        answers = {}
    elif request is not None:
        answers = studies_access(request, masked)
    else:
        answers = user_studies_access(user, masked)
    rows = []
    for study in studies:
        held = by_study.get(study.pk, [])
        shared = [e for e in held if e.origin == EntryOrigin.SHARE]
        access, patient = None, None
        if study.pk in answers:
            access = answers[study.pk]
            if access is None and any(e.two_factor_required for e in shared):
                patient = withheld_patient()
            else:
                patient = patient_display(study, anonymized=access is None or access.anonymized)
        rows.append(
            StudyRow(
                study=study,
                access=access,
                patient=patient or patient_display(study, anonymized=False),
                worklist_ids=sorted({e.worklist_id for e in held}),
                shared_entries=shared,
            )
        )
    return rows


# --- Worklists ---------------------------------------------------------------------------------

_KIND_ORDER = {"location": 0, "group": 1, "personal": 2}


@dataclass
class _TreeNode:
    # What the directory page adds to each node (studies.views.directory): the address of its
    # list and absolute link, the list narrowed to it, whether the user may organize its
    # folders, and the menu items that depend on it (``data-allows``).
    href: str = field(default="", kw_only=True)
    link: str = field(default="", kw_only=True)
    filter_url: str = field(default="", kw_only=True)
    organize: bool = field(default=False, kw_only=True)
    allows: str = field(default="", kw_only=True)


@dataclass
class FolderNode(_TreeNode):
    folder: Folder
    children: list[FolderNode] = field(default_factory=list)


@dataclass
class WorklistNode(_TreeNode):
    worklist: Worklist
    folders: list[FolderNode] = field(default_factory=list)
    group_label: str | Promise = ""


def worklist_tree(user: User) -> list[WorklistNode]:
    """The user's worklists (locations, groups, personal) with their folders as a tree. The
    worklists and folders are remembered (``portal.decisions``) until a worklist, a folder, a
    membership or a role changes; each call builds its own tree, which its caller annotates."""
    if not user.is_authenticated or not user.is_active:
        return []

    def read() -> tuple[tuple[list[Worklist], list[Folder]], None]:
        worklists = sorted(
            visible_worklists(user).select_related("organization"),
            key=lambda w: (_KIND_ORDER.get(w.kind, 9), w.name.casefold(), w.pk),
        )
        folders = Folder.objects.filter(worklist_id__in=[w.pk for w in worklists])
        return (worklists, list(folders.order_by("name", "pk"))), None

    worklists, folders = decisions.remember(f"worklist-tree:{user.pk}", read)
    nodes = {w.pk: WorklistNode(worklist=w) for w in worklists}
    folder_nodes = {f.pk: FolderNode(folder=f) for f in folders}
    for node in folder_nodes.values():
        parent = node.folder.parent_id
        if parent is not None and parent in folder_nodes:
            folder_nodes[parent].children.append(node)
        else:
            nodes[node.folder.worklist_id].folders.append(node)
    return list(nodes.values())


@dataclass(frozen=True)
class FolderChoice:
    """A place a study can be filed: a worklist's top level (``folder`` None) or one of its
    folders, named by its path ("Teaching file / Chest")."""

    worklist: Worklist
    folder: Folder | None
    path: str

    @property
    def key(self) -> str:
        return f"folder:{self.folder.pk}" if self.folder else f"worklist:{self.worklist.pk}"


def folder_choices(user: User, worklist_ids: Iterable[int] | None = None) -> list[FolderChoice]:
    """Every place the user may file studies, worklist by worklist as the side tree shows them,
    limited to ``worklist_ids`` when given."""
    organizable = organizable_worklist_ids(user)
    wanted = organizable if worklist_ids is None else organizable & set(worklist_ids)
    choices: list[FolderChoice] = []

    def walk(worklist: Worklist, nodes: list[FolderNode], prefix: str) -> None:
        for node in nodes:
            path = f"{prefix} / {node.folder.name}" if prefix else node.folder.name
            choices.append(FolderChoice(worklist=worklist, folder=node.folder, path=path))
            walk(worklist, node.children, path)

    for node in worklist_tree(user):
        if node.worklist.pk in wanted:
            choices.append(FolderChoice(worklist=node.worklist, folder=None, path=""))
            walk(node.worklist, node.folders, "")
    return choices


def held_entries(worklist_ids: Iterable[int], studies: Iterable[Study]) -> set[tuple[int, int]]:
    """The (worklist, study) keys of the entries, not removed, that these worklists hold for
    these studies."""
    return set(
        Entry.objects.filter(
            worklist_id__in=list(worklist_ids), study__in=list(studies), removed_at__isnull=True
        ).values_list("worklist_id", "study_id")
    )


def visible_folder(user: User, folder_id: int) -> Folder | None:
    return (
        Folder.objects.select_related("worklist")
        .filter(pk=folder_id, worklist__in=visible_worklists(user))
        .first()
    )


def visible_worklist(user: User, worklist_id: int) -> Worklist | None:
    return visible_worklists(user).filter(pk=worklist_id).first()


def can_use_directory(user: User) -> bool:
    """Members whose role may view studies, and anyone with something in a personal worklist
    (e.g. a user outside any organization that studies were shared with)."""
    if not user.is_authenticated or not user.is_active:
        return False
    if has_perm(user, Perm.VIEW_STUDIES):
        return True
    return active_entries().filter(worklist__owner=user).exists()


# --- A study's content, messages and priors ----------------------------------------------------


@dataclass
class SeriesFrames:
    series: Series
    instances: list[Instance]

    @property
    def frames(self) -> list[tuple[str, int]]:
        """``(sop_instance_uid, frame number)`` in display order: instance number, then frame."""
        return [
            (instance.sop_instance_uid, n)
            for instance in self.instances
            for n in range(1, max(instance.frames, 1) + 1)
        ]

    @property
    def versioned_frames(self) -> list[tuple[str, int, str]]:
        """The frames with their instance's content version (a cacheable image's ``?v=``)."""
        return [
            (instance.sop_instance_uid, n, instance.content_version)
            for instance in self.instances
            for n in range(1, max(instance.frames, 1) + 1)
        ]


def study_series(study: Study, *, images_only: bool = False) -> list[SeriesFrames]:
    """The study's series in series-number order, each with its instances in instance-number
    order. With ``images_only``, series and instances without pixel data are left out."""
    instances = Instance.objects.filter(series__study=study).order_by("number", "pk")
    if images_only:
        instances = instances.filter(has_pixels=True)
    by_series: dict[int, list[Instance]] = defaultdict(list)
    for instance in instances:
        by_series[instance.series_id].append(instance)
    result = []
    for series in Series.objects.filter(study=study).order_by(
        F("number").asc(nulls_last=True), "pk"
    ):
        held = by_series.get(series.pk, [])
        if images_only and not held:
            continue
        result.append(SeriesFrames(series=series, instances=held))
    return result


def default_window(instance: Instance) -> tuple[float, float] | None:
    """The instance's own window (center, width) from its DICOM header, or None. Cached by
    content digest: stored files never change."""
    if not instance.file or not instance.has_pixels:
        return None
    key = f"window:{instance.sha256 or instance.file}"
    cached = cache.get(key)
    if cached is not None:
        return tuple(cached) if cached else None
    window = None
    try:
        import pydicom

        from studies.rendering import default_window as dataset_window

        with storages["dicom"].open(instance.file, "rb") as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True)
        found = dataset_window(ds)
        if found is not None:
            window = (found.center, found.width)
    except Exception:  # a header we cannot read only costs the viewer its initial C/W
        logger.warning("No window read for instance %s", instance.pk, exc_info=True)
    cache.set(key, list(window) if window else [], 24 * 3600)
    return window


def reached_through(user: User | AnonymousUser, study: Study) -> list[Entry]:
    """The user's active shared entries for ``study`` (the ones that may carry a message); a
    guest has none."""
    if not user.is_authenticated:
        return []
    return list(
        active_entries()
        .filter(
            study=study,
            origin=EntryOrigin.SHARE,
            worklist_id__in=visible_worklist_ids(user),
        )
        .select_related("added_by", "worklist")
        .order_by("-added_at", "-pk")
    )


def priors_for(
    user: User | AnonymousUser,
    study: Study,
    access: StudyAccess,
    *,
    request: HttpRequest | None = None,
    limit: int = 50,
) -> list[Study]:
    """Other studies of the same patient that the user sees with the patient's identity, and
    those the request's guest-link grants admit (a guest has no user; grants are never
    anonymized).

    None for an anonymized view: listing them would tie the anonymized study to a named
    patient. Studies the user sees only anonymized are left out for the same reason.
    """
    if access.anonymized:
        return []
    priors: list[Study] = []
    if user.is_authenticated:
        worklist_ids = visible_worklist_ids(user)
        priors = list(
            visible_studies(user)
            .filter(patient_id=study.patient_id)
            .filter(_identified_condition(user, worklist_ids))
            .exclude(pk=study.pk)
            .order_by(F("study_date").desc(nulls_first=True), "-pk")[:limit]
        )
    granted = granted_study_ids(request) if request is not None else set()
    granted -= {study.pk, *(prior.pk for prior in priors)}
    if granted:
        priors.extend(Study.objects.filter(pk__in=granted, patient_id=study.patient_id))
        # The database's order: undated first, then newest first.
        priors.sort(
            key=lambda s: (s.study_date is None, s.study_date or date.min, s.pk), reverse=True
        )
    return priors[:limit]
