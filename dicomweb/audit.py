"""DICOMweb's audit events: one per query or retrieve request, never one per frame or part; and
frames, which viewers fetch one request each while scrolling, once per viewing session.

A query's keys may hold a patient's name; the trail keeps which keys were used and how many
studies answered, not their values.
"""

from __future__ import annotations

from django.http import HttpRequest

from audit.models import Action
from audit.services import record
from studies.access import StudyAccess
from studies.models import Study
from studies.services.rendered_images import note_render_session
from studies.services.viewing import record_studies_listed


def record_query(request: HttpRequest, *, level: str, keys: list[str], results: int) -> None:
    """A QIDO-RS search was answered (DICOM "Query"), like every other list of studies."""
    record_studies_listed(request=request, via="dicomweb", keys=keys, rows=results, level=level)


def record_retrieve(
    request: HttpRequest, *, study: Study, access: StudyAccess, resource: str, instances: int
) -> None:
    """Instances (or their metadata, frames or bulk data) of one study were retrieved with
    WADO-RS (DICOM "DICOM Instances Accessed")."""
    record(
        action=Action.INSTANCES_RETRIEVED,
        request=request,
        study=study,
        details={
            "resource": resource,
            "instances": instances,
            "anonymized": access.anonymized,
            "via": access.via,
        },
    )


def record_frames_retrieved(
    request: HttpRequest, *, study_pk: int, access: StudyAccess, series_uid: str, resource: str
) -> None:
    """Frames (or the pixel data's bulk data) of one study were retrieved. OHIF asks for each
    frame in its own request, so, like rendered frames, this is recorded once per principal and
    study per viewing session (``studies.services.rendered_images.note_render_session``)."""
    note_render_session(
        request,
        study_pk,
        access,
        series_uid=series_uid,
        action=Action.INSTANCES_RETRIEVED,
        details={"resource": resource},
    )
