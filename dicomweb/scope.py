"""Which studies a DICOMweb request reaches, always through :mod:`studies.access`.

``studies_for`` is the query every QIDO search starts from: the studies the logged-in user may
find (organization roles and worklist entries) and those the session's grants admit (a guest
link, a share's verified SMS code). ``study_for`` / ``accesses_for`` ask the authority for the
access to each study, which decides what is served: nothing when it is None (a study behind an
SMS code not entered in this session answers 404 like an unknown one), the pseudonymized dataset
when it is anonymized, and no report or other object without pixel data when it is images-only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from dicomweb.http import not_found
from portal import decisions
from studies.access import (
    StudyAccess,
    carried_grants,
    decision_principal,
    get_study_for,
    granted_study_ids,
    studies_access,
    visible_studies,
)
from studies.frame_sources import FrameSource, frame_source, frame_source_key
from studies.models import Instance, Series, Study


def studies_for(request: HttpRequest) -> QuerySet[Study]:
    """Every study the request may find; narrow it, never widen it. A viewer token's request
    finds at most the studies it was made for."""
    visible = visible_studies(request.user)
    granted = granted_study_ids(request)
    if granted:
        visible = visible | Study.objects.filter(pk__in=granted)
    carried = carried_grants(request)
    if carried is not None:
        visible = visible.filter(pk__in=carried.study_ids)
    return visible


def accesses_for(request: HttpRequest, studies: Iterable[Study]) -> dict[int, StudyAccess | None]:
    """The request's access to each study (by primary key), read once for all of them."""
    return studies_access(request, studies)


def study_for(request: HttpRequest, study_uid: str) -> tuple[Study, StudyAccess]:
    """The study and the caller's access, or a DICOMweb 404."""
    try:
        return get_study_for(request, study_uid)
    except Http404:
        raise not_found("No such study.") from None


def instances_for(
    study: Study | int,
    access: StudyAccess,
    *,
    series_uid: str | None = None,
    instance_uid: str | None = None,
) -> QuerySet[Instance]:
    """The study's (a study or its key) stored instances this access may receive, in series and
    instance order. Images-only access (no report) leaves out every object without pixel data:
    a structured report or an encapsulated PDF is a report."""
    instances = (
        Instance.objects.filter(series__study=study)
        .exclude(file="")
        .select_related("series")
        .order_by("series__number", "series__id", "number", "id")
    )
    if not access.can_read_report:
        instances = instances.filter(has_pixels=True)
    if series_uid is not None:
        instances = instances.filter(series__series_uid=series_uid)
    if instance_uid is not None:
        instances = instances.filter(sop_instance_uid=instance_uid)
    return instances


def series_for(study: Study, access: StudyAccess, series_uid: str) -> Series:
    """One series of the study that this access reaches something of, or a DICOMweb 404."""
    series = Series.objects.filter(study=study, series_uid=series_uid).first()
    if series is None or not instances_for(study, access, series_uid=series_uid).exists():
        raise not_found("No such series.")
    return series


class InstanceTarget(NamedTuple):
    """One instance the caller reaches, in the series the request named, and the access it
    reaches it with: what serving its frames needs. The study is named by its key only: a
    remembered target holds no patient data."""

    study_pk: int
    access: StudyAccess
    instance: FrameSource
    series_uid: str


def instance_target(
    request: HttpRequest, study_uid: str, series_uid: str, instance_uid: str
) -> InstanceTarget:
    """The instance at these UIDs that the caller's access reaches, or a DICOMweb 404.

    A viewer asks for every frame of a series one request at a time, so both halves of the
    answer are remembered (``portal.decisions``): the caller's access to the study, asked of the
    authority once for the whole viewing, and the instance's stored facts, the same for every
    viewer (``studies.frame_sources``, remembered as it is stored). The frames that follow cost
    no SQL. The access holds until anything it rests on changes (a share removed, a link
    revoked) or it ends. A refusal is not remembered."""
    reached = _study_reached(request, study_uid)
    if isinstance(reached, str):
        raise not_found(reached)
    study_pk, access = reached
    source = frame_source(study_uid, series_uid, instance_uid)
    # Images-only access (no report) reaches no object without pixel data (``instances_for``).
    if source is None or not (source.has_pixels or access.can_read_report):
        raise not_found(_("No such instance."))
    return InstanceTarget(study_pk=study_pk, access=access, instance=source, series_uid=series_uid)


def study_decision_key(principal: str, study_uid: str) -> str:
    """The key whether ``principal`` reaches the study at this UID is remembered under."""
    return f"study:{principal}:{decisions.digest(study_uid)}"


def instance_decision_ahead(
    principal: str, request: HttpRequest, kwargs: dict[str, object]
) -> list[str]:
    """What an instance-level request (its frames, rendered, thumbnail) asks for, by its view's
    arguments: the access to the study and the instance's facts; nothing for a study or series
    level one."""
    study_uid, series_uid, uid = (
        kwargs.get("study_uid"),
        kwargs.get("series_uid"),
        kwargs.get("instance_uid"),
    )
    if isinstance(study_uid, str) and isinstance(series_uid, str) and isinstance(uid, str):
        return [
            study_decision_key(principal, study_uid),
            frame_source_key(study_uid, series_uid, uid),
        ]
    return []


def _study_reached(request: HttpRequest, study_uid: str) -> tuple[int, StudyAccess] | str:
    """The study's key and the caller's access to it, remembered for the principal; or why
    not, in words for a 404."""

    def decide() -> tuple[tuple[int, StudyAccess] | str, datetime | None]:
        try:
            study, access = get_study_for(request, study_uid)
        except Http404:
            return _("No such study."), timezone.now()
        return (study.pk, access), access.until

    key = study_decision_key(decision_principal(request), study_uid)
    # A viewer asks for a study's first frames at once: one of them asks the authority.
    return decisions.remember(key, decide, together=key)
