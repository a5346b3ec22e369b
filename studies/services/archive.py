"""A study as a ZIP of its DICOM files, streamed: what the download exports.

File names are numbers only (``SERIESNUMBER/INSTANCENUMBER.dcm``) and the archive's name is a
digest of the study's UID, so no patient data travels in a name; an anonymized access exports
de-identified files.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from collections.abc import Iterator

import pydicom
from django.core.files.storage import storages

from studies.anonymize import deidentify_dataset
from studies.models import Instance, Study

logger = logging.getLogger(__name__)

_ZIP_CHUNK = 1024 * 1024
_ZIP64_LIMIT = zipfile.ZIP64_LIMIT


def archive_members(study: Study, *, images_only: bool) -> list[tuple[str, Instance]]:
    """``SERIESNUMBER/INSTANCENUMBER.dcm`` for each stored file, unique within the archive.
    Numbers only: file names never carry patient data. ``images_only`` (access without the
    report) leaves out objects without pixel data: a structured report is a report."""
    instances = (
        Instance.objects.filter(series__study=study)
        .exclude(file="")
        .select_related("series")
        .order_by("series__number", "series__id", "number", "id")
    )
    if images_only:
        instances = instances.filter(has_pixels=True)
    members: list[tuple[str, Instance]] = []
    used: set[str] = set()
    series_index: dict[int, int] = {}
    for instance in instances:
        series = instance.series
        series_index.setdefault(series.pk, len(series_index) + 1)
        folder = series.number if series.number is not None else series_index[series.pk]
        number = instance.number if instance.number is not None else len(members) + 1
        name = f"{folder}/{number}.dcm"
        suffix = 2
        while name in used:  # two series numbered alike, or repeated instance numbers
            name = f"{folder}/{number}-{suffix}.dcm"
            suffix += 1
        used.add(name)
        members.append((name, instance))
    return members


def archive_name(study: Study) -> str:
    digest = hashlib.sha256(study.study_uid.encode()).hexdigest()[:10]
    return f"study-{digest}.zip"


class _Sink:
    """A write-only buffer ZipFile writes into while the response streams it out."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Nothing to release: the response drains the chunks (ZipFile never closes a file it
        was given, yet its file type asks for the method)."""

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self.size = 0
        return data


def _instance_bytes(instance: Instance, study: Study, anonymized: bool) -> Iterator[bytes]:
    storage = storages["dicom"]
    with storage.open(instance.file, "rb") as stored:
        if not anonymized:
            while chunk := stored.read(_ZIP_CHUNK):
                yield chunk
            return
        ds = pydicom.dcmread(stored)
    deidentify_dataset(ds, study)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    yield buffer.getvalue()


def zip_stream(
    members: list[tuple[str, Instance]], study: Study, anonymized: bool
) -> Iterator[bytes]:
    sink = _Sink()
    try:
        # The sink cannot seek, so zipfile writes data descriptors: nothing is held back and
        # memory stays at about one file, whatever the study's size.
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, instance in members:
                big = instance.size * 1.1 > _ZIP64_LIMIT
                with zf.open(name, "w", force_zip64=big) as entry:
                    for chunk in _instance_bytes(instance, study, anonymized):
                        entry.write(chunk)
                        if sink.size >= _ZIP_CHUNK:
                            yield sink.drain()
                yield sink.drain()
        yield sink.drain()
    except Exception:
        # The response has started: the only honest signal left is a broken download, which
        # the browser reports; never finish a ZIP that silently lacks images.
        logger.exception("Download of study id %s failed while streaming", study.pk)
        raise
