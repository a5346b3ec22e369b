"""DICOM in: files become Patient, Study, Series and Instance rows and content-addressed files.

One entry point, :func:`ingest_files`, serves the browser upload, the REST API and
``manage.py import_dicom``. Each file is read, checked and stored on its own (its own database
transaction), so one bad file in a folder of hundreds loses nothing else, and the uploader gets
one clear reason per rejected file.

Files are stored once per content: the storage name is derived from the SHA-256 of the bytes, so
uploading the same files twice is harmless, and nothing refers to a local path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import struct
import tempfile
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, time
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.core.files.storage import storages
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, MediaStorageDirectoryStorage

from accounts.models import Location, Organization, User
from accounts.permissions import Perm
from audit.models import Action, Outcome
from audit.services import record
from studies.access import active_memberships, may_upload_to
from studies.models import Instance, Patient, Series, Study
from studies.rendering import frame_count
from studies.services.worklists import file_received_study

logger = logging.getLogger(__name__)

# Spool uploads in memory up to this size, then on disk: a 1 GB cine never sits in RAM.
_SPOOL_MEMORY = 8 * 1024 * 1024
_CHUNK = 1024 * 1024
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


# --- Results ----------------------------------------------------------------------------------


class FileStatus:
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Rejection:
    """A file that was not stored, by the name the uploader knows it by, and why."""

    name: str
    reason: str
    code: str = "rejected"


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file; the upload page shows one row per outcome."""

    name: str
    status: str
    sop_instance_uid: str = ""
    message: str = ""


@dataclass
class IngestResult:
    stored: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    # Duplicates whose bytes differ from the stored copy: the stored copy was kept.
    differing_duplicates: list[str] = field(default_factory=list)
    # Study Instance UIDs that received at least one stored or duplicate file, in arrival order.
    studies: list[str] = field(default_factory=list)
    files: list[FileOutcome] = field(default_factory=list)

    def as_json(self) -> dict:
        """The REST API's shape (API.md), shared by the browser upload."""
        return {
            "stored": list(self.stored),
            "duplicates": list(self.duplicates),
            "rejected": [
                {"name": r.name, "reason": r.reason, "code": r.code} for r in self.rejected
            ],
            "duplicates_with_different_content": list(self.differing_duplicates),
            "studies": list(self.studies),
            "files": [
                {
                    "name": f.name,
                    "status": f.status,
                    "sop_instance_uid": f.sop_instance_uid,
                    "message": f.message,
                }
                for f in self.files
            ],
        }

    @property
    def status_code(self) -> int:
        """201 when something new was stored; 200 when nothing new was needed (duplicates);
        400 when every file was rejected (or there were none)."""
        if self.stored:
            return 201
        if self.duplicates:
            return 200
        return 400


class _Rejected(Exception):
    """Internal: a file is refused; turned into a Rejection by the caller."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class _StudyTally:
    study: Study
    stored: int = 0
    duplicates: int = 0


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
class _Name:
    raw: str
    family: str
    given: str
    search: str


def _split_name(pn: object) -> _Name:
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
    return _Name(raw=raw[:200], family=family[:100], given=given[:100], search=search[:200])


def _readable_name(pn: object) -> str:
    """ "Given Family" for display (e.g. a referring physician), else the PN as written."""
    name = _split_name(pn)
    return (" ".join(part for part in (name.given, name.family) if part) or name.raw)[:200]


# --- Reading the header -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    patient_id: str
    issuer: str
    name: _Name
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


_REQUIRED_UIDS = (
    ("StudyInstanceUID", "Study Instance UID (0020,000D)"),
    ("SeriesInstanceUID", "Series Instance UID (0020,000E)"),
    ("SOPInstanceUID", "SOP Instance UID (0008,0018)"),
)


def _text(ds, keyword: str, limit: int) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if not isinstance(value, str | bytes) and hasattr(value, "__iter__"):
        value = value[0] if len(value) else ""  # multi-valued: the first value
    return str(value).strip().replace("\x00", "")[:limit]


def _integer(ds, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
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


def _uid(ds, keyword: str) -> str:
    return str(ds.get(keyword) or "").strip().rstrip("\x00").strip()


def _valid_uid(uid: str) -> bool:
    return 0 < len(uid) <= 64 and all(ch.isdigit() or ch == "." for ch in uid)


def _read_header(spool: BinaryIO, size: int) -> _Header:
    pixel_at: list[tuple[int, int]] = []
    overruns: list[int] = []
    last_end: list[int | None] = [None]

    def stop_at_pixels(tag, vr, length) -> bool:
        # Called for each top-level element with the file positioned at its value. pydicom
        # quietly stops at the end of a cut file, so check here that each value fits in it
        # and remember where the last one ends.
        if tag in _PIXEL_TAGS:
            pixel_at.append((spool.tell(), length))
            return True
        if length == _UNDEFINED_LENGTH:
            last_end[0] = None
        else:
            last_end[0] = spool.tell() + length
            if last_end[0] > size:
                overruns.append(tag)
        return False

    spool.seek(0)
    try:
        ds = read_partial(spool, stop_when=stop_at_pixels, defer_size="512 KB")
    except InvalidDicomError as exc:
        raise _Rejected(
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
        raise _Rejected(
            "damaged",
            _(
                "The DICOM file is damaged or incomplete and cannot be read. Copy it again from "
                "its source."
            ),
        ) from exc

    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(meta.get("TransferSyntaxUID", "") if meta is not None else "").strip()
    if not transfer_syntax:
        raise _Rejected(
            "not_dicom",
            _(
                "This file has no DICOM Part-10 file header (no transfer syntax). Export it from "
                "the imaging system as a DICOM file."
            ),
        )
    media_class = str(meta.get("MediaStorageSOPClassUID", "")).strip()
    if media_class == MediaStorageDirectoryStorage:
        raise _Rejected(
            "dicomdir",
            _(
                "This is a DICOMDIR, the index of a disc, not an image. Upload the image files it "
                "lists (the rest of the folder)."
            ),
        )
    # A deflated file is inflated in memory first (a cut one fails to inflate), so positions
    # in it are not positions in the spool.
    if transfer_syntax != DeflatedExplicitVRLittleEndian:
        # A value running past the end, or a few bytes left over that make no element (the
        # file was cut inside an element's header).
        leftover = not pixel_at and last_end[0] is not None and last_end[0] < size
        if overruns or leftover:
            raise _truncated()
        if pixel_at:
            _check_pixel_data_complete(spool, size, *pixel_at[0])
    if len(ds) == 0:
        raise _truncated()  # nothing after the file header
    if not pixel_at and ("Rows" in ds or _is_image_class(ds, media_class)):
        # Cut exactly between two elements before the Pixel Data, or stripped of it: either
        # way there is nothing to show.
        raise _Rejected(
            "no_pixel_data",
            _(
                "The file describes an image but holds no image data (it may have been cut "
                "short). Copy or export it again from its source."
            ),
        )

    try:
        return _header_from(ds, transfer_syntax, media_class, has_pixels=bool(pixel_at))
    except (ValueError, TypeError, KeyError, LookupError) as exc:
        # Undecodable character sets or malformed values in the attributes we need.
        raise _Rejected(
            "damaged",
            _(
                "The DICOM file's patient or study attributes cannot be decoded. Check the file "
                "with the imaging system that produced it."
            ),
        ) from exc


def _is_image_class(ds, media_class: str) -> bool:
    sop_class = _uid(ds, "SOPClassUID") or media_class
    return bool(sop_class) and "Image Storage" in UID(sop_class).name


def _truncated() -> _Rejected:
    return _Rejected(
        "truncated",
        _(
            "The file is incomplete: it ends before its image data does (an interrupted copy?). "
            "Copy it again from its source."
        ),
    )


def _check_pixel_data_complete(spool: BinaryIO, size: int, position: int, length: int) -> None:
    """Reject files cut short (an interrupted copy) before they are stored and fail to render."""
    truncated = _truncated()
    if length != _UNDEFINED_LENGTH:
        if position + length > size:
            raise truncated
        return
    # Encapsulated (compressed) pixel data: walk the fragment items to the sequence delimiter.
    # Encapsulated data is always little endian; only the 8-byte item headers are read.
    offset = position
    while True:
        spool.seek(offset)
        header = spool.read(8)
        if len(header) < 8:
            raise truncated
        group, element, item_length = struct.unpack("<HHI", header)
        tag = group << 16 | element
        if tag == _SEQUENCE_DELIMITER:
            return
        if tag != _ITEM or item_length == _UNDEFINED_LENGTH:
            raise _Rejected(
                "damaged",
                _(
                    "The file's compressed image data is malformed. Check the file with the "
                    "imaging system that produced it."
                ),
            )
        offset += 8 + item_length
        if offset > size:
            raise truncated


def _header_from(ds, transfer_syntax: str, media_class: str, *, has_pixels: bool) -> _Header:
    missing = [label for keyword, label in _REQUIRED_UIDS if not _uid(ds, keyword)]
    if missing:
        raise _Rejected(
            "missing_uid",
            _(
                "The file lacks its %(attributes)s, so it cannot be filed. Export it again from "
                "the imaging system."
            )
            % {"attributes": ", ".join(missing)},
        )
    invalid = [label for keyword, label in _REQUIRED_UIDS if not _valid_uid(_uid(ds, keyword))]
    if invalid:
        raise _Rejected(
            "invalid_uid",
            _("The file's %(attributes)s is not a valid DICOM UID.")
            % {"attributes": ", ".join(invalid)},
        )
    study_uid = _uid(ds, "StudyInstanceUID")
    patient_id = _text(ds, "PatientID", 64)
    if not patient_id:
        # No Patient ID (secondary captures, some disc exports). Filing such files under one
        # shared empty ID would merge different people's images, so each study gets its own
        # patient record, keyed by the study; a later file with a real ID is filed normally.
        patient_id = "NOID-" + hashlib.sha256(study_uid.encode()).hexdigest()[:12].upper()
    sex = _text(ds, "PatientSex", 16).upper()[:1]
    return _Header(
        study_uid=study_uid,
        series_uid=_uid(ds, "SeriesInstanceUID"),
        sop_uid=_uid(ds, "SOPInstanceUID"),
        sop_class_uid=(_uid(ds, "SOPClassUID") or media_class)[:64],
        transfer_syntax=transfer_syntax[:64],
        patient_id=patient_id,
        issuer=_text(ds, "IssuerOfPatientID", 64),
        name=_split_name(ds.get("PatientName", "")),
        birth_date=_parse_date(_text(ds, "PatientBirthDate", 32)),
        sex=sex if sex in ("M", "F", "O") else "",
        study_date=_parse_date(_text(ds, "StudyDate", 32)),
        study_time=_parse_time(_text(ds, "StudyTime", 32)),
        description=_text(ds, "StudyDescription", 200),
        accession=_text(ds, "AccessionNumber", 64),
        referring_physician=_readable_name(ds.get("ReferringPhysicianName", "")),
        institution=_text(ds, "InstitutionName", 200),
        modality=_text(ds, "Modality", 16).upper(),
        series_number=_integer(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription", 200),
        body_part=_text(ds, "BodyPartExamined", 64),
        instance_number=_integer(ds, "InstanceNumber"),
        frames=frame_count(ds),
        rows=_integer(ds, "Rows"),
        columns=_integer(ds, "Columns"),
        has_pixels=has_pixels,
    )


# --- Spooling and storage ---------------------------------------------------------------------


def _spool(stream: BinaryIO, limit: int) -> tuple[tempfile.SpooledTemporaryFile, str, int]:
    """Copy the upload to a spooled file, hashing as it goes; stop as soon as it is too large."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115 - caller closes
    digest = hashlib.sha256()
    size = 0
    if hasattr(stream, "seek"):
        with contextlib.suppress(OSError, ValueError):  # a pipe: read from where it is
            stream.seek(0)
    while chunk := _read_chunk(stream, spool):
        size += len(chunk)
        if size > limit:
            spool.close()
            raise _Rejected(
                "too_large",
                _(
                    "The file is larger than the upload limit of %(limit)s. Ask your administrator "
                    "to import it."
                )
                % {"limit": filesizeformat(limit)},
            )
        digest.update(chunk)
        spool.write(chunk)
    if size == 0:
        spool.close()
        raise _Rejected("empty", _("The file is empty."))
    spool.seek(0)
    return spool, digest.hexdigest(), size


def _read_chunk(stream: BinaryIO, spool: BinaryIO) -> bytes:
    try:
        return stream.read(_CHUNK)
    except OSError as error:
        spool.close()
        raise _Rejected(
            "unreadable",
            _("The file could not be read (%(error)s). Check the disc or folder and try again.")
            % {"error": error.strerror or error},
        ) from error


def storage_name(sha256: str) -> str:
    """Where bytes with this SHA-256 live in the "dicom" storage."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.dcm"


def _store_bytes(spool: BinaryIO, sha256: str) -> str:
    storage = storages["dicom"]
    name = storage_name(sha256)
    if storage.exists(name):
        return name  # identical bytes are already there (another upload or another instance)
    spool.seek(0)
    saved = storage.save(name, File(spool, name=name))
    if saved != name:
        # Another process stored the same bytes between exists() and save(), so the storage
        # picked an alternative name; the content is identical, keep the canonical copy.
        storage.delete(saved)
    return name


# --- Database ---------------------------------------------------------------------------------


def _conflict_elsewhere() -> _Rejected:
    # Deliberately says nothing about the other organization, not even that it is one.
    return _Rejected(
        "conflict",
        _(
            "It conflicts with a study held elsewhere, so it was not stored. Check the file's "
            "Study Instance UID with the imaging system."
        ),
    )


def _existing_instance(header: _Header, organization: Organization, sha256: str) -> bool | None:
    """None when the SOP Instance UID is new; else whether the stored copy has the same bytes.
    A SOP Instance UID stored in another study, series or organization is a conflict."""
    instance = (
        Instance.objects.select_related("series__study")
        .filter(sop_instance_uid=header.sop_uid)
        .first()
    )
    if instance is None:
        return None
    study = instance.series.study
    if study.organization_id != organization.pk:
        raise _conflict_elsewhere()
    if study.study_uid != header.study_uid or instance.series.series_uid != header.series_uid:
        raise _Rejected(
            "instance_conflict",
            _(
                "Its SOP Instance UID is already stored in a different study or series, so it was "
                "not stored."
            ),
        )
    return instance.sha256 == sha256


def _patient_for(header: _Header, organization: Organization) -> Patient:
    name = header.name
    patient, created = Patient.objects.get_or_create(
        organization=organization,
        patient_id=header.patient_id,
        issuer=header.issuer,
        defaults={
            "name": name.raw,
            "family_name": name.family,
            "given_name": name.given,
            "name_search": name.search,
            "birth_date": header.birth_date,
            "sex": header.sex,
        },
    )
    if not created:
        # Only fill what is missing: an old file uploaded late must not undo a corrected name.
        changed = []
        for attr, value in (
            ("name", name.raw),
            ("family_name", name.family),
            ("given_name", name.given),
            ("name_search", name.search),
            ("birth_date", header.birth_date),
            ("sex", header.sex),
        ):
            if value and not getattr(patient, attr):
                setattr(patient, attr, value)
                changed.append(attr)
        if changed:
            patient.save(update_fields=changed)
    return patient


def _locked_study(
    header: _Header, organization: Organization, location: Location | None
) -> tuple[Study, bool]:
    """The study row, locked until the file's transaction ends, so that concurrent uploads into
    one study keep its counts right; created (once, even under concurrency) if new."""
    study = Study.objects.select_for_update().filter(study_uid=header.study_uid).first()
    created = False
    if study is None:
        patient = _patient_for(header, organization)
        # get_or_create retries the lookup if a concurrent upload inserted the row first.
        study, created = Study.objects.select_for_update().get_or_create(
            study_uid=header.study_uid,
            defaults={
                "organization": organization,
                "patient": patient,
                "study_date": header.study_date,
                "study_time": header.study_time,
                "description": header.description,
                "accession": header.accession,
                "referring_physician": header.referring_physician,
                "institution": header.institution,
                "received_location": location,
            },
        )
    if study.organization_id != organization.pk:
        raise _conflict_elsewhere()
    if not created:
        patient = study.patient
        if (patient.patient_id, patient.issuer) != (header.patient_id, header.issuer):
            raise _Rejected(
                "patient_mismatch",
                _(
                    "Its Patient ID differs from the patient of the study already stored with the "
                    "same Study Instance UID, so it was not stored. Check the patient in the "
                    "imaging system."
                ),
            )
        _fill_study_blanks(study, header)
    return study, created


def _fill_study_blanks(study: Study, header: _Header) -> None:
    changed = []
    for attr, value in (
        ("study_date", header.study_date),
        ("study_time", header.study_time),
        ("description", header.description),
        ("accession", header.accession),
        ("referring_physician", header.referring_physician),
        ("institution", header.institution),
    ):
        if value and not getattr(study, attr):
            setattr(study, attr, value)
            changed.append(attr)
    if changed:
        study.save(update_fields=changed)


def _series_for(header: _Header, study: Study) -> tuple[Series, bool]:
    series, created = Series.objects.get_or_create(
        series_uid=header.series_uid,
        defaults={
            "study": study,
            "modality": header.modality,
            "number": header.series_number,
            "description": header.series_description,
            "body_part": header.body_part,
        },
    )
    if series.study_id != study.pk:
        raise _Rejected(
            "series_conflict",
            _("Its series is already stored in a different study, so it was not stored."),
        )
    return series, created


def _file_instance(
    *,
    header: _Header,
    sha256: str,
    size: int,
    stored_as: str,
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None,
) -> tuple[Study, bool | None]:
    """Write the rows for one file, atomically. Returns the study, and None when the instance
    was stored, else whether the duplicate's bytes equal the stored copy."""
    with transaction.atomic():
        study, study_created = _locked_study(header, organization, location)
        # Checked again under the study lock: a concurrent upload may have just stored it.
        same = _existing_instance(header, organization, sha256)
        if same is not None:
            return study, same
        series, series_created = _series_for(header, study)
        try:
            with transaction.atomic():
                Instance.objects.create(
                    series=series,
                    sop_instance_uid=header.sop_uid,
                    sop_class_uid=header.sop_class_uid,
                    number=header.instance_number,
                    transfer_syntax=header.transfer_syntax,
                    frames=header.frames,
                    rows=header.rows,
                    columns=header.columns,
                    has_pixels=header.has_pixels,
                    file=stored_as,
                    sha256=sha256,
                    size=size,
                )
        except IntegrityError:
            # Same SOP Instance UID committed by a concurrent upload into another study.
            same = _existing_instance(header, organization, sha256)
            if same is None:
                raise
            return study, same
        Series.objects.filter(pk=series.pk).update(instance_count=F("instance_count") + 1)
        study.instance_count += 1
        update = ["instance_count"]
        if series_created:
            study.series_count += 1
            update.append("series_count")
        modalities = set(study.modalities.split())
        if header.modality and header.modality not in modalities:
            study.modalities = " ".join(sorted(modalities | {header.modality}))[:100]
            update.append("modalities")
        study.save(update_fields=update)
        if study_created:
            file_received_study(study=study, location=location, added_by=uploaded_by)
    return study, None


# --- Entry point ------------------------------------------------------------------------------


def upload_locations(user: User) -> list[Location]:
    """The locations a user may upload into: those of memberships whose role grants upload."""
    locations: dict[int, Location] = {}
    for membership in active_memberships(user):
        if membership.role.grants(Perm.UPLOAD_STUDIES):
            for location in membership.locations.select_related("organization"):
                locations[location.pk] = location
    return sorted(locations.values(), key=lambda loc: (loc.organization.name, loc.name))


def resolve_upload_location(user: User, location_id: object = None) -> Location:
    """The location an upload by ``user`` is filed at: the one asked for, or the user's only one.

    Raises PermissionDenied when the user may not upload at all (or not into the location's
    organization), ValidationError naming the ``location`` field otherwise.
    """
    allowed = upload_locations(user)
    if location_id in (None, ""):
        if len(allowed) == 1:
            return allowed[0]
        if not allowed:
            if not any(m.role.grants(Perm.UPLOAD_STUDIES) for m in active_memberships(user)):
                raise PermissionDenied(_("Your account may not upload studies."))
            raise ValidationError(
                {
                    "location": [
                        _(
                            "Your account works from no location, so uploaded studies could "
                            "not be filed. Ask your organization's administrator to add you to "
                            "a location."
                        )
                    ]
                }
            )
        raise ValidationError({"location": [_("Choose the location the studies arrive at.")]})
    try:
        wanted = int(str(location_id))
    except ValueError:
        raise ValidationError({"location": [_("Choose a valid location.")]}) from None
    for location in allowed:
        if location.pk == wanted:
            return location
    location = Location.objects.select_related("organization").filter(pk=wanted).first()
    if location is None:
        raise ValidationError({"location": [_("Choose a valid location.")]})
    if not may_upload_to(user, location.organization):
        raise PermissionDenied(_("Your account may not upload studies to this organization."))
    raise ValidationError({"location": [_("You do not work from this location.")]})


def ingest_files(
    *,
    files: Iterable[tuple[str, BinaryIO]],
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None = None,
    request: HttpRequest | None = None,
    actor_label: str | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> IngestResult:
    """Store DICOM files for ``organization``, as received at ``location``.

    ``files`` yields (name shown to the uploader, binary stream). Each file is stored or
    rejected on its own; rejected files are reported by name with a reason the uploader can act
    on. New studies are filed in the location's worklist. Audit: one STUDY_UPLOADED per study
    touched and one UPLOAD_REJECTED per rejected file. ``uploaded_by`` (when given) must be
    allowed to upload into the organization; ``None`` is a system import (management command,
    named by ``actor_label``). ``on_file`` is called after each file, for progress displays.
    """
    if uploaded_by is not None and not may_upload_to(uploaded_by, organization):
        raise PermissionDenied(_("Your account may not upload studies to this organization."))
    if location is not None and location.organization_id != organization.pk:
        raise ValidationError({"location": [_("This location belongs to another organization.")]})

    result = IngestResult()
    tallies: dict[str, _StudyTally] = {}
    limit = settings.UPLOAD_MAX_FILE_SIZE
    try:
        for name, stream in files:
            name = _display_name(name)
            outcome = _ingest_one(
                name,
                stream,
                limit=limit,
                organization=organization,
                location=location,
                uploaded_by=uploaded_by,
                result=result,
                tallies=tallies,
            )
            result.files.append(outcome)
            if on_file is not None:
                on_file(outcome)
    finally:
        # Also when the server fails mid-batch (storage or database down): the files stored
        # until then are committed, so their events must be written too.
        # Counts and ids only in the log: file names may carry patient names.
        logger.info(
            "Ingested %d file(s) for organization id %s: %d stored, %d duplicate(s), %d rejected",
            len(result.files),
            organization.pk,
            len(result.stored),
            len(result.duplicates),
            len(result.rejected),
        )
        _audit(
            result,
            tallies,
            organization=organization,
            location=location,
            uploaded_by=uploaded_by,
            request=request,
            actor_label=actor_label,
        )
    return result


def _display_name(name: str) -> str:
    cleaned = "".join(ch for ch in str(name or "") if ch.isprintable()).strip()
    return cleaned[-255:] or _("(unnamed file)")


def _ingest_one(
    name: str,
    stream: BinaryIO,
    *,
    limit: int,
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None,
    result: IngestResult,
    tallies: dict[str, _StudyTally],
) -> FileOutcome:
    spool = None
    try:
        spool, sha256, size = _spool(stream, limit)
        header = _read_header(spool, size)
        # Quick check before writing anything: re-sending files already here costs no storage.
        existing = (
            Study.objects.filter(study_uid=header.study_uid)
            .values_list("organization_id", flat=True)
            .first()
        )
        if existing is not None and existing != organization.pk:
            raise _conflict_elsewhere()
        same = _existing_instance(header, organization, sha256)
        if same is None:
            stored_as = _store_bytes(spool, sha256)
            study, same = _file_instance(
                header=header,
                sha256=sha256,
                size=size,
                stored_as=stored_as,
                organization=organization,
                location=location,
                uploaded_by=uploaded_by,
            )
        else:
            study = Study.objects.select_related("patient").get(study_uid=header.study_uid)
    except _Rejected as rejected:
        result.rejected.append(Rejection(name=name, reason=rejected.reason, code=rejected.code))
        return FileOutcome(name=name, status=FileStatus.REJECTED, message=rejected.reason)
    finally:
        if spool is not None:
            spool.close()

    tally = tallies.get(study.study_uid)
    if tally is None:
        tally = tallies[study.study_uid] = _StudyTally(study=study)
        result.studies.append(study.study_uid)
    if same is None:
        tally.stored += 1
        result.stored.append(header.sop_uid)
        return FileOutcome(name=name, status=FileStatus.STORED, sop_instance_uid=header.sop_uid)
    tally.duplicates += 1
    result.duplicates.append(header.sop_uid)
    if same:
        message = _("Already stored; nothing to do.")
    else:
        result.differing_duplicates.append(header.sop_uid)
        message = _(
            "Already stored with different content; the stored copy was kept. A corrected image "
            "needs a new SOP Instance UID."
        )
    return FileOutcome(
        name=name, status=FileStatus.DUPLICATE, sop_instance_uid=header.sop_uid, message=message
    )


def _audit(
    result: IngestResult,
    tallies: dict[str, _StudyTally],
    *,
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None,
    request: HttpRequest | None,
    actor_label: str | None,
) -> None:
    """One event per study touched and one per rejected file, written once the batch is done.

    Files commit one by one (a bad file must not undo the good ones), so these events follow
    the last file's commit rather than sharing a transaction with each file.
    """
    label = actor_label if uploaded_by is None else None
    location_details = (
        {"location": location.name, "location_id": location.pk} if location is not None else {}
    )
    for tally in tallies.values():
        record(
            action=Action.STUDY_UPLOADED,
            actor=uploaded_by,
            actor_label=label,
            request=request,
            study=tally.study,
            details={"stored": tally.stored, "duplicates": tally.duplicates, **location_details},
        )
    for rejection in result.rejected:
        record(
            action=Action.UPLOAD_REJECTED,
            actor=uploaded_by,
            actor_label=label,
            request=request,
            outcome=Outcome.MINOR_FAILURE,
            organization_id=organization.pk,
            target_type="file",
            details={
                "file": rejection.name,
                "reason": rejection.reason,
                "kind": rejection.code,
                **location_details,
            },
        )
