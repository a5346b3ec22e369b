"""Guest-link grants as a source of study access (``studies.access.register_grant_source``).

Passing a link's gates (``guestlinks.services.opening.open_link``) stores a grant in the
recipient's session: the link's id, the ids of the studies it opened (fixed at that moment) and
when. A grant admits those studies at REPORT_READ, never anonymized, never re-shareable, while
its link is still good for browsing:

- a revoked, deleted, expired or locked link ends every grant it made, at the next request;
- a link that has run out of uses does not end the grants already made (a use is one opening,
  not one image);
- a grant also ends ``SESSION_COOKIE_AGE`` after it was made, as any session does.

Every request that asks costs one query for the session's links, whatever the number of grants
or studies asked about (the answer is kept on the request).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from guestlinks.models import GuestLink
from guestlinks.services.state import link_status
from studies.access import (
    StudyAccess,
    register_grant_source,
    register_granted_studies,
    register_session_grants,
    stored_grants,
)
from studies.models import AccessLevel, Study

# The session key of the grants: a list, since one browser may have opened several links.
GRANTS_SESSION_KEY = "guestlinks_grants"
# Link states in which grants already made still admit their studies.
BROWSABLE_STATES = frozenset({"active", "used_up"})
_MEMO_ATTRIBUTE = "_guestlink_grants"


@dataclass(frozen=True)
class LiveGrant:
    """A grant held in this session whose link still allows browsing."""

    link: GuestLink
    study_ids: frozenset[int]
    at: datetime


def register() -> None:
    """Called from GuestLinksConfig.ready()."""
    register_grant_source(grant_access)
    register_granted_studies(granted_study_ids)
    register_session_grants(GRANTS_SESSION_KEY)


def grant_max_age() -> timedelta:
    return timedelta(seconds=settings.SESSION_COOKIE_AGE)


def _session_grants(request: HttpRequest) -> list[tuple[int, frozenset[int], datetime]]:
    """The grants as stored (in the session, or carried by a viewer token), parsed; anything
    malformed is ignored (never trusted, never an error page)."""
    parsed = []
    for raw in stored_grants(request, GRANTS_SESSION_KEY):
        try:
            link_id = int(raw["link"])
            study_ids = frozenset(int(pk) for pk in raw["studies"])
            at = datetime.fromisoformat(raw["at"])
        except (KeyError, TypeError, ValueError):
            continue
        parsed.append((link_id, study_ids, at))
    return parsed


def live_grants(request: HttpRequest) -> list[LiveGrant]:
    """The session's grants that still admit their studies, newest first (one query)."""
    stored = _session_grants(request)
    signature = tuple((link_id, at) for link_id, _ids, at in stored)
    memo = getattr(request, _MEMO_ATTRIBUTE, None)
    if memo is not None and memo[0] == signature:
        remembered: list[LiveGrant] = memo[1]  # as set below
        return remembered
    grants: list[LiveGrant] = []
    if stored:
        now = timezone.now()
        links = GuestLink.objects.select_related("organization", "created_by").in_bulk(
            {link_id for link_id, _ids, _at in stored}
        )
        for link_id, study_ids, at in stored:
            link = links.get(link_id)
            if link is None or now - at > grant_max_age():
                continue
            if link_status(link, now=now).state in BROWSABLE_STATES:
                grants.append(LiveGrant(link=link, study_ids=study_ids, at=at))
        grants.sort(key=lambda grant: grant.at, reverse=True)
    setattr(request, _MEMO_ATTRIBUTE, (signature, grants))
    return grants


def forget_memo(request: HttpRequest) -> None:
    """Drop what this request has already read (after a grant is added to the session)."""
    if hasattr(request, _MEMO_ATTRIBUTE):
        delattr(request, _MEMO_ATTRIBUTE)


def grant_for_link(request: HttpRequest, link_id: int) -> LiveGrant | None:
    """The session's live grant made by this link, if any."""
    return next((grant for grant in live_grants(request) if grant.link.pk == link_id), None)


def granted_study_ids(request: HttpRequest) -> set[int]:
    """Every study the session's live grants admit (for listing priors to a guest)."""
    ids: set[int] = set()
    for grant in live_grants(request):
        ids |= grant.study_ids
    return ids


def grant_access(request: HttpRequest, study: Study) -> StudyAccess | None:
    """The access a session-held guest-link grant gives to ``study``, or None."""
    granting = [grant for grant in live_grants(request) if study.pk in grant.study_ids]
    if not granting:
        return None
    # Of several grants, the one that lasts longest (no expiry first).
    expiries = [grant.link.expires_at for grant in granting if grant.link.expires_at is not None]
    until = max(expiries) if len(expiries) == len(granting) else None
    return StudyAccess(
        level=AccessLevel.REPORT_READ,
        anonymized=False,
        can_share=False,
        until=until,
        via="guest_link",
    )
