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
from typing import Any, NamedTuple

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
from studies.models import Instance, Series, Study, content_version


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


class FrameSource(NamedTuple):
    """What serving an instance's frames needs of it, as plain values: a viewer's first frame of
    a series remembers one for each of the series' instances, and reading them as values and
    pickling tuples rather than models (with their series) halves the time that frame takes."""

    pk: int
    sop_instance_uid: str
    file: str
    sha256: str
    frames: int
    has_pixels: bool
    transfer_syntax: str
    plain_image: dict[str, Any] | None

    @property
    def content_version(self) -> str:
        return content_version(self.sha256)


_FRAME_SOURCE_FIELDS = FrameSource._fields


class InstanceTarget(NamedTuple):
    """One instance the caller reaches, in the series the request named, and the access it
    reaches it with: what serving its frames needs. The study is named by its key only: a
    remembered target holds no patient data."""

    study_pk: int
    access: StudyAccess
    instance: FrameSource
    series_uid: str


# The most instances of a series remembered with the one asked for: a viewer walks on from it.
SERIES_NEIGHBOURS = 500


def instance_target(
    request: HttpRequest, study_uid: str, series_uid: str, instance_uid: str
) -> InstanceTarget:
    """The instance at these UIDs that the caller's access reaches, or a DICOMweb 404.

    A viewer asks for every frame of a series one request at a time, so the decisions are
    remembered for the principal (``portal.decisions``): the access to the study, asked of the
    authority once for the whole viewing, and with the first instance of a series asked for,
    the others around it (up to ``SERIES_NEIGHBOURS``), so the frames that follow cost no SQL.
    They hold until anything they rest on changes (a share removed, a link revoked) or the
    access ends. A refusal is not remembered."""
    principal = decision_principal(request)

    def key(uid: str) -> str:
        return instance_decision_key(principal, study_uid, series_uid, uid)

    def decide() -> tuple[dict[str, InstanceTarget | str], datetime | None]:
        reached = _study_reached(request, study_uid)
        if isinstance(reached, str):
            return {key(instance_uid): reached}, timezone.now()
        study_pk, access = reached
        instances = instances_for(study_pk, access, series_uid=series_uid)
        if not decisions.enabled():  # nothing is remembered: read the one asked for
            instances = instances.filter(sop_instance_uid=instance_uid)
        series = [FrameSource(*values) for values in instances.values_list(*_FRAME_SOURCE_FIELDS)]
        position = next(
            (n for n, instance in enumerate(series) if instance.sop_instance_uid == instance_uid),
            None,
        )
        if position is None:
            return {key(instance_uid): _("No such instance.")}, timezone.now()
        start = max(0, min(position - SERIES_NEIGHBOURS // 2, len(series) - SERIES_NEIGHBOURS))
        targets: dict[str, InstanceTarget | str] = {
            key(instance.sop_instance_uid): InstanceTarget(
                study_pk=study_pk, access=access, instance=instance, series_uid=series_uid
            )
            for instance in series[start : start + SERIES_NEIGHBOURS]
        }
        return targets, access.until

    # A viewer asks for a series' first frames at once: one of them decides the whole series.
    together = f"instances:{principal}:{decisions.digest(study_uid, series_uid)}"
    target = decisions.remember_with_neighbours(key(instance_uid), decide, together=together)
    if isinstance(target, str):
        raise not_found(target)
    return target


def instance_decision_key(principal: str, study_uid: str, series_uid: str, uid: str) -> str:
    """The key whether ``principal`` reaches the instance at these UIDs is remembered under."""
    return f"instance:{principal}:{decisions.digest(study_uid, series_uid, uid)}"


def instance_decision_ahead(
    principal: str, request: HttpRequest, kwargs: dict[str, object]
) -> list[str]:
    """The decision an instance-level request (its frames, rendered, thumbnail) asks for, by
    its view's arguments; nothing for a study or series level one."""
    study_uid, series_uid, uid = (
        kwargs.get("study_uid"),
        kwargs.get("series_uid"),
        kwargs.get("instance_uid"),
    )
    if isinstance(study_uid, str) and isinstance(series_uid, str) and isinstance(uid, str):
        return [instance_decision_key(principal, study_uid, series_uid, uid)]
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

    return decisions.remember(
        f"study:{decision_principal(request)}:{decisions.digest(study_uid)}", decide
    )
