"""The one authority on who may see or do what with a study.

Views, the REST API, DICOMweb frames and downloads all ask here; none re-implements a rule.
A principal reaches a study through:

- its organization, when the member's role may view every study of the organization;
- an active entry in one of the principal's worklists: the personal worklist, and the worklists
  of the groups and locations of its memberships (entries made by shares carry the share's terms);
- a grant held in the browser session (sources registered by other apps through
  :func:`register_grant_source`, so this module imports no feature app): a guest link's, or a
  share's SMS code verified in this session; or the same grants carried by a viewer token made
  in that session (:class:`CarriedGrants`), which also limits the request to the studies the
  token was made for.

A caller who may not open a study *yet* (a share that asks for an SMS code first) is told where
to earn access by the challenges other apps register (:func:`register_access_challenge`); the
study page follows them, every other door (frames, downloads, the API) stays shut.

An entry is active while it is not removed, not blocked and not past ``valid_until``; this is
checked at every request, so removing or expiring a share needs no job to run.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AnonymousUser
from django.db.models import Exists, Min, OuterRef, Q, QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone

from accounts.memberships import active_memberships, has_perm, organizations_with
from accounts.models import Membership, Organization, User
from accounts.permissions import Perm
from portal import decisions
from portal.prepared_queries import prepared_models
from studies.models import ACCESS_RANK, AccessLevel, Entry, EntryOrigin, Study, Worklist


@dataclass(frozen=True)
class StudyAccess:
    """What one principal may do with one study."""

    level: AccessLevel
    anonymized: bool = False
    can_share: bool = False
    until: datetime | None = None
    two_factor_required: bool = False
    via: str = "worklist"

    @property
    def can_read_report(self) -> bool:
        # An anonymized study's report is never accessible, whatever level was granted.
        return not self.anonymized and self.level != AccessLevel.IMAGES

    @property
    def can_write_report(self) -> bool:
        return not self.anonymized and self.level == AccessLevel.REPORT_WRITE

    def as_api(self) -> dict:
        return {
            "level": self.level.value if hasattr(self.level, "value") else self.level,
            "anonymized": self.anonymized,
            "can_share": self.can_share,
            "until": self.until.isoformat() if self.until else None,
        }


GrantSource = Callable[[HttpRequest, Study], StudyAccess | None]
_grant_sources: list[GrantSource] = []


def register_grant_source(source: GrantSource) -> None:
    """Let another app (guest links) admit session-held grants. Called from AppConfig.ready."""
    if source not in _grant_sources:
        _grant_sources.append(source)


GrantedStudies = Callable[[HttpRequest], set[int]]
_granted_study_sources: list[GrantedStudies] = []


def register_granted_studies(source: GrantedStudies) -> None:
    """Let another app (guest links) list the studies its session-held grants admit, so the
    viewer can offer them as priors. Called from AppConfig.ready."""
    if source not in _granted_study_sources:
        _granted_study_sources.append(source)


def granted_study_ids(request: HttpRequest) -> set[int]:
    """Every study the request's session-held grants admit (no organization or worklist rule)."""
    ids: set[int] = set()
    for source in _granted_study_sources:
        ids |= source(request)
    carried = carried_grants(request)
    if carried is not None:
        ids &= carried.study_ids
    return ids


# --- Grants carried by a viewer token ------------------------------------------------------------

_session_grant_keys: list[str] = []
_CARRIED_ATTRIBUTE = "carried_grants"


@dataclass(frozen=True)
class CarriedGrants:
    """What a request made with a viewer token (``viewers``) stands on instead of a browser
    session: the token (whom remembered decisions are about), the studies it was made for (the
    most it reaches, whatever else its principal may see) and the session's grants copied into
    it when it was made, which the grant sources check again at every request as they check a
    session's."""

    token_id: int
    study_ids: frozenset[int]
    grants: dict[str, list]


def register_session_grants(key: str) -> None:
    """Let another app name the session key it keeps grants under (a guest link's, a share's
    verified SMS code), so that a viewer token made in the session can carry them. Called from
    AppConfig.ready."""
    if key not in _session_grant_keys:
        _session_grant_keys.append(key)


def session_grants(request: HttpRequest) -> dict[str, list]:
    """The grants the request's session holds, by key, as stored."""
    return {key: grants for key in _session_grant_keys if (grants := stored_grants(request, key))}


def stored_grants(request: HttpRequest, key: str) -> list:
    """The grants stored under ``key`` for this request: those a viewer token carries, else the
    browser session's. Parse them as untrusted input."""
    carried = carried_grants(request)
    if carried is not None:
        found = carried.grants.get(key)
    else:
        session = getattr(request, "session", None)
        found = session.get(key) if session is not None else None
    return list(found) if isinstance(found, list) else []


def carry_grants(request: HttpRequest, carried: CarriedGrants | None) -> None:
    """Make ``request`` one of a viewer token's: from here on it reaches only what ``carried``
    allows (None: the request stands on its own session again)."""
    setattr(request, _CARRIED_ATTRIBUTE, carried)


def carried_grants(request: HttpRequest) -> CarriedGrants | None:
    return getattr(request, _CARRIED_ATTRIBUTE, None)


AccessChallenge = Callable[[HttpRequest, Study], str | None]
_access_challenges: list[AccessChallenge] = []


def register_access_challenge(challenge: AccessChallenge) -> None:
    """Let another app (sharing) say where a caller who may not open a study yet can earn access
    (the page asking for a share's SMS code): ``challenge(request, study)`` returns that page's
    URL or None. Called from AppConfig.ready."""
    if challenge not in _access_challenges:
        _access_challenges.append(challenge)


def access_challenge(request: HttpRequest, study_uid: str) -> str | None:
    """Where the request's logged-in user can earn access to a study they may not open now, or
    None. Only for a user who already holds an entry of the study that asks for more (so the
    answer reveals nothing the worklist does not show); the caller asks only after
    :func:`get_study_for` refused."""
    if not request.user.is_authenticated or not _access_challenges:
        return None
    study = Study.objects.filter(study_uid=study_uid).first()
    if study is None:
        return None
    for challenge in _access_challenges:
        url = challenge(request, study)
        if url:
            return url
    return None


# --- Worklists -----------------------------------------------------------------------------


def visible_worklists(user: User) -> QuerySet[Worklist]:
    """The personal worklist, and the group and location worklists of memberships whose role
    may view studies (organization-wide viewers see all their organization's worklists)."""
    return Worklist.objects.filter(pk__in=visible_worklist_ids(user))


def visible_worklist_ids(user: User) -> list[int]:
    """The keys of :func:`visible_worklists`, remembered (``portal.decisions``, in the
    accounts' scope) until a worklist, membership or role changes: a study arriving, which
    moves every other answer on, leaves them standing."""
    if not user.is_authenticated or not user.is_active:
        return []

    def read() -> tuple[list[int], None]:
        memberships = [m for m in active_memberships(user) if m.role.grants(Perm.VIEW_STUDIES)]
        condition = Q(owner=user)
        for membership in memberships:
            if membership.role.grants(Perm.VIEW_ALL_STUDIES):
                condition |= Q(organization_id=membership.organization_id) & ~Q(kind="personal")
            else:
                condition |= Q(location__memberships=membership) | Q(group__memberships=membership)
        ids = Worklist.objects.filter(condition).distinct().values_list("pk", flat=True)
        return sorted(ids), None

    return decisions.remember(f"worklists:{user.pk}", read, scope=decisions.ACCOUNTS)


def access_ends(user: User | AnonymousUser) -> datetime | None:
    """When the first of the user's dated accesses ends (a share's valid_until in one of the
    user's worklists), if any: what remembers an answer about all the user's studies at once
    (a search) keeps it no longer."""
    if not user.is_authenticated:
        return None

    def read() -> datetime | None:
        first: datetime | None = (
            active_entries()
            .filter(worklist_id__in=visible_worklist_ids(user), valid_until__isnull=False)
            .aggregate(first=Min("valid_until"))["first"]
        )
        return first

    # Once a request: a directory page rendered afresh asks it for its search and for itself.
    return decisions.once_per_request(f"access-ends:{user.pk}", read)


def active_entries(now: datetime | None = None) -> QuerySet[Entry]:
    now = now or timezone.now()
    return Entry.objects.filter(removed_at__isnull=True, blocked_at__isnull=True).filter(
        Q(valid_until__isnull=True) | Q(valid_until__gt=now)
    )


def passes_on_in_full(access: StudyAccess | None) -> bool:
    """Whether this access may be handed on whole, identified and with the report (a guest
    link's grant): held through the organization or a worklist entry, or through a share that
    allows further sharing and is neither anonymized, images only nor behind an SMS code. A
    guest link is further sharing, and must never widen what a share gave."""
    if access is None:
        return False
    if access.via != "share":
        return True
    return (
        access.can_share
        and not access.anonymized
        and not access.two_factor_required
        and access.level != AccessLevel.IMAGES
    )


def entries_passed_on_in_full(now: datetime | None = None) -> QuerySet[Entry]:
    """Active entries whose study may be handed on whole (see :func:`passes_on_in_full`): a
    worklist's or folder's guest link grants only these."""
    narrowed = (
        Q(can_share=False)
        | Q(anonymized=True)
        | Q(two_factor_required=True)
        | Q(level=AccessLevel.IMAGES)
    )
    return active_entries(now).exclude(Q(origin=EntryOrigin.SHARE) & narrowed)


# --- Studies -------------------------------------------------------------------------------


def visible_studies(user: User | AnonymousUser) -> QuerySet[Study]:
    """Every study the user may find in the directory or the API (never ``objects.all()``)."""
    if not user.is_authenticated or not user.is_active:
        return Study.objects.none()
    org_wide = organizations_with(user, Perm.VIEW_ALL_STUDIES)
    worklist_ids = visible_worklist_ids(user)
    through_entry = Exists(
        active_entries().filter(study=OuterRef("pk"), worklist_id__in=worklist_ids)
    )
    return Study.objects.filter(Q(organization_id__in=org_wide) | through_entry)


def _role_access(
    user: User, study: Study, via: str, memberships: list[Membership] | None = None
) -> StudyAccess | None:
    for membership in memberships if memberships is not None else active_memberships(user):
        if membership.organization_id == study.organization_id:
            role = membership.role
            return StudyAccess(
                level=(
                    AccessLevel.REPORT_WRITE
                    if role.grants(Perm.WRITE_REPORTS)
                    else AccessLevel.REPORT_READ
                ),
                can_share=role.grants(Perm.SHARE_STUDY),
                via=via,
            )
    return None


def _entry_access(
    user: User, entry: Entry, study: Study, memberships: list[Membership] | None = None
) -> StudyAccess | None:
    if entry.two_factor_required:
        # Fail closed: a share that asks for an SMS code opens only in the browser session where
        # the code was entered (sharing.access registers that grant source, which needs the
        # request). Without a request (API tokens, services) nothing proves the code was given, so
        # the entry opens nothing here.
        return None
    if entry.origin == EntryOrigin.SHARE:
        return shared_entry_access(entry)
    # A received or filed entry: the member's own role in the owning organization decides.
    return _role_access(user, study, via="worklist", memberships=memberships)


def shared_entry_access(entry: Entry) -> StudyAccess:
    """The terms a share's entry carries (once any SMS code it asks for was given)."""
    return StudyAccess(
        level=AccessLevel(entry.level),
        anonymized=entry.anonymized,
        can_share=entry.can_share,
        until=entry.valid_until,
        two_factor_required=entry.two_factor_required,
        via="share",
    )


def best_access(candidates: Iterable[StudyAccess | None]) -> StudyAccess | None:
    """The single most useful access; never a blend, so no combination widens any one grant."""
    found = [c for c in candidates if c is not None]
    if not found:
        return None
    return max(
        found,
        key=lambda a: (
            not a.two_factor_required,
            not a.anonymized,
            ACCESS_RANK[AccessLevel(a.level)],
            a.can_share,
            a.until is None,
            a.until or timezone.now(),
        ),
    )


def user_study_access(user: User, study: Study) -> StudyAccess | None:
    return user_studies_access(user, [study])[study.pk]


def user_studies_access(
    user: User | AnonymousUser, studies: Iterable[Study]
) -> dict[int, StudyAccess | None]:
    """The user's access to each study (by primary key), reading memberships, worklists and
    entries once for all of them. An anonymous visitor (a guest) has none of its own.

    Within a request the answer for the same studies is worked out once (a directory page's
    menu items each ask it of the page's rows), and again after any change
    (``portal.decisions.once_per_request``)."""
    studies = list(studies)
    if not user.is_authenticated or not user.is_active or not studies:
        return {study.pk: None for study in studies}
    found = decisions.once_per_request(
        f"studies-access:{user.pk}:{_studies_question(studies)}",
        lambda: _user_studies_access(user, studies),
    )
    # The caller's own copy: studies_access adds the session's grants to it.
    return dict(found)


def _user_studies_access(user: User, studies: list[Study]) -> dict[int, StudyAccess | None]:
    found: dict[int, StudyAccess | None] = {study.pk: None for study in studies}
    memberships = list(active_memberships(user))
    org_wide = {m.organization_id for m in memberships if m.role.grants(Perm.VIEW_ALL_STUDIES)}
    entries = entries_reaching(user, studies)
    for study in studies:
        candidates: list[StudyAccess | None] = []
        if study.organization_id in org_wide:
            candidates.append(_role_access(user, study, "organization", memberships))
        for entry in entries.get(study.pk, []):
            candidates.append(_entry_access(user, entry, study, memberships))
        found[study.pk] = best_access(candidates)
    return found


def entries_reaching(user: User, studies: Iterable[Study]) -> dict[int, list[Entry]]:
    """The active entries of the user's worklists that hold these studies, by study, newest
    first, with their worklist and who added them: what gives the user access to each study
    besides a role, and what a listed row shows of how it arrived
    (``studies.selectors.study_rows``). Read once per request for the same studies
    (``portal.decisions.once_per_request``): a page's rows, then its menu items, ask them."""
    studies = list(studies)
    if not studies:
        return {}

    def read() -> dict[int, list[Entry]]:
        found: dict[int, list[Entry]] = {}
        entries = (
            active_entries()
            .filter(study__in=studies, worklist_id__in=visible_worklist_ids(user))
            .select_related("added_by", "worklist")
            .order_by("-added_at", "-pk")
        )
        for entry in entries:
            found.setdefault(entry.study_id, []).append(entry)
        return found

    question = _studies_question(studies)
    return decisions.once_per_request(f"entries-reaching:{user.pk}:{question}", read)


def _studies_question(studies: list[Study]) -> str:
    """Which studies a question of :func:`decisions.once_per_request` is about, in any order."""
    return ",".join(str(pk) for pk in sorted({study.pk for study in studies}))


def study_access(request: HttpRequest, study: Study) -> StudyAccess | None:
    """The access of whoever makes this request: a logged-in user, or a guest-link grant."""
    return studies_access(request, [study])[study.pk]


def studies_access(request: HttpRequest, studies: Iterable[Study]) -> dict[int, StudyAccess | None]:
    """:func:`study_access` for several studies, the user's part read once."""
    studies = list(studies)
    found = user_studies_access(request.user, studies)
    carried = carried_grants(request)
    for study in studies:
        if carried is not None and study.pk not in carried.study_ids:
            found[study.pk] = None
            continue
        candidates = [found[study.pk]]
        candidates.extend(source(request, study) for source in _grant_sources)
        found[study.pk] = best_access(candidates)
    return found


def decision_principal(request: HttpRequest) -> str:
    """Whom a remembered access decision (``portal.decisions``) is about: the user, and the
    browser session, whose grants add to what the user may reach. A session's key is hashed: it
    opens the session."""
    parts = []
    if request.user.is_authenticated:
        parts.append(f"user:{request.user.pk}")
    carried = carried_grants(request)
    if carried is not None:
        # A viewer token's requests stand on what it carries, not on any browser session.
        parts.append(f"viewer:{carried.token_id}")
        return ":".join(parts)
    session_key = getattr(request, "session", None) and request.session.session_key
    if session_key:
        parts.append(f"session:{decisions.digest(session_key)}")
    return ":".join(parts) or "anonymous"


def search_decision_key(
    request: HttpRequest, kind: str, *parts: object, principal: str | None = None
) -> str:
    """The key a remembered answer about everything the request may see (a search) is kept
    under: the principal, the session's grants (an SMS code entered, a guest link opened) and
    ``parts``, the exact question. A request asking ahead, before its token is authenticated,
    names the ``principal`` the token stood for last time."""
    question = decisions.digest(*parts, sorted(granted_study_ids(request)))
    return f"{kind}:{principal or decision_principal(request)}:{question}"


def get_study_for(request: HttpRequest, study_uid: str) -> tuple[Study, StudyAccess]:
    """The study and the caller's access to it, or 404: a study the caller may not see answers
    exactly like one that does not exist. The study's query is built once
    (``portal.prepared_queries``): every study a viewer, a download or a DICOMweb client opens
    starts here, the first frame of a new study among them."""
    found = prepared_models(_study_with_uid, [study_uid])
    study = found[0] if found else None
    access = study_access(request, study) if study is not None else None
    if study is None or access is None:
        raise Http404("No such study.")
    return study, access


def _study_with_uid(uids: list[str]) -> QuerySet[Study]:
    [uid] = uids
    studies = Study.objects.select_related("patient", "organization").filter(study_uid=uid)
    return studies.order_by("pk")[:1]


def may_upload_to(user: User, organization: Organization) -> bool:
    return has_perm(user, Perm.UPLOAD_STUDIES, organization)


def organizable_worklist_ids(user: User) -> set[int]:
    """The worklists in which the user may make, rename, nest and delete folders and file
    studies in them. Owners arrange their personal worklist as they like; a location's or a
    group's worklist takes the role's permission in the worklist's organization. Folders only
    arrange shortcuts: nobody gains or loses access to a study by them. Remembered
    (``portal.decisions``) until a worklist, membership or role changes."""
    ids = visible_worklist_ids(user)
    if not ids:
        return set()

    def read() -> tuple[frozenset[int], None]:
        organizing = set(organizations_with(user, Perm.ORGANIZE_FOLDERS))
        worklists = Worklist.objects.filter(pk__in=ids).values_list(
            "pk", "owner_id", "organization_id"
        )
        return frozenset(
            pk
            for pk, owner_id, organization_id in worklists
            if (owner_id == user.pk if owner_id is not None else organization_id in organizing)
        ), None

    return set(decisions.remember(f"organizable:{user.pk}", read))


def may_organize_folders(user: User, worklist: Worklist) -> bool:
    return worklist.pk in organizable_worklist_ids(user)
