"""Viewer tokens (``viewers.models.ViewerToken``): made, checked at each request, ended.

- **Made** (:func:`open_in_viewer`) from a portal request (a browser session) for studies its
  principal may open now, as the portal's own viewer would open them: a user's, a share
  recipient's, or a guest's after a link's gates. Opening studies in the viewer is recorded as
  viewing them: one event per study, as the portal's viewer records.
- **Checked** (:func:`authenticate`) at every DICOMweb request that sends it: the token must be
  known and live, and the principal must still reach one of its studies through
  ``studies.access``. The request then stands on what the token carries
  (``studies.access.CarriedGrants``): the user, or the session's grants for a guest, and never
  more than the token's studies. Removing a share, revoking or deleting a link ends the token at
  the next request; so does logging out of the session it was made in.
- **Refreshed** (:func:`refresh_viewer_token`): the viewer's page asks for a new token with the
  old one and the portal session's cookie, before the old one ends, while that session lives.
- **Ended**: expired tokens are deleted by the hourly ``viewers.delete_expired_tokens`` task.

The secret starts with ``vt_`` so that DICOMweb tells it from an API token without a lookup;
the REST API knows only API tokens and refuses it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.models import Action
from audit.services import record
from portal import decisions
from portal.digests import candidate_digests, secret_digest
from studies.access import (
    CarriedGrants,
    StudyAccess,
    carried_grants,
    carry_grants,
    session_grants,
    studies_access,
)
from studies.models import Study
from viewers.models import ViewerToken

VIEWER_TOKEN_PREFIX = "vt_"  # noqa: S105 - what tells the secret apart, not a secret
# The HMAC purpose labels of a token and of the session it was made in, not secrets.
TOKEN_PURPOSE = "viewer-token"  # noqa: S105
SESSION_PURPOSE = "viewer-session"
# The most studies one token opens: a study and its priors.
MAX_STUDIES = 20


class ViewerRefused(Exception):
    """The studies cannot be opened in the viewer; the message says why, for the user."""


@dataclass(frozen=True)
class OpenedViewer:
    secret: str
    expires_at: datetime
    study_uids: list[str]


def open_in_viewer(
    *, request: HttpRequest, study_uids: Sequence[str], with_priors: bool = False
) -> OpenedViewer:
    """A new viewer token for these studies (by UID), which the request's principal must all
    be able to open now; ViewerRefused otherwise. A study the principal may not open is refused
    like one that does not exist. ``with_priors``: the token also reaches the same patients'
    other studies that the principal may open now (a guest link's only if it includes them), so
    the viewer can offer them for comparison; they are not recorded as viewed."""
    studies, accesses = _openable(request, study_uids)
    priors = _priors(request, studies) if with_priors else []
    with transaction.atomic(durable=True):
        secret, expires_at = _new_token(
            request, [study.pk for study in [*studies, *priors]], accesses.values()
        )
        for study in studies:
            access = accesses[study.pk]
            record(
                action=Action.STUDY_VIEWED,
                request=request,
                study=study,
                details={"viewer": "ohif", "via": access.via, "anonymized": access.anonymized},
            )
    return OpenedViewer(
        secret=secret, expires_at=expires_at, study_uids=[study.study_uid for study in studies]
    )


def refresh_viewer_token(*, request: HttpRequest, secret: str) -> OpenedViewer:
    """A new token in place of a live one, asked by the viewer with the portal session it was
    made in (its cookie): the viewer keeps reading while that session lives, 15 minutes at a
    time. The same principal, the studies of the old token it may still open, the session's
    grants as they are now; the old token ends. ViewerRefused when the token is not live, was
    made in another session or for another user, or reaches nothing any more."""
    token = _live_token(candidate_digests(secret, purpose=TOKEN_PURPOSE))[0]
    session = getattr(request, "session", None)
    session_key = session.session_key if session is not None else None
    refused = ViewerRefused(_("Open the study from the portal again."))
    if token is None or not session_key:
        raise refused
    if token.session_digest != secret_digest(session_key, purpose=SESSION_PURPOSE):
        raise refused
    user_id = request.user.pk if request.user.is_authenticated else None
    if token.user_id != user_id:
        raise refused
    studies = list(Study.objects.filter(pk__in=token.study_ids))
    accesses = {pk: a for pk, a in studies_access(request, studies).items() if a is not None}
    if not accesses:
        raise refused
    with transaction.atomic(durable=True):
        fresh, expires_at = _new_token(request, list(accesses), accesses.values())
        token.delete()
    return OpenedViewer(
        secret=fresh,
        expires_at=expires_at,
        study_uids=[study.study_uid for study in studies if study.pk in accesses],
    )


def _new_token(
    request: HttpRequest, study_ids: Sequence[int], accesses: Iterable[StudyAccess]
) -> tuple[str, datetime]:
    """Store a token for the request's principal (its user, or nobody but the session's grants,
    which it carries) and session, reaching ``study_ids``; it ends after
    ``VIEWER_TOKEN_SECONDS``, and before any of ``accesses`` ends. Its secret and end."""
    expires_at = timezone.now() + timedelta(seconds=settings.VIEWER_TOKEN_SECONDS)
    for access in accesses:
        if access.until is not None:
            expires_at = min(expires_at, access.until)
    session_key = request.session.session_key
    if session_key is None:
        # Both callers refuse a request without one first: the token ends with its session.
        raise ViewerRefused(_("Open the study from the portal first."))
    secret = VIEWER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    ViewerToken.objects.create(
        digest=secret_digest(secret, purpose=TOKEN_PURPOSE),
        user=request.user if request.user.is_authenticated else None,
        session_digest=secret_digest(session_key, purpose=SESSION_PURPOSE),
        study_ids=sorted(study_ids),
        grants=session_grants(request),
        expires_at=expires_at,
    )
    return secret, expires_at


def studies_to_open(*, request: HttpRequest, study_uids: Sequence[str]) -> list[Study]:
    """The studies, in the order asked, if the request's principal may open them all in the
    viewer now (what the confirmation lists); ViewerRefused otherwise."""
    return _openable(request, study_uids)[0]


def _priors(request: HttpRequest, studies: list[Study]) -> list[Study]:
    """The same patients' other studies the request's principal may open, newest first, as
    many as fit in one token."""
    room = MAX_STUDIES - len(studies)
    candidates = list(
        Study.objects.filter(patient__in={study.patient_id for study in studies})
        .exclude(pk__in=[study.pk for study in studies])
        .order_by("-study_date", "-pk")[: 4 * MAX_STUDIES]
    )
    accesses = studies_access(request, candidates)
    return [study for study in candidates if accesses[study.pk] is not None][:room]


def _openable(
    request: HttpRequest, study_uids: Sequence[str]
) -> tuple[list[Study], dict[int, StudyAccess]]:
    wanted = list(dict.fromkeys(study_uids))
    if not wanted:
        raise ViewerRefused(_("Choose a study to open."))
    if len(wanted) > MAX_STUDIES:
        raise ViewerRefused(
            _("The viewer opens at most %(count)d studies at a time.") % {"count": MAX_STUDIES}
        )
    session = getattr(request, "session", None)
    if session is None or not session.session_key:
        # Nothing to end it with: only a signed-in user or a guest past the gates has one.
        raise ViewerRefused(_("Open the study from the portal first."))
    found = Study.objects.select_related("patient", "organization").in_bulk(
        wanted, field_name="study_uid"
    )
    studies = [found[uid] for uid in wanted if uid in found]
    accesses = {pk: a for pk, a in studies_access(request, studies).items() if a is not None}
    if len(studies) != len(wanted) or any(study.pk not in accesses for study in studies):
        raise ViewerRefused(_("No such study."))
    return studies, accesses


def ohif_available() -> bool:
    """Whether OHIF is configured (``OHIF_URL``) and installed (``manage.py install_ohif``):
    the portal shows its entry points only then."""
    return bool(settings.OHIF_URL) and (Path(settings.OHIF_DIR) / "index.html").is_file()


def is_viewer_token(secret: str) -> bool:
    return secret.startswith(VIEWER_TOKEN_PREFIX)


def token_decision_key(secret: str) -> str:
    """The key the token's verdict is remembered under (``portal.decisions``), for a request that
    asks the cache for it ahead of authenticating (``decisions.prefetch``)."""
    return _decision_key(secret_digest(secret, purpose=TOKEN_PURPOSE))


def own_decision_keys(request: HttpRequest) -> list[str]:
    """The keys of the decisions authenticating the request's viewer token asked for, besides
    its verdict (whether its principal still reaches its studies)."""
    carried = carried_grants(request)
    return [_reach_key(carried.token_id)] if carried is not None else []


def _decision_key(digest: str) -> str:
    return f"viewer-token:{decisions.digest(digest)}"


def _reach_key(token_id: int) -> str:
    return f"viewer-reach:{token_id}"


def authenticate(request: HttpRequest, secret: str) -> bool:
    """Make ``request`` one of the token's (see the module docstring); False, touching nothing,
    for a token that is unknown, expired, or whose principal reaches none of its studies now."""
    digests = candidate_digests(secret, purpose=TOKEN_PURPOSE)
    token = decisions.remember(_decision_key(digests[0]), lambda: _live_token(digests))
    if token is None:
        return False
    user = token.user if token.user is not None else AnonymousUser()
    carried = CarriedGrants(
        token_id=token.pk,
        study_ids=frozenset(int(pk) for pk in token.study_ids),
        grants=token.grants if isinstance(token.grants, dict) else {},
    )
    previous_user = request.user
    request.user = user
    carry_grants(request, carried)
    if not _still_reaches(request, carried):
        request.user = previous_user
        carry_grants(request, None)
        return False
    return True


def _live_token(digests: list[str]) -> tuple[ViewerToken | None, datetime | None]:
    # A refusal is not remembered (ends now): unknown tokens must not fill the cache.
    token = ViewerToken.objects.select_related("user").filter(digest__in=digests).first()
    now = timezone.now()
    if token is None or not token.is_live(now):
        return None, now
    if token.user is not None and not token.user.is_active:
        return None, now
    return token, token.expires_at


def _still_reaches(request: HttpRequest, carried: CarriedGrants) -> bool:
    """Whether the token's principal still reaches one of its studies: a token whose share was
    removed or whose link was revoked is refused as a token, not only study by study."""

    def decide() -> tuple[bool, datetime | None]:
        studies = Study.objects.filter(pk__in=carried.study_ids)
        reached = [access for access in studies_access(request, studies).values() if access]
        if not reached:
            return False, timezone.now()
        ends = [access.until for access in reached if access.until is not None]
        return True, (max(ends) if len(ends) == len(reached) else None)

    return decisions.remember(_reach_key(carried.token_id), decide)


def end_session_tokens(
    sender: object, request: HttpRequest | None = None, **kwargs: object
) -> None:
    """Logging out ends the viewer tokens made in that session (``user_logged_out``)."""
    session = getattr(request, "session", None)
    session_key = session.session_key if session is not None else None
    if session_key:
        ViewerToken.objects.filter(
            session_digest=secret_digest(session_key, purpose=SESSION_PURPOSE)
        ).delete()


def delete_expired_tokens(now: datetime | None = None) -> int:
    """Delete the tokens that have ended; how many."""
    deleted, _by_model = ViewerToken.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
