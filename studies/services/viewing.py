"""Opening a study: the audit event every view of a study owes, and the read state of the
shared entries it was reached through; and listing studies: the "Query" event every list of
studies owes (directory pages, the REST API, DICOMweb QIDO-RS)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.models import Action
from audit.services import record
from portal import decisions
from studies.access import StudyAccess, active_entries, visible_worklists
from studies.models import Study


@transaction.atomic(durable=True)
def record_study_view(
    *, request: HttpRequest, study: Study, access: StudyAccess, mark_opened: bool = True
) -> None:
    """A study was opened: audit it (STUDY_VIEWED) and, for the viewer, mark the user's shared
    entries of it as opened (their "Message" badge turns from unread to read)."""
    user = request.user if request.user.is_authenticated else None
    if mark_opened and user is not None:
        opened = (
            active_entries()
            .filter(
                study=study,
                worklist__in=visible_worklists(user),
                opened_at__isnull=True,
            )
            .update(opened_at=timezone.now())
        )
        if opened:
            # An update sends no post_save: the remembered directory pages showing these
            # entries' unread "Message" badges must go, as after a save.
            decisions.changed()
    record(
        action=Action.STUDY_VIEWED,
        request=request,
        study=study,
        details={"via": access.via, "anonymized": access.anonymized},
    )


def record_studies_listed(
    *, request: HttpRequest, via: str, keys: Iterable[str], rows: int, level: str = "studies"
) -> None:
    """A list of studies (or of their series or instances) was shown: audit it as a DICOM
    "Query", one event per request. The details name the criteria used and how many rows were
    shown, never the values searched for: a name typed into the search box is PHI."""
    record(
        action=Action.STUDIES_QUERIED,
        request=request,
        target_type="query",
        target_id=via,
        details={"via": via, "level": level, "keys": sorted(set(keys)), "rows": rows},
    )
