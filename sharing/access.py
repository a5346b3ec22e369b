"""Shares that ask for an SMS code, as ``studies.access`` sees them.

A share with SMS two-factor makes entries with ``two_factor_required``; the authority's own rules
(``user_study_access``) never open them, because nothing there proves a code was given. Entering
the right code (``sharing.services.two_factor.verify_code``) stores a verification in the
browser session: the ShareRecipient's id, the user's id and when. This module turns it into
access, as a grant source of ``studies.access.register_grant_source``:

- only for the logged-in user who entered the code, in that session (a stolen password used in
  another browser still needs a code);
- only through that user's active entries (not removed, not expired) in the worklists they see,
  linked to the verified recipient, so removing or expiring the share ends access at once;
- never while the recipient ("bucket") is blocked, nor once the share is removed;
- with the entry's own terms (level, anonymization, further sharing, validity), still marked
  ``two_factor_required`` so that sharing further keeps asking for a code.

It also registers the challenge of ``studies.access.register_access_challenge``: the study page
of a study whose only way in is such an entry leads to the code page instead of a 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from sharing.models import ShareRecipient
from studies.access import (
    StudyAccess,
    active_entries,
    best_access,
    register_access_challenge,
    register_grant_source,
    register_session_grants,
    shared_entry_access,
    stored_grants,
    visible_worklists,
)
from studies.models import Entry, EntryOrigin, Study

# The session key of the verifications: a list, since one user may hold several such shares.
VERIFIED_SESSION_KEY = "sharing_verified"

_Links = ShareRecipient.entries.through


def register() -> None:
    """Called from SharingConfig.ready()."""
    register_grant_source(verified_share_access)
    register_access_challenge(code_page_for)
    register_session_grants(VERIFIED_SESSION_KEY)


def verification_max_age() -> timedelta:
    # As long as a session may live: a verification never outlives the login it was made in.
    return timedelta(seconds=settings.SESSION_COOKIE_AGE)


# --- The session's verifications ----------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    recipient_id: int
    user_id: int
    at: datetime


def _stored(request: HttpRequest) -> list[Verification]:
    """The verifications as stored; anything malformed is ignored (never trusted, never an
    error page)."""
    found = []
    for raw in stored_grants(request, VERIFIED_SESSION_KEY):
        try:
            found.append(
                Verification(
                    recipient_id=int(raw["recipient"]),
                    user_id=int(raw["user"]),
                    at=datetime.fromisoformat(raw["at"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return found


def verified_recipient_ids(request: HttpRequest) -> set[int]:
    """The share recipients whose code the request's user entered in this session (and not too
    long ago). Whether they still open anything is decided by the entries and the block."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_active:
        return set()
    oldest = timezone.now() - verification_max_age()
    return {v.recipient_id for v in _stored(request) if v.user_id == user.pk and v.at >= oldest}


def remember_verification(request: HttpRequest, recipient: ShareRecipient) -> None:
    """Store that the request's user entered the right code for ``recipient``. Into a new
    session key, as Django's login does: the old one may have been seen before the code."""
    now = timezone.now()
    kept = [
        {"recipient": v.recipient_id, "user": v.user_id, "at": v.at.isoformat()}
        for v in _stored(request)
        if v.recipient_id != recipient.pk and v.user_id == request.user.pk
    ]
    request.session.cycle_key()
    kept.append({"recipient": recipient.pk, "user": request.user.pk, "at": now.isoformat()})
    request.session[VERIFIED_SESSION_KEY] = kept


# --- Entries and recipients ------------------------------------------------------------------


def two_factor_entries(user: User, study: Study | None = None) -> QuerySet[Entry]:
    """The user's active shared entries (of ``study``) that ask for an SMS code."""
    entries = active_entries().filter(
        origin=EntryOrigin.SHARE,
        two_factor_required=True,
        worklist__in=visible_worklists(user),
    )
    return entries if study is None else entries.filter(study=study)


def recipients_of(entries: QuerySet[Entry]) -> QuerySet[ShareRecipient]:
    """The share recipients that made these entries, of shares not removed."""
    return ShareRecipient.objects.filter(
        pk__in=_Links.objects.filter(entry__in=entries).values("sharerecipient_id"),
        share__removed_at__isnull=True,
    )


def verified_share_access(request: HttpRequest, study: Study) -> StudyAccess | None:
    """The access a share verified in this session gives to ``study``, or None. No query when
    the session holds no verification (most requests)."""
    verified = verified_recipient_ids(request)
    user = request.user
    # Only a logged-in user has verified shares.
    if not verified or not user.is_authenticated:
        return None
    opened_by_verified = _Links.objects.filter(
        sharerecipient_id__in=verified,
        sharerecipient__blocked_at__isnull=True,
        sharerecipient__share__removed_at__isnull=True,
    ).values("entry_id")
    entries = two_factor_entries(user, study).filter(pk__in=opened_by_verified)
    # The entries' own terms, two-factor kept, so that sharing further keeps asking for codes.
    return best_access(shared_entry_access(entry) for entry in entries)


def code_page_for(request: HttpRequest, study: Study) -> str | None:
    """The code page of a share that would open ``study`` for the request's user once its code
    is entered (or that says it is blocked), or None. A recipient that is not blocked comes
    first, then the newest share."""
    user = request.user
    if not user.is_authenticated:
        return None
    recipient = (
        recipients_of(two_factor_entries(user, study))
        .order_by(F("blocked_at").asc(nulls_first=True), "-share__created_at", "-pk")
        .first()
    )
    if recipient is None:
        return None
    next_url = reverse("studies:study", args=[study.study_uid])
    return f"{code_page_url(recipient)}?{urlencode({'next': next_url})}"


def code_page_url(recipient: ShareRecipient) -> str:
    return reverse("sharing:two_factor", args=[recipient.pk])
