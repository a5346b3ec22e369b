"""The DICOM JSON model (PS3.18 F.2) for answers built from the database rather than from a file.

A dataset is a JSON object keyed by the eight upper-case hex digits of each tag, in ascending tag
order; each attribute is an object with its ``vr`` and, unless empty, a ``Value`` array:

- PN values are objects with ``Alphabetic`` (and ``Ideographic``, ``Phonetic``) component groups;
- DA and TM are the DICOM strings (``20240601``, ``103000.5``);
- IS, DS and the binary numbers (US, UL...) are JSON numbers;
- SQ values are datasets;
- an empty attribute has no ``Value`` at all (F.2.5), never ``[]`` or ``[null]``.

Attribute identifiers in query strings (PS3.18 8.3.4.1) are keywords (``PatientName``) or tags
(``00100010``); :func:`parse_attribute_id` reads both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, time
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

JsonAttribute = dict[str, Any]
JsonDataset = dict[str, JsonAttribute]

_NUMERIC_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def tag_key(tag: int) -> str:
    """``0x0020000D`` -> ``"0020000D"``, the key of an attribute in a JSON dataset."""
    return f"{tag:08X}"


def parse_attribute_id(text: str) -> int | None:
    """The tag named by a keyword (``StudyDate``) or eight hex digits (``00080020``), or None
    when ``text`` is neither a keyword of the DICOM dictionary nor a tag."""
    if _TAG.fullmatch(text):
        return int(text, 16)
    return tag_for_keyword(text)


def keyword_of(tag: int) -> str:
    """The dictionary keyword of ``tag``, or its hex form for a tag the dictionary lacks."""
    return keyword_for_tag(tag) or tag_key(tag)


def vr_of(tag: int) -> str:
    return dictionary_VR(tag)


def person_name(value: str) -> dict[str, str] | None:
    """A PN value object from the DICOM string (``Family^Given=Ideographic=Phonetic``), or None
    for an empty name."""
    groups = {
        name: group
        for name, group in zip(_PN_GROUPS, (value or "").split("="), strict=False)
        if group.strip("^ ")
    }
    return groups or None


def da(value: date | None) -> str | None:
    return value.strftime("%Y%m%d") if value else None


def tm(value: time | None) -> str | None:
    if value is None:
        return None
    text = value.strftime("%H%M%S")
    return f"{text}.{value.microsecond:06d}".rstrip("0") if value.microsecond else text


def attribute(vr: str, *values: Any) -> JsonAttribute:
    """An attribute with ``values`` (None and empty strings dropped: an attribute holding only
    those is empty). PN values are DICOM strings or ready value objects; numbers for IS/DS."""
    kept = [value for value in values if value is not None and value != ""]
    if vr == "PN":
        kept = [v for v in (person_name(v) if isinstance(v, str) else v for v in kept) if v]
    elif vr in _NUMERIC_VRS:
        kept = [_number(vr, v) if isinstance(v, str) else v for v in kept]
    return {"vr": vr, "Value": kept} if kept else {"vr": vr}


def _number(vr: str, text: str) -> int | float:
    return float(text) if vr in {"DS", "FL", "FD"} else int(text)


def sequence(items: Iterable[Mapping[int, JsonAttribute]]) -> JsonAttribute:
    """An SQ attribute of the given items (each a mapping tag -> attribute)."""
    return attribute("SQ", *(dataset(item) for item in items))


def dataset(elements: Mapping[int, JsonAttribute]) -> JsonDataset:
    """A JSON dataset of ``{tag: attribute}``, keyed and ordered as PS3.18 F.2 writes it."""
    return {tag_key(tag): elements[tag] for tag in sorted(elements)}
