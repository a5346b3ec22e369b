"""The documents of a study: objects without pixel data (structured reports, encapsulated PDFs,
presentation states...) shown as what they are, not as images with a frame that cannot render.

A structured report is a report: only callers whose access reads the report see documents (an
anonymized or images-only access never does; ``StudyAccess.can_read_report`` decides). The SR
content tree is turned into indented lines of "concept: value", which is what a clinician reads
in any PACS's SR view.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pydicom
from django.core.files.storage import storages
from django.utils.translation import gettext as _
from pydicom import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from studies.models import Instance, Study

logger = logging.getLogger(__name__)

# The deepest SR nesting shown; real reports stay far below it, a malicious file cannot recurse.
_MAX_DEPTH = 12
_MAX_LINES = 2000


@dataclass(frozen=True)
class DocumentLine:
    depth: int
    concept: str
    value: str


@dataclass
class Document:
    instance: Instance
    title: str
    kind: str  # "sr" or "other"
    lines: list[DocumentLine] = field(default_factory=list)
    unreadable: bool = False


def study_documents(study: Study) -> list[Document]:
    """The study's stored objects without pixel data, in series and instance order."""
    instances = (
        Instance.objects.filter(series__study=study, has_pixels=False)
        .exclude(file="")
        .select_related("series")
        .order_by("series__number", "series__id", "number", "id")
    )
    return [_document(instance) for instance in instances]


def _document(instance: Instance) -> Document:
    kind_name = _sop_class_name(instance.sop_class_uid)
    if instance.series.modality != "SR" and "SR" not in kind_name:
        return Document(instance=instance, title=kind_name, kind="other")
    try:
        with storages["dicom"].open(instance.file, "rb") as stored:
            ds = pydicom.dcmread(stored)
    except (OSError, InvalidDicomError, ValueError) as error:
        logger.warning("Structured report instance id %s unreadable: %s", instance.pk, error)
        return Document(instance=instance, title=kind_name, kind="sr", unreadable=True)
    title = _concept(ds) or kind_name
    lines: list[DocumentLine] = []
    _walk(ds.get("ContentSequence") or [], 0, lines)
    return Document(instance=instance, title=title, kind="sr", lines=lines)


def _sop_class_name(uid: str) -> str:
    name = UID(uid).name if uid else ""
    return name if name and name != uid else _("Document")


def _concept(item: Dataset) -> str:
    names = item.get("ConceptNameCodeSequence") or []
    return str(names[0].get("CodeMeaning", "")).strip() if names else ""


def _first_meaning(sequence) -> str:
    return str(sequence[0].get("CodeMeaning", "")).strip() if sequence else ""


def _value(item: Dataset) -> str:
    value_type = str(item.get("ValueType", "")).upper()
    if value_type == "TEXT":
        return str(item.get("TextValue", "")).strip()
    if value_type == "CODE":
        return _first_meaning(item.get("ConceptCodeSequence"))
    if value_type == "NUM":
        measured = item.get("MeasuredValueSequence") or []
        if not measured:
            return ""
        number = str(measured[0].get("NumericValue", "")).strip()
        units = measured[0].get("MeasurementUnitsCodeSequence") or []
        unit = str(units[0].get("CodeValue", "")).strip() if units else ""
        return f"{number} {unit}".strip()
    if value_type == "PNAME":
        return " ".join(str(item.get("PersonName", "")).replace("^", " ").split())
    if value_type in {"DATE", "TIME", "DATETIME", "UIDREF"}:
        keyword = {"DATE": "Date", "TIME": "Time", "DATETIME": "DateTime", "UIDREF": "UID"}
        return str(item.get(keyword[value_type], "")).strip()
    if value_type in {"IMAGE", "COMPOSITE", "WAVEFORM"}:
        return _("(reference to an image or object of this study)")
    return ""


def _walk(items, depth: int, lines: list[DocumentLine]) -> None:
    for item in items:
        if len(lines) >= _MAX_LINES or depth > _MAX_DEPTH:
            return
        concept, value = _concept(item), _value(item)
        if concept or value:
            lines.append(DocumentLine(depth=depth, concept=concept, value=value))
        _walk(item.get("ContentSequence") or [], depth + 1, lines)
