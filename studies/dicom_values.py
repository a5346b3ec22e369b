"""The values ingestion reads of a DICOM header, each decoded once.

pydicom converts an element when it is first asked for: it validates the value, builds its
classes (UID, IS, DSfloat, PersonName, MultiValue) through its hooks, and every later ask goes
through its keyword and tag machinery again. Reading a CT slice's header that way cost 5 ms on
a 2-core server, a third of storing the slice. Most of what ingestion reads is plain: a single
value of text in the default repertoire, or one 16-bit integer. :class:`HeaderValues` decodes
those straight from the bytes pydicom read, as pydicom would; anything else (another character
set, several values, a value of another VR than the dictionary's, a deferred or already
converted element) is asked of pydicom, so a header reads the same whichever path it took.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

# Text whose repertoire is fixed (PS3.5 6.2): never touched by the Specific Character Set.
_ASCII_VRS = frozenset({"UI", "CS", "DA", "TM", "IS", "DS"})
# Text in the Specific Character Set.
_CHARSET_VRS = frozenset({"LO", "SH", "PN"})
# The character sets whose text is one Python codec away (PS3.3 C.12.1.1.2); pydicom reads the
# default repertoire as ISO 8859-1, as it does no Specific Character Set at all.
_CODECS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_PLAIN_VRS = _ASCII_VRS | _CHARSET_VRS | {"US"}
_SPECIFIC_CHARACTER_SET = 0x00080005
_ESC = 0x1B
_MISSING = object()
_ABSENT = object()


class HeaderValues:
    """Read-only access to a header's elements by keyword, as ``Dataset.get`` and ``in`` give
    them, with text values as ``str`` (a UID, an IS or a DS as written, padding stripped) and a
    US as ``int``. Built once per file; every value is decoded at most once."""

    def __init__(self, ds: Dataset) -> None:
        self.dataset = ds
        self.file_meta = getattr(ds, "file_meta", None)
        # The elements as read, by tag: asked by tag here, without pydicom's keyword lookups.
        self._elements = dict(ds.items())
        self._values: dict[str, Any] = {}
        self._codec: str | None = _codec_of(ds)

    def __contains__(self, keyword: str) -> bool:
        plain = _plain_element(keyword)
        return keyword in self.dataset if plain is None else plain[0] in self._elements

    def get(self, keyword: str, default: Any = None) -> Any:
        value = self._values.get(keyword, _MISSING)
        if value is _MISSING:
            value = self._values[keyword] = self._read(keyword)
        return default if value is _ABSENT else value

    def json(self, keyword: str) -> dict[str, Any]:
        """The present element ``keyword`` as DICOM JSON, in ``Dataset.to_json_dict``'s form."""
        kind = (_plain_element(keyword) or (0, ""))[1]
        value = self.get(keyword)
        plain = (kind == "US" and (value is None or isinstance(value, int))) or (
            kind in ("CS", "DS") and isinstance(value, str)
        )
        if not plain:
            return self.dataset[keyword].to_json_dict(None, 1024)
        if value in (None, ""):
            return {"vr": kind}
        return {"vr": kind, "Value": [float(value) if kind == "DS" else value]}

    def _read(self, keyword: str) -> Any:
        plain = _plain_element(keyword)
        if plain is not None:
            tag, kind = plain
            raw = self._elements.get(tag)
            if raw is None:
                return _ABSENT
            if isinstance(raw, RawDataElement):
                value = _decoded(raw, kind, self._codec)
                if value is not _MISSING:
                    return value
        return self.dataset.get(keyword, _ABSENT)


@functools.cache
def _plain_element(keyword: str) -> tuple[BaseTag, str] | None:
    """The tag and VR of the element ``keyword`` names, when its VR is one decoded here."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    kind = dictionary_VR(tag)
    return (BaseTag(tag), kind) if kind in _PLAIN_VRS else None


def _codec_of(ds: Dataset) -> str | None:
    """The codec for the header's LO, SH and PN text; None when pydicom must decode it."""
    element = ds.get_item(_SPECIFIC_CHARACTER_SET)
    if element is None:
        return _CODECS[""]
    if isinstance(element, RawDataElement):
        if element.value is None:
            return None
        name: object = element.value.decode("latin-1")
    else:
        name = element.value  # pydicom converts it while reading, to decode the rest
    if not isinstance(name, str) or "\\" in name:
        return None
    return _CODECS.get(name.strip(" \x00"))


def _decoded(raw: RawDataElement, kind: str, codec: str | None) -> Any:
    """The value pydicom would give ``raw``, when it is plain; _MISSING when it is not."""
    if (raw.VR is not None and kind != raw.VR) or raw.value is None:  # None: deferred
        return _MISSING
    if kind == "US":
        return _unsigned_short(raw.value, little_endian=raw.is_little_endian)
    if kind in _ASCII_VRS:
        codec = "latin-1"
    elif kind not in _CHARSET_VRS or codec is None:
        return _MISSING
    data = raw.value
    if b"\\" in data or _ESC in data:
        return _MISSING  # several values, or code extensions: pydicom's work
    try:
        text = data.decode(codec).rstrip("\x00 ")
    except UnicodeDecodeError:
        return _MISSING  # pydicom decides what a malformed value reads as
    if kind == "PN" and "=" in text:
        return _MISSING  # ideographic and phonetic groups: pydicom's PersonName joins them
    if kind == "IS" and text and not text.strip().lstrip("+-").isdigit():
        return _MISSING  # "2.0" is an integer to pydicom
    if kind == "DS" and text and not _finite(text):
        return _MISSING
    return text


def _unsigned_short(data: bytes, *, little_endian: bool) -> Any:
    if len(data) == 0:
        return None
    if len(data) != 2:
        return _MISSING  # several values
    return int.from_bytes(data, "little" if little_endian else "big")


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
