"""What serving a stored instance's frames needs of it, remembered for every viewer.

A viewer asks for each frame of a series in its own request. Whether the viewer may see the
study is decided for them (``dicomweb.scope``); which file each instance is, its hash, its frame
count and how to render it are the same for everybody and never change once stored (files are
stored by content, and an instance's row is not rewritten). So these facts are remembered once,
under the instance's UIDs, with the shared scope of stored objects (``decisions.STORED``), which
only a deletion moves on: a study arriving, a share made or an access ended leave them standing.

They are remembered as an instance is stored (the viewer opening a study that has just arrived
finds them), and otherwise by the first frame asked of a series, for its instances around it.
Nothing here says who may see an instance: a caller asks the access authority first and reads
the facts only of a study it reaches.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from django.utils import timezone

from portal import decisions
from studies.models import Instance, content_version


class FrameSource(NamedTuple):
    """An instance's facts as plain values: pickling tuples rather than models (with their
    series) halves the time a viewer's first frame of a series takes."""

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

    @classmethod
    def of(cls, instance: Instance) -> FrameSource:
        return cls(
            pk=instance.pk,
            sop_instance_uid=instance.sop_instance_uid,
            file=instance.file,
            sha256=instance.sha256,
            frames=instance.frames,
            has_pixels=instance.has_pixels,
            transfer_syntax=instance.transfer_syntax,
            plain_image=instance.plain_image,
        )


# The most instances of a series remembered with the one asked for: a viewer walks on from it.
SERIES_NEIGHBOURS = 500


def frame_source_key(study_uid: str, series_uid: str, instance_uid: str) -> str:
    """The key an instance's facts are remembered under, by the UIDs a request names it by: an
    instance asked for under another study or series finds nothing."""
    return f"frame-source:{decisions.digest(study_uid, series_uid, instance_uid)}"


def frame_source(study_uid: str, series_uid: str, instance_uid: str) -> FrameSource | None:
    """The stored instance at these UIDs, or None. Read with the instances around it in its
    series (up to ``SERIES_NEIGHBOURS``), which the viewer asks for next; an instance not found
    is not remembered (it may arrive any moment, which moves no generation on)."""

    def key(uid: str) -> str:
        return frame_source_key(study_uid, series_uid, uid)

    def read() -> tuple[dict[str, FrameSource | None], datetime | None]:
        instances = (
            Instance.objects.filter(
                series__study__study_uid=study_uid, series__series_uid=series_uid
            )
            .exclude(file="")
            .order_by("number", "id")
        )
        if not decisions.enabled():  # nothing is remembered: read the one asked for
            instances = instances.filter(sop_instance_uid=instance_uid)
        series = [FrameSource(*values) for values in instances.values_list(*FrameSource._fields)]
        position = next(
            (n for n, source in enumerate(series) if source.sop_instance_uid == instance_uid),
            None,
        )
        if position is None:
            return {key(instance_uid): None}, timezone.now()
        start = max(0, min(position - SERIES_NEIGHBOURS // 2, len(series) - SERIES_NEIGHBOURS))
        return {
            key(source.sop_instance_uid): source
            for source in series[start : start + SERIES_NEIGHBOURS]
        }, None

    # A viewer asks for a series' first frames at once: one of them reads the series.
    return decisions.remember_with_neighbours(
        key(instance_uid),
        read,
        together=f"frame-sources:{decisions.digest(study_uid, series_uid)}",
        scope=decisions.STORED,
    )


def remember_when_stored(stored: Iterable[tuple[str, str, Instance]]) -> None:
    """Remember the facts of instances being stored in the current transaction, given as
    (study UID, series UID, instance) once each has its key, for when it commits: the viewer
    opening a study as soon as it arrives finds them."""
    decisions.remember_when_committed(
        {
            frame_source_key(study_uid, series_uid, instance.sop_instance_uid): FrameSource.of(
                instance
            )
            for study_uid, series_uid, instance in stored
        },
        scope=decisions.STORED,
    )
