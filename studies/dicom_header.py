"""Reading what ingestion needs from a DICOM file's header, and checking the file is whole.

Pure: no database, no storage. ``read_header`` raises :class:`FileRejected` with a reason the
uploader can act on; ``normalize_name`` is the one normalization of patient names for storage
and search alike.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import unicodedata
from dataclasses import dataclass, field
from datetime import date, time
from typing import IO

from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, MediaStorageDirectoryStorage

from studies.dicom_values import HeaderValues
from studies.rendering import PlainImage, frame_count

logger = logging.getLogger(__name__)

_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED_LENGTH = 0xFFFFFFFF

# Letters NFKD does not split into base letter + accent, folded so "Søren" finds "Soren".
_FOLD = str.maketrans(
    {
        "ø": "o",
        "Ø": "o",
        "ł": "l",
        "Ł": "l",
        "đ": "d",
        "Đ": "d",
        "æ": "ae",
        "Æ": "ae",
        "œ": "oe",
        "Œ": "oe",
        "\u0131": "i",
        "ð": "d",
        "þ": "th",
    }
)


class FileRejected(Exception):
    """A file is refused, with a code and a reason the uploader can act on."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


# --- Names ------------------------------------------------------------------------------------


def normalize_name(value: str) -> str:
    """Lower-case, accent-free, single-spaced text for accent- and case-insensitive search.

    "Müller^Zoë" -> "muller zoe". Accents are dropped only from Latin, Greek and Cyrillic letters:
    in Japanese kana the combining marks change the sound (た/だ), so they are kept; ideographic
    names pass through unchanged apart from width folding. Search queries must be normalized
    with this same function.
    """
    kept: list[str] = []
    base_is_alphabetic = False
    for char in unicodedata.normalize("NFKD", str(value or "")):
        if unicodedata.combining(char):
            if not base_is_alphabetic:
                kept.append(char)
            continue
        base_is_alphabetic = ord(char) < 0x0530
        kept.append(char)
    text = unicodedata.normalize("NFC", "".join(kept)).translate(_FOLD).casefold()
    text = text.replace("^", " ").replace("=", " ")
    return " ".join(text.split())


@dataclass(frozen=True)
class PersonName:
    raw: str
    family: str
    given: str
    search: str


def split_person_name(pn: object) -> PersonName:
    """Family and given names from a DICOM PN (alphabetic group, else ideographic)."""
    raw = str(pn or "").strip()
    groups = raw.split("=")
    family = given = ""
    for group in groups:
        parts = group.split("^")
        family, given = parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")
        if family or given:
            break
    ordered = normalize_name(f"{given} {family}")
    as_written = normalize_name(raw)
    search = ordered if ordered == as_written else f"{ordered} {as_written}".strip()
    return PersonName(raw=raw[:200], family=family[:100], given=given[:100], search=search[:200])


def readable_name(pn: object) -> str:
    """ "Given Family" for display (e.g. a referring physician), else the PN as written."""
    name = split_person_name(pn)
    return (" ".join(part for part in (name.given, name.family) if part) or name.raw)[:200]


# --- Reading the header -----------------------------------------------------------------------


@dataclass(frozen=True)
class DicomHeader:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    patient_id: str
    issuer: str
    name: PersonName
    birth_date: date | None
    sex: str
    study_date: date | None
    study_time: time | None
    description: str
    accession: str
    referring_physician: str
    institution: str
    modality: str
    series_number: int | None
    series_description: str
    body_part: str
    instance_number: int | None
    frames: int
    rows: int | None
    columns: int | None
    has_pixels: bool
    # How to render the image's frames without reading its header again (rendering.PlainImage,
    # as JSON); None when its frames need the header (compressed, colour, LUTs...).
    plain_image: dict | None = None


_REQUIRED_UIDS = (
    ("StudyInstanceUID", "Study Instance UID (0020,000D)"),
    ("SeriesInstanceUID", "Series Instance UID (0020,000E)"),
    ("SOPInstanceUID", "SOP Instance UID (0008,0018)"),
)


def _text(values: HeaderValues, keyword: str, limit: int) -> str:
    value = values.get(keyword)
    if value is None:
        return ""
    if not isinstance(value, str | bytes) and hasattr(value, "__iter__"):
        value = value[0] if len(value) else ""  # multi-valued: the first value
    return str(value).strip().replace("\x00", "")[:limit]


def _integer(values: HeaderValues, keyword: str) -> int | None:
    try:
        value = values.get(keyword)
        return int(str(value).strip()) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _parse_date(value: str) -> date | None:
    # "YYYYMMDD", and the ACR-NEMA "YYYY.MM.DD" still found in old archives.
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) != 8:
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _parse_time(value: str) -> time | None:
    # "HHMMSS.FFFFFF", "HHMM", "HH", and the legacy "HH:MM:SS".
    main = value.replace(":", "").split(".")[0].strip()
    if not main.isdigit() or len(main) not in (2, 4, 6):
        return None
    try:
        return time(int(main[:2]), int(main[2:4] or 0), int(main[4:6] or 0))
    except ValueError:
        return None


def _uid(values: HeaderValues, keyword: str) -> str:
    return str(values.get(keyword) or "").strip().rstrip("\x00").strip()


def _valid_uid(uid: str) -> bool:
    return 0 < len(uid) <= 64 and all(ch.isdigit() or ch == "." for ch in uid)


@dataclass
class _Scan:
    """What reading the header saw of the file's layout, element by element."""

    size: int
    pixel_at: tuple[int, int] | None = None  # (position, length) of the Pixel Data's value
    pixel_tag: int | None = None  # which of the pixel data elements it is
    overruns: list[int] = field(default_factory=list)  # tags whose value runs past the end
    last_end: int | None = None  # where the last element's value ends (None: undefined length)

    def stop_at_pixels(self, spool: IO[bytes], tag, length: int) -> bool:
        # Called for each top-level element with the file positioned at its value. pydicom
        # quietly stops at the end of a cut file, so check here that each value fits in it
        # and remember where the last one ends.
        if tag in _PIXEL_TAGS:
            self.pixel_at = (spool.tell(), length)
            self.pixel_tag = tag
            return True
        if length == _UNDEFINED_LENGTH:
            self.last_end = None
        else:
            self.last_end = spool.tell() + length
            if self.last_end > self.size:
                self.overruns.append(tag)
        return False


def read_header(spool: IO[bytes], size: int) -> DicomHeader:
    scan = _Scan(size=size)
    ds = _read_until_pixels(spool, scan)
    transfer_syntax, media_class = _file_meta(ds)
    values = HeaderValues(ds)
    _check_complete(spool, values, scan, transfer_syntax, media_class)
    plain = None
    if scan.pixel_at is not None and scan.pixel_tag is not None:
        # A deflated file's positions are not positions in the stored file: never plain.
        plain = PlainImage.of(
            values, pixel_tag=scan.pixel_tag, offset=scan.pixel_at[0], length=scan.pixel_at[1]
        )
    try:
        return _header_from(
            values,
            transfer_syntax,
            media_class,
            has_pixels=scan.pixel_at is not None,
            plain_image=None if plain is None else plain.as_json(),
        )
    except (ValueError, TypeError, KeyError, LookupError) as exc:
        # Undecodable character sets or malformed values in the attributes we need.
        raise FileRejected(
            "damaged",
            _(
                "The DICOM file's patient or study attributes cannot be decoded. Check the file "
                "with the imaging system that produced it."
            ),
        ) from exc


def _read_until_pixels(spool: IO[bytes], scan: _Scan) -> Dataset:
    spool.seek(0)
    try:
        # pydicom annotates read_partial's file as BinaryIO, yet reads it through read, seek
        # and tell alone (its ReadableBuffer), which a spooled file has.
        ds = read_partial(
            spool,  # type: ignore[arg-type]
            stop_when=lambda tag, _vr, length: scan.stop_at_pixels(spool, tag, length),
            defer_size="512 KB",
        )
    except InvalidDicomError as exc:
        raise FileRejected(
            "not_dicom",
            _(
                "This is not a DICOM file (it has no DICOM file header). Upload the image files "
                "exported from the imaging system."
            ),
        ) from exc
    except Exception as exc:
        # Whatever the parser trips over is a property of this file, not of the server: one
        # malformed file must never abort the rest of the upload.
        logger.info("DICOM header unreadable: %s", type(exc).__name__)
        raise FileRejected(
            "damaged",
            _(
                "The DICOM file is damaged or incomplete and cannot be read. Copy it again from "
                "its source."
            ),
        ) from exc
    return ds


def _file_meta(ds: Dataset) -> tuple[str, str]:
    """The file's transfer syntax and media storage class, refusing what is no image file."""
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(meta.get("TransferSyntaxUID", "") if meta is not None else "").strip()
    if meta is None or not transfer_syntax:
        raise FileRejected(
            "not_dicom",
            _(
                "This file has no DICOM Part-10 file header (no transfer syntax). Export it from "
                "the imaging system as a DICOM file."
            ),
        )
    media_class = str(meta.get("MediaStorageSOPClassUID", "")).strip()
    if media_class == MediaStorageDirectoryStorage:
        raise FileRejected(
            "dicomdir",
            _(
                "This is a DICOMDIR, the index of a disc, not an image. Upload the image files it "
                "lists (the rest of the folder)."
            ),
        )
    return transfer_syntax, media_class


def _check_complete(
    spool: IO[bytes], values: HeaderValues, scan: _Scan, transfer_syntax: str, media_class: str
) -> None:
    """Refuse a file cut short, or one that describes an image without its pixels."""
    # A deflated file is inflated in memory first (a cut one fails to inflate), so positions
    # in it are not positions in the spool.
    if transfer_syntax != DeflatedExplicitVRLittleEndian:
        # A value running past the end, or a few bytes left over that make no element (the
        # file was cut inside an element's header).
        leftover = scan.pixel_at is None and scan.last_end is not None and scan.last_end < scan.size
        if scan.overruns or leftover:
            raise _truncated()
        if scan.pixel_at is not None:
            fragments = _check_pixel_data_complete(spool, scan.size, *scan.pixel_at)
            _check_pixel_geometry(values, scan.pixel_at, fragments)
    if len(values.dataset) == 0:
        raise _truncated()  # nothing after the file header
    if scan.pixel_at is None and ("Rows" in values or _is_image_class(values, media_class)):
        # Cut exactly between two elements before the Pixel Data, or stripped of it: either
        # way there is nothing to show.
        raise FileRejected(
            "no_pixel_data",
            _(
                "The file describes an image but holds no image data (it may have been cut "
                "short). Copy or export it again from its source."
            ),
        )


def _impossible(reason: str) -> FileRejected:
    return FileRejected(
        "impossible_image",
        _(
            "The file's image description does not match its image data: %(reason)s. Export it "
            "again from the imaging system that produced it."
        )
        % {"reason": reason},
    )


def _check_pixel_geometry(values: HeaderValues, pixel_at: tuple[int, int], fragments: int) -> None:
    """Refuse a file whose header promises more pixels than it holds (65535 x 65535 pixels, or
    10,000 frames over a few bytes): stored, it would only fail in the viewer, or make the
    renderer allocate gigabytes for nothing."""
    rows, columns = _integer(values, "Rows"), _integer(values, "Columns")
    if not rows or not columns:
        raise _impossible(_("it declares no image size (Rows and Columns)"))
    frames = frame_count(values)
    _position, length = pixel_at
    if length == _UNDEFINED_LENGTH:
        # Compressed: every frame needs at least one fragment of its own.
        if frames > 1 and fragments < frames:
            raise _impossible(
                _("it declares %(frames)d frames but holds %(fragments)d compressed fragments")
                % {"frames": frames, "fragments": fragments}
            )
        return
    samples = _integer(values, "SamplesPerPixel") or 1
    if _text(values, "PhotometricInterpretation", 16).upper() == "YBR_FULL_422":
        samples = 2  # chroma shared by each pair of pixels: two values per pixel, not three
    bits = _integer(values, "BitsAllocated") or 8
    expected_bits = rows * columns * frames * samples * bits
    expected = (expected_bits + 7) // 8
    if length < expected:
        raise _impossible(
            _(
                "it declares %(frames)d frame(s) of %(rows)d x %(columns)d pixels "
                "(%(expected)s) but holds %(present)s"
            )
            % {
                "frames": frames,
                "rows": rows,
                "columns": columns,
                "expected": filesizeformat(expected),
                "present": filesizeformat(length),
            }
        )


def _is_image_class(values: HeaderValues, media_class: str) -> bool:
    sop_class = _uid(values, "SOPClassUID") or media_class
    return bool(sop_class) and "Image Storage" in UID(sop_class).name


def _truncated() -> FileRejected:
    return FileRejected(
        "truncated",
        _(
            "The file is incomplete: it ends before its image data does (an interrupted copy?). "
            "Copy it again from its source."
        ),
    )


def _check_pixel_data_complete(spool: IO[bytes], size: int, position: int, length: int) -> int:
    """Reject files cut short (an interrupted copy) before they are stored and fail to render.
    Returns the number of fragments of encapsulated (compressed) pixel data, after the basic
    offset table; 0 for native pixel data."""
    if length != _UNDEFINED_LENGTH:
        if position + length > size:
            raise _truncated()
        return 0
    # Encapsulated (compressed) pixel data: walk the fragment items to the sequence delimiter.
    # Encapsulated data is always little endian; only the 8-byte item headers are read.
    offset = position
    items = 0
    while True:
        spool.seek(offset)
        header = spool.read(8)
        if len(header) < 8:
            raise _truncated()
        group, element, item_length = struct.unpack("<HHI", header)
        tag = group << 16 | element
        if tag == _SEQUENCE_DELIMITER:
            return max(items - 1, 0)  # the first item is the basic offset table
        if tag != _ITEM or item_length == _UNDEFINED_LENGTH:
            raise FileRejected(
                "damaged",
                _(
                    "The file's compressed image data is malformed. Check the file with the "
                    "imaging system that produced it."
                ),
            )
        offset += 8 + item_length
        items += 1
        if offset > size:
            raise _truncated()


def _header_from(
    values: HeaderValues,
    transfer_syntax: str,
    media_class: str,
    *,
    has_pixels: bool,
    plain_image: dict | None,
) -> DicomHeader:
    missing = [label for keyword, label in _REQUIRED_UIDS if not _uid(values, keyword)]
    if missing:
        raise FileRejected(
            "missing_uid",
            _(
                "The file lacks its %(attributes)s, so it cannot be filed. Export it again from "
                "the imaging system."
            )
            % {"attributes": ", ".join(missing)},
        )
    invalid = [label for keyword, label in _REQUIRED_UIDS if not _valid_uid(_uid(values, keyword))]
    if invalid:
        raise FileRejected(
            "invalid_uid",
            _("The file's %(attributes)s is not a valid DICOM UID.")
            % {"attributes": ", ".join(invalid)},
        )
    study_uid = _uid(values, "StudyInstanceUID")
    patient_id = _text(values, "PatientID", 64)
    if not patient_id:
        # No Patient ID (secondary captures, some disc exports). Filing such files under one
        # shared empty ID would merge different people's images, so each study gets its own
        # patient record, keyed by the study; a later file with a real ID is filed normally.
        patient_id = "NOID-" + hashlib.sha256(study_uid.encode()).hexdigest()[:12].upper()
    sex = _text(values, "PatientSex", 16).upper()[:1]
    return DicomHeader(
        study_uid=study_uid,
        series_uid=_uid(values, "SeriesInstanceUID"),
        sop_uid=_uid(values, "SOPInstanceUID"),
        sop_class_uid=(_uid(values, "SOPClassUID") or media_class)[:64],
        transfer_syntax=transfer_syntax[:64],
        patient_id=patient_id,
        issuer=_text(values, "IssuerOfPatientID", 64),
        name=split_person_name(values.get("PatientName", "")),
        birth_date=_parse_date(_text(values, "PatientBirthDate", 32)),
        sex=sex if sex in ("M", "F", "O") else "",
        study_date=_parse_date(_text(values, "StudyDate", 32)),
        study_time=_parse_time(_text(values, "StudyTime", 32)),
        description=_text(values, "StudyDescription", 200),
        accession=_text(values, "AccessionNumber", 64),
        referring_physician=readable_name(values.get("ReferringPhysicianName", "")),
        institution=_text(values, "InstitutionName", 200),
        modality=_text(values, "Modality", 16).upper(),
        series_number=_integer(values, "SeriesNumber"),
        series_description=_text(values, "SeriesDescription", 200),
        body_part=_text(values, "BodyPartExamined", 64),
        instance_number=_integer(values, "InstanceNumber"),
        frames=frame_count(values),
        rows=_integer(values, "Rows"),
        columns=_integer(values, "Columns"),
        has_pixels=has_pixels,
        plain_image=plain_image,
    )
