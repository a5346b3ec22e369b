"""WADO-RS (PS3.18 10.4): studies, series and instances retrieved whole, their metadata, their
frames and their bulk data.

Every view finds the study and the instances through :mod:`dicomweb.scope`, so the caller's
access decides what is served: an anonymized access gets every dataset de-identified exactly as
the ZIP download does (:func:`studies.anonymize.deidentify_dataset`) in retrieve, metadata and
bulk data alike; an images-only access never receives an object without pixel data. Each
request is one audit event, whatever the number of parts.

The transfer syntax of every part is chosen before the answer starts (see
:mod:`dicomweb.transcode`), so a request that cannot be met is a 406 saying why, never a broken
stream. Instances stream one after the other: a file served as stored is copied in chunks, one
that must be converted or de-identified is held whole, one at a time.

Bulk data URIs are absolute, built from ``SITE_URL`` (dicomweb-client drops the port of the
``Host`` it was given): ``.../instances/{uid}/bulkdata/{path}``, where the path is the element's
tag, or for an element inside sequences ``SEQUENCE/ITEM/.../TAG`` with 8-hex-digit tags and
1-based item numbers (``00880200/1/7FE00010``, an icon's pixels). The pixel data's own URI
(``.../bulkdata/7FE00010``) answers all its frames, negotiated like the frames resource: OHIF
builds ``.../frames/N`` itself, dicomweb-client follows the URI.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import pydicom
from django.conf import settings
from django.core.cache import caches
from django.core.files.storage import storages
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from pydicom import DataElement, Dataset
from pydicom.filewriter import correct_ambiguous_vr
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from dicomweb.audit import record_frames_retrieved, record_retrieve
from dicomweb.dicomjson import JsonAttribute, JsonDataset
from dicomweb.http import DICOM_JSON, DicomwebError, bad_request, dicomweb_view, not_found
from dicomweb.multipart import (
    Part,
    media_type_matches,
    multipart_response,
    parse_accept,
)
from dicomweb.scope import (
    InstanceTarget,
    instance_decision_ahead,
    instance_target,
    instances_for,
    study_for,
)
from dicomweb.transcode import (
    EXPLICIT_LE,
    NEVER_SERVED,
    OCTET_STREAM,
    PIXEL_TAGS,
    StoredFile,
    StoredFrames,
    TranscodeError,
    dataset_bytes,
    dataset_unavailable_reason,
    default_syntax,
    frame_unavailable_reason,
    normalize_media_type,
    open_stored,
    pixel_media_type,
    pixel_vr_as_served,
    served_syntax,
    transcode,
    value_bytes,
)
from studies.access import StudyAccess
from studies.anonymize import deidentify_dataset, pseudonym
from studies.frame_sources import FrameSource
from studies.models import Instance, Study

logger = logging.getLogger(__name__)

DICOM = "application/dicom"
# Binary values longer than this are left out of metadata, behind a BulkDataURI (PS3.18 F.2.7).
BULK_DATA_THRESHOLD = 1024
_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_CHUNK = 256 * 1024
_METADATA_BATCH = 100
# Bump when the metadata of a stored file would come out differently (profile, layout).
_METADATA_VERSION = 1
_MAX_FRAME_NUMBERS = 10_000
_VARY = "Accept"
_BULK_PART = f"{OCTET_STREAM}; transfer-syntax={EXPLICIT_LE}"


# --- Finding what was asked for ----------------------------------------------------------------


def _lookup(
    request: HttpRequest,
    study_uid: str,
    series_uid: str | None = None,
    instance_uid: str | None = None,
) -> tuple[Study, StudyAccess, list[Instance]]:
    """The study, the caller's access and the instances it reaches at this level, or 404."""
    study, access = study_for(request, study_uid)
    instances = list(instances_for(study, access, series_uid=series_uid, instance_uid=instance_uid))
    if not instances:
        if instance_uid is not None:
            raise not_found(_("No such instance."))
        if series_uid is not None:
            raise not_found(_("No such series."))
        raise not_found(_("No such study."))
    return study, access, instances


def _frame_numbers(frame_list: str) -> list[int]:
    """``1,3,5`` as 1-based frame numbers, or a 400 saying what is wrong."""
    pieces = [piece.strip() for piece in frame_list.split(",")]
    if not all(piece.isdigit() and piece.isascii() for piece in pieces):
        raise bad_request(
            _("Frames are asked for as a comma-separated list of frame numbers, e.g. 1,3,5.")
        )
    numbers = [int(piece) for piece in pieces]
    if 0 in numbers:
        raise bad_request(_("Frame numbers start at 1."))
    if len(numbers) > _MAX_FRAME_NUMBERS:
        raise bad_request(
            _("At most %(count)d frames can be asked for at once.") % {"count": _MAX_FRAME_NUMBERS}
        )
    return numbers


def _tag_path(text: str) -> list[tuple[int, int]] | None:
    """``SEQ/ITEM/.../TAG`` as [(sequence tag, 1-based item), ..., (tag, 0)], None if malformed."""
    pieces = text.strip("/").split("/")
    if len(pieces) % 2 == 0:
        return None
    path: list[tuple[int, int]] = []
    for position in range(0, len(pieces), 2):
        tag_text = pieces[position]
        if len(tag_text) != 8 or not all(c in "0123456789abcdefABCDEF" for c in tag_text):
            return None
        item = 0
        if position + 1 < len(pieces):
            item_text = pieces[position + 1]
            if not item_text.isdigit() or not item_text.isascii() or int(item_text) < 1:
                return None
            item = int(item_text)
        path.append((int(tag_text, 16), item))
    return path


# --- Content negotiation -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Wanted:
    """One representation the client accepts for the parts of a multipart answer."""

    media_type: str  # a part media type or a pattern (``*/*``, ``image/*``)
    syntax: str | None  # None: the media type's default; "*": as stored; else a UID


def _wanted(request: HttpRequest, offered: Promise) -> list[_Wanted]:
    """The acceptable part representations, best first, or a 406 saying what is ``offered``."""
    wanted: list[_Wanted] = []
    for media_range in parse_accept(request.headers.get("Accept")):
        if media_range.is_multipart:
            part_type = normalize_media_type(media_range.part_type or "*/*")
        elif media_range.media_type == "*/*":
            part_type = "*/*"
        else:
            continue  # WADO-RS answers are multipart: a bare type cannot be served
        wanted.append(_Wanted(part_type, media_range.transfer_syntax))
    if not wanted:
        raise DicomwebError(406, str(offered))
    return wanted


def _not_acceptable(reasons: list[str], offered: Promise) -> DicomwebError:
    return DicomwebError(406, reasons[0] if reasons else str(offered))


def _dataset_syntax(wanted: list[_Wanted], instance: Instance, offered: Promise) -> str:
    """The syntax to send ``instance`` in: the first acceptable one that can be produced."""
    reasons: list[str] = []
    for choice in wanted:
        if not media_type_matches(choice.media_type, DICOM):
            continue
        if choice.syntax is None:
            target = EXPLICIT_LE
        elif choice.syntax == "*":
            target = served_syntax(instance.transfer_syntax)
        else:
            target = choice.syntax
        reason = dataset_unavailable_reason(
            stored=instance.transfer_syntax, target=target, has_pixels=instance.has_pixels
        )
        if reason is None:
            return target
        reasons.append(reason)
    raise _not_acceptable(reasons, offered)


def _frame_syntax(wanted: list[_Wanted], stored: str, offered: Promise) -> str:
    """The syntax to send the frames of a file stored in ``stored`` in."""
    reasons: list[str] = []
    for choice in wanted:
        for target in _frame_candidates(choice, served_syntax(stored)):
            reason = frame_unavailable_reason(stored=stored, target=target)
            if reason is None:
                return target
            reasons.append(reason)
    raise _not_acceptable(reasons, offered)


def _frame_candidates(choice: _Wanted, served: str) -> list[str]:
    media_type = choice.media_type
    if choice.syntax is not None:
        target = served if choice.syntax == "*" else choice.syntax
        # Octet-stream with a syntax means "this syntax": compressed frames then come under
        # their own media type (OHIF asks application/octet-stream; transfer-syntax=*).
        if media_type == OCTET_STREAM or media_type_matches(media_type, pixel_media_type(target)):
            return [target]
        return []
    if media_type == OCTET_STREAM:
        return [EXPLICIT_LE]
    if "*" in media_type:
        # Any type: uncompressed first, as clients that cannot see part headers expect.
        return [
            target
            for target in dict.fromkeys((EXPLICIT_LE, served))
            if media_type_matches(media_type, pixel_media_type(target))
        ]
    if media_type == pixel_media_type(served):
        return [served]
    default = default_syntax(media_type)
    return [default] if default else []


def _accepts_octet_stream(wanted: list[_Wanted]) -> bool:
    return any(
        media_type_matches(choice.media_type, OCTET_STREAM)
        and choice.syntax in (None, "*", EXPLICIT_LE)
        for choice in wanted
    )


def _check_json_accept(request: HttpRequest) -> None:
    for media_range in parse_accept(request.headers.get("Accept")):
        if media_range.matches(DICOM_JSON) or media_range.media_type == "application/json":
            return
    raise DicomwebError(406, _("Metadata is served as application/dicom+json."))


# --- Retrieve ----------------------------------------------------------------------------------


_DATASETS_OFFERED = gettext_lazy(
    'Instances are served as multipart/related; type="application/dicom", with '
    "transfer-syntax=* (as stored) or a transfer syntax UID (default Explicit VR Little Endian)."
)


@dicomweb_view("GET")
def retrieve(
    request: HttpRequest,
    study_uid: str,
    series_uid: str | None = None,
    instance_uid: str | None = None,
) -> HttpResponseBase:
    """A study, a series or an instance as ``multipart/related; type="application/dicom"``."""
    wanted = _wanted(request, _DATASETS_OFFERED)
    study, access, instances = _lookup(request, study_uid, series_uid, instance_uid)
    plan = [
        (instance, _dataset_syntax(wanted, instance, _DATASETS_OFFERED)) for instance in instances
    ]
    head = request.method == "HEAD"
    if not head:
        level = "instance" if instance_uid else "series" if series_uid else "study"
        # Recorded when the answer starts: a stream cannot share a transaction with its audit.
        record_retrieve(request, study=study, access=access, resource=level, instances=len(plan))
    parts = (
        Part(
            content_type=f"{DICOM}; transfer-syntax={syntax}",
            body=_instance_body(instance, syntax, study=study, anonymized=access.anonymized),
        )
        for instance, syntax in plan
    )
    response = multipart_response(parts, part_type=DICOM, head=head)
    response.headers["Vary"] = _VARY
    return response


def _instance_body(
    instance: Instance, syntax: str, *, study: Study, anonymized: bool
) -> Iterator[bytes]:
    try:
        with storages["dicom"].open(instance.file, "rb") as fp:
            yield from _served_file(
                fp,
                stored_syntax=instance.transfer_syntax,
                syntax=syntax,
                study=study,
                anonymized=anonymized,
            )
    except Exception:
        # The answer has started: a broken stream is the only signal left, never a part that
        # silently lacks its instance.
        logger.exception("WADO-RS retrieve of instance id %s failed while streaming", instance.pk)
        raise


def _served_file(
    fp: IO[bytes], *, stored_syntax: str, syntax: str, study: Study, anonymized: bool
) -> Iterator[bytes]:
    """The Part-10 bytes of a stored file in ``syntax``, de-identified when ``anonymized``."""
    if syntax == stored_syntax and syntax not in NEVER_SERVED:
        if not anonymized:
            yield from _chunks(fp, 0)
            return
        stored = open_stored(fp)
        size = fp.seek(0, io.SEEK_END)
        if stored.pixel_tag is None:
            yield dataset_bytes(deidentify_dataset(stored.dataset, study))
            return
        if stored.element_at is not None and stored.pixel_data_end() == size:
            # The identifying attributes all precede the pixel data: rewrite those and copy
            # the pixel data as stored, so a large image is never held in memory.
            yield dataset_bytes(deidentify_dataset(stored.dataset, study))
            yield from _chunks(fp, stored.element_at)
            return
    fp.seek(0)
    ds = pydicom.dcmread(fp)
    if anonymized:
        deidentify_dataset(ds, study)
    data = dataset_bytes(transcode(ds, syntax))
    del ds
    for start in range(0, len(data), _CHUNK):
        yield data[start : start + _CHUNK]


def _chunks(fp: IO[bytes], start: int) -> Iterator[bytes]:
    fp.seek(start)
    while chunk := fp.read(_CHUNK):
        yield chunk


# --- Metadata ----------------------------------------------------------------------------------


@dicomweb_view("GET")
def metadata(
    request: HttpRequest,
    study_uid: str,
    series_uid: str | None = None,
    instance_uid: str | None = None,
) -> HttpResponseBase:
    """The instances' attributes as DICOM JSON (PS3.18 F.2), binary values behind BulkDataURIs."""
    _check_json_accept(request)
    study, access, instances = _lookup(request, study_uid, series_uid, instance_uid)
    if request.method == "HEAD":
        return HttpResponse(content_type=DICOM_JSON)
    record_retrieve(
        request, study=study, access=access, resource="metadata", instances=len(instances)
    )
    response = StreamingHttpResponse(
        _metadata_stream(instances, study=study, anonymized=access.anonymized),
        content_type=DICOM_JSON,
    )
    response.headers["Vary"] = _VARY
    return response


def _metadata_stream(
    instances: list[Instance], *, study: Study, anonymized: bool
) -> Iterator[bytes]:
    """A JSON array of the instances' datasets, written a batch at a time; each dataset is read
    from its file's header once and kept in the frames cache, by content and recipient."""
    cache = caches["frames"]
    variant = f"anonymized-{pseudonym(study).given_name}" if anonymized else "identified"
    site = hashlib.sha256(settings.SITE_URL.encode()).hexdigest()[:12]
    separator = b"["
    for start in range(0, len(instances), _METADATA_BATCH):
        batch = instances[start : start + _METADATA_BATCH]
        keys = {
            instance.pk: f"dicomweb-metadata:{_METADATA_VERSION}:{instance.sha256}:{variant}:{site}"
            for instance in batch
        }
        cached = cache.get_many(list(keys.values()))
        fresh: dict[str, str] = {}
        for instance in batch:
            text = cached.get(keys[instance.pk])
            if text is None:
                text = json.dumps(
                    _instance_metadata(instance, study=study, anonymized=anonymized),
                    separators=(",", ":"),
                )
                fresh[keys[instance.pk]] = text
            yield separator + text.encode()
            separator = b","
        if fresh:
            cache.set_many(fresh)
    yield b"]" if separator == b"," else b"[]"


def _instance_metadata(instance: Instance, *, study: Study, anonymized: bool) -> JsonDataset:
    base = settings.SITE_URL + reverse(
        "dicomweb:instance",
        kwargs={
            "study_uid": study.study_uid,
            "series_uid": instance.series.series_uid,
            "instance_uid": instance.sop_instance_uid,
        },
    )

    def bulk_uri(path: str) -> str:
        return f"{base}/bulkdata/{path}"

    try:
        with storages["dicom"].open(instance.file, "rb") as fp:
            stored = open_stored(fp)
            ds = stored.dataset
            if anonymized:
                deidentify_dataset(ds, study)
            _settle_vrs(stored)
            attributes = dataset_json(ds, bulk_uri=bulk_uri, little_endian=_little_endian(stored))
    except Exception:
        logger.exception("WADO-RS metadata of instance id %s could not be read", instance.pk)
        raise
    if stored.pixel_tag is not None and not stored.inflated:
        key = f"{stored.pixel_tag:08X}"
        attributes[key] = {"vr": pixel_vr_as_served(stored), "BulkDataURI": bulk_uri(key)}
    # What the frames come as with transfer-syntax=* (cornerstone reads it; PS3.18 keeps the
    # file meta's own Transfer Syntax UID out of DICOM JSON).
    attributes["00083002"] = {"vr": "UI", "Value": [served_syntax(stored.syntax)]}
    return dict(sorted(attributes.items()))


def _settle_vrs(stored: StoredFile) -> None:
    """Give an implicit VR dataset's ambiguous elements ("US or SS") their VR, from its pixel
    description; explicit VR files carry theirs."""
    if stored.syntax == ImplicitVRLittleEndian:
        correct_ambiguous_vr(stored.dataset, True)


def _little_endian(stored: StoredFile) -> bool:
    return stored.syntax != ExplicitVRBigEndian


def dataset_json(
    ds: Dataset, *, bulk_uri: Callable[[str], str], little_endian: bool = True, prefix: str = ""
) -> JsonDataset:
    """``ds`` as DICOM JSON (PS3.18 F.2): binary values in little-endian order, inline when
    short, else (and pixel data always) a BulkDataURI naming the element's tag path."""
    attributes: JsonDataset = {}
    for element in ds:
        tag = element.tag
        if tag.element == 0:
            continue  # group lengths mean nothing once the dataset is JSON
        key = f"{tag:08X}"
        vr = element.VR
        if vr == "SQ":
            items = [
                dataset_json(
                    item,
                    bulk_uri=bulk_uri,
                    little_endian=little_endian,
                    prefix=f"{prefix}{key}/{number}/",
                )
                for number, item in enumerate(element.value, start=1)
            ]
            attributes[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        elif vr in _BULK_VRS:
            value = value_bytes(element, little_endian=little_endian)
            if not value:
                attributes[key] = {"vr": vr}
            elif tag in PIXEL_TAGS or len(value) > BULK_DATA_THRESHOLD:
                attributes[key] = {"vr": vr, "BulkDataURI": bulk_uri(prefix + key)}
            else:
                attributes[key] = {"vr": vr, "InlineBinary": base64.b64encode(value).decode()}
        else:
            attributes[key] = _json_element(element)
    return attributes


def _json_element(element: DataElement) -> JsonAttribute:
    if " or " in element.VR:
        # An ambiguous VR pydicom could not settle from the dataset: its first reading.
        element.VR = element.VR.split(" or ")[0]
    try:
        return element.to_json_dict(None, BULK_DATA_THRESHOLD)
    except (ValueError, TypeError, OverflowError):
        # A malformed number ("1A" for an IS) has no DICOM JSON form, and sent as a string it
        # would break clients' parsers (pydicom's among them): the attribute goes out empty.
        return {"vr": element.VR}


# --- Frames and bulk data ----------------------------------------------------------------------


_FRAMES_OFFERED = gettext_lazy(
    'Frames are served as multipart/related; type="application/octet-stream" (uncompressed), '
    "or in their stored compressed media type (image/jpeg, image/jls, image/jp2, "
    "image/dicom-rle) with that type or transfer-syntax=*."
)


@dicomweb_view("GET", ahead=instance_decision_ahead)
def frames(
    request: HttpRequest, study_uid: str, series_uid: str, instance_uid: str, frame_list: str
) -> HttpResponseBase:
    """Frames of an instance, one part each, in the order asked for."""
    numbers = _frame_numbers(frame_list)
    wanted = _wanted(request, _FRAMES_OFFERED)
    target = instance_target(request, study_uid, series_uid, instance_uid)
    instance = target.instance
    if not instance.has_pixels:
        raise not_found(_("This instance has no frames."))
    beyond = [number for number in numbers if number > instance.frames]
    if beyond:
        raise not_found(
            _("There is no frame %(number)d: the instance has %(count)d.")
            % {"number": beyond[0], "count": instance.frames}
        )
    syntax = _frame_syntax(wanted, instance.transfer_syntax, _FRAMES_OFFERED)
    return _frames_response(request, target, numbers, syntax=syntax, resource="frames")


@dicomweb_view("GET", ahead=instance_decision_ahead)
def bulkdata(
    request: HttpRequest, study_uid: str, series_uid: str, instance_uid: str, tag_path: str
) -> HttpResponseBase:
    """The value of one element (see the module docstring for the path); the pixel data's is
    its frames."""
    path = _tag_path(tag_path)
    if path is None:
        raise not_found(_("No such bulk data."))
    wanted = _wanted(request, _FRAMES_OFFERED)
    if len(path) == 1 and path[0][0] in PIXEL_TAGS:
        target = instance_target(request, study_uid, series_uid, instance_uid)
        if not target.instance.has_pixels:
            raise not_found(_("No such bulk data."))
        syntax = _frame_syntax(wanted, target.instance.transfer_syntax, _FRAMES_OFFERED)
        numbers = list(range(1, target.instance.frames + 1))
        return _frames_response(request, target, numbers, syntax=syntax, resource="bulkdata")
    study, access, instances = _lookup(request, study_uid, series_uid, instance_uid)
    instance = instances[0]
    if not _accepts_octet_stream(wanted):
        raise DicomwebError(
            406, _('Bulk data is served as multipart/related; type="application/octet-stream".')
        )
    value = _element_value(instance, path, study=study, anonymized=access.anonymized)
    if value is None:
        raise not_found(_("No such bulk data."))
    head = request.method == "HEAD"
    if not head:
        record_retrieve(request, study=study, access=access, resource="bulkdata", instances=1)
    part = Part(content_type=_BULK_PART, body=[value])
    response = multipart_response([part], part_type=OCTET_STREAM, stream=False, head=head)
    response.headers["Vary"] = _VARY
    return response


def _element_value(
    instance: Instance, path: list[tuple[int, int]], *, study: Study, anonymized: bool
) -> bytes | None:
    """The little-endian value of the binary element at ``path``, None if there is none."""
    with storages["dicom"].open(instance.file, "rb") as fp:
        stored = open_stored(fp)
    node: Dataset = stored.dataset
    if anonymized:
        deidentify_dataset(node, study)
    _settle_vrs(stored)
    for tag, item in path[:-1]:
        element = node.get(tag)
        if element is None or element.VR != "SQ" or item > len(element.value):
            return None
        node = element.value[item - 1]
    element = node.get(path[-1][0])
    if element is None or element.VR not in _BULK_VRS:
        return None
    return value_bytes(element, little_endian=_little_endian(stored))


def _record_frames(request: HttpRequest, target: InstanceTarget, resource: str) -> None:
    record_frames_retrieved(
        request,
        study_pk=target.study_pk,
        access=target.access,
        series_uid=target.series_uid,
        resource=resource,
    )


def _frames_response(
    request: HttpRequest,
    target: InstanceTarget,
    numbers: list[int],
    *,
    syntax: str,
    resource: str,
) -> HttpResponseBase:
    instance = target.instance
    part_type = pixel_media_type(syntax)
    parts = _frame_parts(instance, numbers, syntax=syntax)
    if request.method == "HEAD":
        response = multipart_response(parts, part_type=part_type, head=True)
    elif len(numbers) == 1:
        # One frame is built before answering: it gets a Content-Length, and a frame that
        # cannot be decoded is an error status rather than a broken body.
        try:
            response = multipart_response(parts, part_type=part_type, stream=False)
        except TranscodeError as error:
            logger.warning("Instance id %s: %s", instance.pk, error)
            raise DicomwebError(
                422, _("This frame cannot be served: %(reason)s") % {"reason": error}
            ) from None
        _record_frames(request, target, resource)
    else:
        _record_frames(request, target, resource)
        response = multipart_response(parts, part_type=part_type)
    response.headers["Vary"] = _VARY
    return response


def _frame_layout_key(instance: FrameSource) -> str:
    # By content: the same file stored twice has the same layout.
    return f"frame-layout:v1:{instance.sha256}"


# A layout never changes for given bytes, so each process also keeps the ones it used last: a
# viewer scrolling a series then asks the shared cache nothing for the frames' places.
_LAYOUTS_KEPT = 4096
_layouts: OrderedDict[str, tuple[int, int]] = OrderedDict()


def _known_layout(key: str) -> tuple[int, int] | None:
    layout = _layouts.get(key)
    if layout is None:
        layout = caches["frames"].get(key)
        if layout is None:
            return None
        _keep_layout(key, layout)
    return layout


def _keep_layout(key: str, layout: tuple[int, int]) -> None:
    _layouts[key] = layout
    if len(_layouts) > _LAYOUTS_KEPT:
        _layouts.popitem(last=False)


def _frame_parts(instance: FrameSource, numbers: Iterable[int], *, syntax: str) -> Iterator[Part]:
    """The frames as parts. Uncompressed frames asked for as Explicit VR Little Endian are read
    straight from the file once their place in it is known (kept in the frames cache by content
    hash): a viewer's next frame then costs a seek and a read, no header parsing."""
    content_type = f"{pixel_media_type(syntax)}; transfer-syntax={syntax}"
    key = _frame_layout_key(instance)
    layout = _known_layout(key) if syntax == EXPLICIT_LE else None
    with storages["dicom"].open(instance.file, "rb") as fp:
        if layout is not None:
            start, length = layout
            for number in numbers:
                fp.seek(start + (number - 1) * length)
                yield Part(content_type=content_type, body=[fp.read(length)])
            return
        stored_frames = StoredFrames(open_stored(fp))
        if syntax == EXPLICIT_LE and (layout := stored_frames.native_layout()) is not None:
            caches["frames"].set(key, layout)
            _keep_layout(key, layout)
        for number in numbers:
            yield Part(content_type=content_type, body=[stored_frames.frame(number - 1, syntax)])
