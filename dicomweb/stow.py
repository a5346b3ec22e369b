"""STOW-RS (PS3.18 10.5): ``POST /dicomweb/studies`` and ``/dicomweb/studies/{study}`` store the
instances of a ``multipart/related; type="application/dicom"`` body.

The rules are the REST upload's: the caller needs the upload permission (403 without it), and the
studies are filed at the caller's upload location, or at ``?location=<id>`` for a caller with
several. Every instance goes through the upload's ingestion service, as an upload's files do
(``IngestionBatch.add_all``, what ``ingest_files`` runs): same checks, content-addressed and
idempotent storage, the new instances of a chunk filed in one transaction, the worklist entry,
one "DICOM Instances Transferred" audit event per study with the protocol, and one "Upload
rejected" event per refused part.

A body of up to 8 MB with a Content-Length is read in one go and held in memory; a larger or
chunked one is read as a stream into one spooled temporary file (memory holds at most 8 MB, the
rest is on disk). Its multipart framing is checked in full before anything is stored: a
malformed body is 400 and a part of another media type 415, with nothing stored. Then each part
is stored or refused on its own. At ``/studies/{study}``, a part of another study is
refused and the others stored.

The answer is the Store Instances Response Module (PS3.18 Annex I) in ``application/dicom+json``:
the study's RetrieveURL, a ReferencedSOPSequence item per instance stored (or already stored)
and a FailedSOPSequence item per instance refused, with the Failure Reason of Table I.2-2:

- A7xx (0xA700): larger than the upload limit (out of resources);
- A9xx (0xA900): it conflicts with what the request or the archive says: a Study Instance UID
  other than the URL's, or a study, series, instance or patient stored differently;
- 0x0122: a SOP Class that is not stored here (a DICOMDIR);
- Cxxx (0xC000): not understood: not DICOM, damaged, truncated, missing UIDs, impossible image;
- 0x0110: the part could not be read (processing failure).

An instance already stored with the same bytes is stored (a repeated store is harmless); with
different bytes the stored copy is kept, and its item carries Warning Reason 0xB000 (coercion of
data elements: what the RetrieveURL serves is not exactly what was sent). The status is 200 when
every instance was stored without warning, 202 when some were refused or warned about, 409 when
none was stored. The reasons, in words, are in the ``Warning`` header (``299``), one per part.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol, cast

import pydicom
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.http import parse_header_parameters
from django.utils.translation import gettext as _

from accounts.memberships import has_perm, memberships_key
from accounts.models import Location, User
from accounts.permissions import Perm
from dicomweb.dicomjson import JsonAttribute, JsonDataset
from dicomweb.http import DICOM_JSON, DicomwebError, bad_request, dicomweb_view
from dicomweb.multipart import parse_accept
from studies.dicom_header import DicomHeader, FileRejected
from studies.models import Instance
from studies.services.ingestion import (
    FileOutcome,
    FileStatus,
    IngestionBatch,
    Transfer,
    resolve_upload_location,
    upload_locations_key,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

logger = logging.getLogger(__name__)

PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
COERCED = 0xB000

# Ingestion's rejection codes (``Rejection.code``) as PS3.18 Table I.2-2 failure reasons.
_FAILURE_REASONS = {
    "too_large": OUT_OF_RESOURCES,
    "conflict": DOES_NOT_MATCH,
    "instance_conflict": DOES_NOT_MATCH,
    "series_conflict": DOES_NOT_MATCH,
    "patient_mismatch": DOES_NOT_MATCH,
    "study_mismatch": DOES_NOT_MATCH,
    "dicomdir": SOP_CLASS_NOT_SUPPORTED,
    "unreadable": PROCESSING_FAILURE,
}

_SPOOL_MEMORY = 8 * 1024 * 1024
# The largest body read in one go and held in memory as it came.
_MEMORY_BODY = _SPOOL_MEMORY
_CHUNK = 1024 * 1024
_MAX_PART_HEADERS = 16 * 1024


# --- The request ------------------------------------------------------------------------------


def _check_accept(request: HttpRequest) -> None:
    """The answer is DICOM JSON; an Accept header that excludes it is 406."""
    for media_range in parse_accept(request.headers.get("Accept")):
        if media_range.matches(DICOM_JSON) or media_range.matches("application/json"):
            return
    raise DicomwebError(406, _("The store response is available as application/dicom+json."))


def _uploader(request: HttpRequest) -> User:
    """Who stores the instances: a user with the permission. A guest (grants in the session,
    no account) may not, like a user without it."""
    user = request.user
    if not user.is_authenticated or not has_perm(user, Perm.UPLOAD_STUDIES):
        raise DicomwebError(403, _("Your account may not upload studies."))
    return user


def _upload_location(request: HttpRequest, uploader: User) -> Location:
    """Where the studies are filed: the REST upload's rules, as DICOMweb statuses."""
    try:
        return resolve_upload_location(uploader, request.GET.get("location"))
    except PermissionDenied as denied:
        raise DicomwebError(403, str(denied)) from None
    except ValidationError as invalid:
        raise bad_request(" ".join(invalid.messages)) from None


def _boundary(request: HttpRequest) -> bytes:
    """The multipart boundary, once the content type is ``multipart/related`` of DICOM."""
    media, params = parse_header_parameters(request.headers.get("Content-Type", ""))
    part_type = params.get("type", "").strip().lower()
    if media.lower() != "multipart/related" or part_type != "application/dicom":
        raise DicomwebError(
            415,
            _(
                'Send the instances as Content-Type: multipart/related; type="application/dicom"; '
                "boundary=..."
            ),
        )
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise bad_request(
            _("The Content-Type names no usable boundary (1 to 70 ASCII characters).")
        )
    return boundary.encode("ascii")


class _Body(Protocol):
    """What the request body is read through: the request, or the server's input stream."""

    def read(self, size: int, /) -> bytes: ...


def _body(request: HttpRequest) -> _Body:
    """The request body as a stream. A chunked body has no Content-Length, so Django's stream of
    the request is empty; a server that decoded the chunks says so (``wsgi.input_terminated``,
    as gunicorn does) and its input is read to its end instead."""
    chunked = request.headers.get("Transfer-Encoding", "").lower() == "chunked"
    if chunked and not request.META.get("CONTENT_LENGTH"):
        if request.META.get("wsgi.input_terminated"):
            stream: _Body = request.META["wsgi.input"]
            return stream
        raise bad_request(
            _("This server cannot read a chunked request body: send it with a Content-Length.")
        )
    return request


def _length(request: HttpRequest) -> int | None:
    """The body's length as its Content-Length declares it; None for a body without one."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if length >= 0 else None


# --- The multipart body -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    number: int  # 1-based, the name the part is known by in the answer and the audit trail
    start: int
    end: int


class _PartReader(io.RawIOBase):
    """One part of the spooled body, read as a file of its own. The parts share the spool,
    which ingestion's threads read at once when they store a request's files: each read holds
    the spool's ``lock`` from its seek to its read."""

    def __init__(self, spool: IO[bytes], part: _Part, lock: threading.Lock):
        super().__init__()
        self._spool = spool
        self._lock = lock
        self._start = part.start
        self._size = part.end - part.start
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer)
        wanted = min(len(view), self._size - self._position)
        if wanted <= 0:
            return 0
        with self._lock:
            self._spool.seek(self._start + self._position)
            data = self._spool.read(wanted)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


def _part_file(spool: IO[bytes], part: _Part, lock: threading.Lock) -> BinaryIO:
    """The part as the stream ingestion files."""
    if isinstance(spool, io.BytesIO):
        # A body held in memory: the part as a file in memory of its own, which ingestion
        # hashes and reads where it is instead of copying it once more.
        return io.BytesIO(spool.getvalue()[part.start : part.end])
    # Ingestion annotates its streams as BinaryIO but reads them through read and seek alone,
    # which this raw file has. (A BufferedReader around it would be a BinaryIO, but one that
    # pydicom cannot read: it asks for the name the part does not have.)
    return cast(BinaryIO, _PartReader(spool, part, lock))


def _spool_body(stream: _Body, delimiter: bytes, length: int | None) -> tuple[IO[bytes], list[int]]:
    """The body, noting where each ``CRLF--boundary`` starts. The body is read as if it began
    with a CRLF, so that a first delimiter at its very start (no preamble) is found like the
    others, at offset -2. A body of known ``length`` that fits in memory is read in one call
    and kept as it came (the server's reader copies it least so); any other is copied to a
    spooled file as it arrives."""
    if length is not None and length <= _MEMORY_BODY:
        data = stream.read(length)
        found, _carry = _delimiters(b"\r\n", data, delimiter, base=0)
        return io.BytesIO(data), found
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115 - caller closes
    found = []
    carry, size = b"\r\n", 0
    try:
        while chunk := stream.read(_CHUNK):
            spool.write(chunk)
            more, carry = _delimiters(carry, chunk, delimiter, base=size)
            found += more
            size += len(chunk)
    except BaseException:
        spool.close()
        raise
    return spool, found


def _delimiters(
    carry: bytes, chunk: bytes, delimiter: bytes, *, base: int
) -> tuple[list[int], bytes]:
    """Where ``delimiter`` starts in ``carry + chunk``, as offsets in the body whose ``chunk``
    starts at ``base``; and what to carry into the next chunk: enough to find a delimiter split
    across the two, never part of one found. The chunk is searched where it is, not copied."""
    width = len(delimiter)
    found: list[int] = []
    # A delimiter that begins in the carry ends within the chunk's first width - 1 bytes.
    seam = carry + chunk[: width - 1]
    end = 0
    while (index := seam.find(delimiter, end)) != -1:
        found.append(index)
        end = index + width
    position = max(0, end - len(carry))
    while (index := chunk.find(delimiter, position)) != -1:
        found.append(len(carry) + index)
        position = index + width
        end = len(carry) + position
    kept_from = max(len(carry) + len(chunk) - width + 1, end)
    if kept_from >= len(carry):
        next_carry = chunk[kept_from - len(carry) :]
    else:
        next_carry = carry[kept_from:] + chunk
    return [base - len(carry) + index for index in found], next_carry


def _read_at(spool: IO[bytes], offset: int, size: int) -> bytes:
    spool.seek(offset)
    return spool.read(size)


def _parts(spool: IO[bytes], delimiters: list[int], delimiter: bytes) -> list[_Part]:
    """The parts between the delimiters, up to the close delimiter; 400 for a malformed body,
    415 for a part that is not application/dicom."""
    if not delimiters:
        raise bad_request(_("The body holds no part: its boundary does not occur in it."))
    parts: list[_Part] = []
    for number, at in enumerate(delimiters, start=1):
        after = at + len(delimiter)
        tail = _read_at(spool, after, 2 + 256)
        if tail.startswith(b"--"):
            break  # the close delimiter; what follows is the epilogue
        padding = len(tail) - len(tail.lstrip(b" \t"))
        if tail[padding : padding + 2] != b"\r\n":
            raise bad_request(_("The body is malformed: a boundary line is not followed by CRLF."))
        if number == len(delimiters):
            raise bad_request(
                _("The body ends before its closing boundary (--boundary--): it was cut short.")
            )
        start, end = after + padding + 2, delimiters[number]
        parts.append(_content_of(spool, number, start, end))
    if not parts:
        raise bad_request(_("The body holds no instance."))
    return parts


def _content_of(spool: IO[bytes], number: int, start: int, end: int) -> _Part:
    """The part's body after its header fields, once they say it is DICOM (or say nothing)."""
    head = _read_at(spool, start, min(end - start, _MAX_PART_HEADERS))
    if head.startswith(b"\r\n"):
        return _Part(number, start + 2, end)  # no header fields
    split = head.find(b"\r\n\r\n")
    if split == -1:
        raise bad_request(
            _("Part %(number)s is malformed: its header fields do not end with an empty line.")
            % {"number": number}
        )
    for line in head[:split].decode("latin-1").split("\r\n"):
        name, _colon, value = line.partition(":")
        if name.strip().lower() != "content-type":
            continue
        media, _params = parse_header_parameters(value)
        if media.lower() != "application/dicom":
            raise DicomwebError(
                415,
                _("Part %(number)s is %(media)s; only application/dicom instances are stored.")
                % {"number": number, "media": media[:100]},
            )
    return _Part(number, start + split + 4, end)


# --- Storing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
    """The UIDs a refused part claims, as far as its header can be read (empty where not)."""

    sop_class_uid: str = ""
    sop_instance_uid: str = ""


def _identify(reader: _PartReader) -> _Identity:
    try:
        ds = pydicom.dcmread(
            reader,
            stop_before_pixels=True,
            defer_size="1 KB",
            specific_tags=["SOPClassUID", "SOPInstanceUID"],
        )
    except Exception:
        # Untrusted bytes fail in many ways; ingestion has said why it refused the part, here
        # it only lacks UIDs.
        return _Identity()
    meta = getattr(ds, "file_meta", None) or pydicom.Dataset()

    def uid(value: object) -> str:
        return str(value or "").strip().rstrip("\x00")[:64]

    return _Identity(
        sop_class_uid=uid(ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID")),
        sop_instance_uid=uid(ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID")),
    )


@dataclass(frozen=True)
class _Outcome:
    """What became of one part: stored under ``stored_uid`` (possibly with a warning), or
    refused with a failure reason; ``reason`` says it in words."""

    part: _Part
    stored_uid: str = ""
    stored_in: tuple[str, str] = ("", "")  # the study's and the series' UIDs
    sop_class_uid: str = ""
    identity: _Identity = _Identity()
    failure: int | None = None
    warning: int | None = None
    reason: str = ""

    @property
    def name(self) -> str:
        """How ingestion, the audit trail and the Warning header name the part."""
        return f"part {self.part.number}"


def _in_study(study_uid: str) -> Callable[[DicomHeader], None]:
    """Ingestion's check for ``/studies/{study}``: a part of another study is refused."""

    def check(header: DicomHeader) -> None:
        if header.study_uid != study_uid:
            raise FileRejected(
                "study_mismatch",
                _(
                    "Its Study Instance UID is not the one of the study in the URL, so it was "
                    "not stored."
                ),
            )

    return check


def _store(
    request: HttpRequest,
    *,
    spool: IO[bytes],
    parts: list[_Part],
    uploader: User,
    location: Location,
    study_uid: str | None,
) -> list[_Outcome]:
    """The parts through ingestion, a chunk at a time as an upload's files (the new instances
    of a chunk filed in one transaction); one audit event per study when all are done."""
    check = _in_study(study_uid) if study_uid is not None else None
    outcomes: list[_Outcome] = []
    spool_lock = threading.Lock()

    def on_file(filed: FileOutcome) -> None:
        part = parts[len(outcomes)]  # ingestion answers for each file, in order
        if filed.status == FileStatus.REJECTED:
            outcome = _Outcome(
                part,
                identity=_identify(_PartReader(spool, part, spool_lock)),
                failure=_FAILURE_REASONS.get(filed.code, CANNOT_UNDERSTAND),
                reason=filed.message,
            )
        else:
            different = filed.code == "different_content"
            outcome = _Outcome(
                part,
                stored_uid=filed.sop_instance_uid,
                stored_in=(filed.study_uid, filed.series_uid),
                sop_class_uid=filed.sop_class_uid,
                warning=COERCED if different else None,
                reason=filed.message if different else "",
            )
        outcomes.append(outcome)

    with IngestionBatch(
        organization=location.organization,
        location=location,
        uploaded_by=uploader,
        request=request,
        transfer=Transfer(protocol="STOW-RS", details={"parts": len(parts)}),
    ) as batch:
        batch.add_all(
            ((f"part {part.number}", _part_file(spool, part, spool_lock)) for part in parts),
            on_file=on_file,
            check=check,
        )
    return outcomes


# --- The answer -------------------------------------------------------------------------------


def _element(vr: str, *values: object) -> JsonAttribute:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def _study_url(study_uid: str) -> str:
    return _absolute(reverse("dicomweb:study", kwargs={"study_uid": study_uid}))


def _response_body(outcomes: list[_Outcome], study_uid: str | None) -> JsonDataset:
    # Each instance is named as ingestion filed it, except the copy kept in place of different
    # bytes, whose SOP class is the stored one's.
    kept = [outcome.stored_uid for outcome in outcomes if outcome.warning is not None]
    kept_classes = dict(
        Instance.objects.filter(sop_instance_uid__in=kept).values_list(
            "sop_instance_uid", "sop_class_uid"
        )
        if kept
        else ()
    )
    referenced, failed = [], []
    for outcome in outcomes:
        if outcome.failure is not None:
            item = {}
            if outcome.identity.sop_class_uid:
                item["00081150"] = _element("UI", outcome.identity.sop_class_uid)
            if outcome.identity.sop_instance_uid:
                item["00081155"] = _element("UI", outcome.identity.sop_instance_uid)
            item["00081197"] = _element("US", outcome.failure)
            failed.append(item)
            continue
        in_study, in_series = outcome.stored_in
        url = reverse(
            "dicomweb:instance",
            kwargs={
                "study_uid": in_study,
                "series_uid": in_series,
                "instance_uid": outcome.stored_uid,
            },
        )
        sop_class = kept_classes.get(outcome.stored_uid, outcome.sop_class_uid)
        item = {
            "00081150": _element("UI", sop_class),
            "00081155": _element("UI", outcome.stored_uid),
            "00081190": _element("UR", _absolute(url)),
        }
        if outcome.warning is not None:
            item["00081196"] = _element("US", outcome.warning)
        referenced.append(item)
    studies = {outcome.stored_in[0] for outcome in outcomes if outcome.stored_uid}
    target = study_uid or (studies.pop() if len(studies) == 1 else None)
    body = {"00081190": _element("UR", _study_url(target)) if target else _element("UR")}
    if failed:
        body["00081198"] = _element("SQ", *failed)
    if referenced:
        body["00081199"] = _element("SQ", *referenced)
    return body


def _warning_header(outcomes: list[_Outcome]) -> str:
    """The reasons in words, as HTTP warnings: ASCII, one quoted text per part."""
    warnings = []
    for outcome in outcomes:
        if not outcome.reason:
            continue
        text = unicodedata.normalize("NFKD", f"{outcome.name}: {outcome.reason}")
        text = text.encode("ascii", "ignore").decode().replace("\\", "").replace('"', "'")
        warnings.append(f'299 - "{text[:300]}"')
    return ", ".join(warnings)


def _upload_ahead(principal: str, request: HttpRequest, kwargs: dict[str, object]) -> list[str]:
    """What storing asks for the token's user (``dicomweb_view``'s ``ahead``): whether the user
    may upload (the memberships) and where to."""
    kind, _colon, rest = principal.partition(":")
    user_id = rest.partition(":")[0]
    if kind != "user" or not user_id.isdigit():
        return []
    return [memberships_key(int(user_id)), upload_locations_key(int(user_id))]


@dicomweb_view("POST", ahead=_upload_ahead)
def store(request: HttpRequest, study_uid: str | None = None) -> HttpResponse:
    """Store the instances of a multipart/related body (see the module docstring)."""
    _check_accept(request)
    uploader = _uploader(request)
    location = _upload_location(request, uploader)
    boundary = _boundary(request)
    delimiter = b"\r\n--" + boundary
    spool, delimiters = _spool_body(_body(request), delimiter, _length(request))
    with contextlib.closing(spool):
        parts = _parts(spool, delimiters, delimiter)
        outcomes = _store(
            request,
            spool=spool,
            parts=parts,
            uploader=uploader,
            location=location,
            study_uid=study_uid,
        )
    body = _response_body(outcomes, study_uid)
    failures = sum(outcome.failure is not None for outcome in outcomes)
    warnings = sum(outcome.warning is not None for outcome in outcomes)
    if failures == len(outcomes):
        status = 409
    elif failures or warnings:
        status = 202
    else:
        status = 200
    logger.info(
        "STOW-RS into location id %s: %d part(s), %d refused, %d warning(s)",
        location.pk,
        len(outcomes),
        failures,
        warnings,
    )
    response = HttpResponse(json.dumps(body), status=status, content_type=DICOM_JSON)
    if header := _warning_header(outcomes):
        response.headers["Warning"] = header
    return response
