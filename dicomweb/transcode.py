"""Stored DICOM in the transfer syntax a WADO-RS client asked for: whole datasets and single
frames, and the media types of compressed pixel data (PS3.18 8.7.3).

What can be produced from a stored file:

- as stored, except Implicit VR Little Endian, Explicit VR Big Endian and Deflated Explicit VR
  Little Endian, which PS3.18 forbids on the web: those are always served as Explicit VR Little
  Endian, even to a client that asked for the stored syntax (``transfer-syntax=*``);
- Explicit VR Little Endian (uncompressed) whenever pydicom can decode the stored pixel data;
- a lossless compressed syntax (RLE, JPEG 2000 lossless, JPEG-LS lossless) for whole datasets
  when pydicom has an encoder for it here. Nothing is ever compressed lossily on the server's
  initiative, so the lossy syntaxes are served only to files stored in them.

Converted datasets keep their SOP Instance UID: the client asked for that instance. A decoded
colour image comes out as RGB, pixel-interleaved (as pydicom's ``decompress`` writes it), and a
frame served uncompressed is laid out as that decompressed dataset would hold it.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import IO

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.encaps import get_frame
from pydicom.pixels import get_decoder, get_encoder, pack_bits, pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from studies.rendering import frame_count

EXPLICIT_LE = str(ExplicitVRLittleEndian)
NEVER_SERVED = frozenset(
    {str(ImplicitVRLittleEndian), str(ExplicitVRBigEndian), str(DeflatedExplicitVRLittleEndian)}
)
# Compressed syntaxes the server may produce from any decodable pixel data: lossless only.
_ENCODE_TARGETS = (str(RLELossless), str(JPEG2000Lossless), str(JPEGLSLossless))

OCTET_STREAM = "application/octet-stream"
# PS3.18 Table 8.7.3-5: the media type of each compressed syntax's frames.
_PIXEL_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.100": "video/mpeg",
    "1.2.840.10008.1.2.4.101": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
}
# Older names clients still send (dicomweb-client, cornerstone).
_MEDIA_TYPE_ALIASES = {"image/x-dicom-rle": "image/dicom-rle", "image/x-jls": "image/jls"}
# The syntax a media type stands for when the request names none (PS3.18 Table 8.7.3-5).
_DEFAULT_SYNTAX = {
    OCTET_STREAM: EXPLICIT_LE,
    "application/dicom": EXPLICIT_LE,
    "image/jpeg": "1.2.840.10008.1.2.4.50",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
    "image/jphc": "1.2.840.10008.1.2.4.201",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
}
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
# Bytes per value of the binary VRs whose values have a byte order.
_WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_ITEM_HEADER = struct.Struct("<HHI")
_UNDEFINED_LENGTH = 0xFFFFFFFF


class TranscodeError(Exception):
    """A stored file cannot be turned into the syntax asked for; the message says why."""


# --- Syntaxes and media types ------------------------------------------------------------------


def syntax_name(syntax: str) -> str:
    name = UID(syntax).name
    return name if name and name != syntax else syntax


def is_compressed(syntax: str) -> bool:
    uid = UID(syntax)
    return uid.is_transfer_syntax and uid.is_compressed


def served_syntax(stored: str) -> str:
    """The syntax "as stored" (``transfer-syntax=*``) means for a file stored in ``stored``."""
    return EXPLICIT_LE if stored in NEVER_SERVED or not stored else stored


def pixel_media_type(syntax: str) -> str:
    """The media type of frames or pixel bulk data in ``syntax``."""
    return _PIXEL_MEDIA_TYPES.get(syntax, OCTET_STREAM)


def normalize_media_type(media_type: str) -> str:
    media_type = media_type.strip().lower()
    return _MEDIA_TYPE_ALIASES.get(media_type, media_type)


def default_syntax(media_type: str) -> str | None:
    """The syntax a part media type means without a ``transfer-syntax`` parameter."""
    return _DEFAULT_SYNTAX.get(normalize_media_type(media_type))


def can_decode(syntax: str) -> bool:
    try:
        return get_decoder(UID(syntax)).is_available
    except NotImplementedError:
        return False


def can_encode(syntax: str) -> bool:
    if syntax not in _ENCODE_TARGETS:
        return False
    try:
        return get_encoder(UID(syntax)).is_available
    except NotImplementedError:
        return False


def dataset_unavailable_reason(*, stored: str, target: str, has_pixels: bool) -> str | None:
    """Why a file stored in ``stored`` cannot be served whole in ``target``, or None if it can."""
    stored = served_syntax(stored)
    if target in NEVER_SERVED:
        return f"{syntax_name(target)} is never served on the web (PS3.18); ask for {EXPLICIT_LE}"
    if not UID(target).is_transfer_syntax:
        return f"{target} is not a DICOM transfer syntax"
    if target == stored or not has_pixels:
        # Without pixel data the syntax only names how the attributes are encoded, which is
        # Explicit VR Little Endian for every syntax the web allows.
        return None
    if is_compressed(stored) and not can_decode(stored):
        return f"pixel data stored as {syntax_name(stored)} cannot be decoded here"
    if target == EXPLICIT_LE or can_encode(target):
        return None
    return f"this server does not compress pixel data as {syntax_name(target)}"


def frame_unavailable_reason(*, stored: str, target: str) -> str | None:
    """Why frames stored in ``stored`` cannot be served in ``target``, or None if they can:
    frames are served as stored, or uncompressed."""
    if target == served_syntax(stored):
        return None
    if target == EXPLICIT_LE:
        if can_decode(stored):
            return None
        return f"pixel data stored as {syntax_name(stored)} cannot be decoded here"
    return (
        f"frames are served as stored ({syntax_name(served_syntax(stored))}) or uncompressed "
        f"({EXPLICIT_LE}), not as {syntax_name(target)}"
    )


# --- Whole datasets ----------------------------------------------------------------------------


def transcode(ds: Dataset, target: str) -> Dataset:
    """Re-encode ``ds`` (read whole, with its file meta) in ``target``, in place; see
    :func:`dataset_unavailable_reason` for what is possible. Raises TranscodeError."""
    current = str(ds.file_meta.TransferSyntaxUID)
    if current == target and current not in NEVER_SERVED:
        return ds
    has_pixels = any(tag in ds for tag in PIXEL_TAGS)
    try:
        if has_pixels and is_compressed(current):
            ds.decompress(generate_instance_uid=False)
        elif current == ExplicitVRBigEndian:
            _to_little_endian(ds)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        if target != EXPLICIT_LE:
            if has_pixels:
                ds.compress(UID(target), generate_instance_uid=False)
            else:
                ds.file_meta.TransferSyntaxUID = UID(target)
    except TranscodeError:
        raise
    except Exception as error:  # codecs raise RuntimeError, ValueError, their own errors alike
        raise TranscodeError(
            f"{syntax_name(current)} could not be converted to {syntax_name(target)}: {error}"
        ) from error
    return ds


def dataset_bytes(ds: Dataset) -> bytes:
    """``ds`` as a DICOM Part-10 file, in the syntax its file meta names."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _to_little_endian(ds: Dataset) -> None:
    """Byte-swap every value of a dataset read as Explicit VR Big Endian, so it can be written
    little endian (pydicom converts the numbers it parsed, not the binary values)."""
    pixels = None
    if any(tag in ds for tag in PIXEL_TAGS):
        pixels = _little_endian_pixels(pixel_array(ds, raw=True), ds, planar=_stored_planar(ds))

    def swap(dataset: Dataset, element: DataElement) -> None:
        size = _WORD_SIZES.get(element.VR)
        if size and element.tag not in PIXEL_TAGS and element.value:
            element.value = _swapped(element.value, size)

    ds.walk(swap)
    if pixels is not None:
        for tag in PIXEL_TAGS:
            if tag in ds:
                ds[tag].value = pixels
        if str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
            ds.PhotometricInterpretation = "YBR_FULL"  # pydicom hands back every sample
    ds.set_original_encoding(False, True)


def _swapped(value: bytes, size: int) -> bytes:
    usable = len(value) - len(value) % size
    words = np.frombuffer(value, dtype=f">u{size}", count=usable // size)
    return words.astype(f"<u{size}").tobytes() + bytes(value[usable:])


def _little_endian_pixels(array: np.ndarray, ds: Dataset, *, planar: bool = False) -> bytes:
    """Decoded pixels as native little-endian Pixel Data: bit-packed for 1-bit images, colour
    planes one after the other when ``planar`` (pydicom always hands back interleaved samples)."""
    if int(ds.get("BitsAllocated", 8)) == 1:
        return pack_bits(array, pad=False)
    if planar and int(ds.get("SamplesPerPixel", 1)) > 1:
        array = np.moveaxis(array, -1, -3)
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _stored_planar(ds: Dataset) -> bool:
    return int(ds.get("SamplesPerPixel", 1)) > 1 and int(ds.get("PlanarConfiguration", 0)) == 1


# --- Elements ----------------------------------------------------------------------------------


def value_bytes(element: DataElement, *, little_endian: bool) -> bytes:
    """A binary element's value as little-endian bytes (bulk data is always little endian)."""
    value = element.value or b""
    if isinstance(value, str):
        value = value.encode()
    value = bytes(value)
    size = _WORD_SIZES.get(element.VR)
    if not little_endian and size:
        return _swapped(value, size)
    return value


# --- Stored files and their frames ------------------------------------------------------------


@dataclass
class StoredFile:
    """A stored DICOM file opened for serving: the attributes before its pixel data, and where
    the pixel data lies, found without reading it. ``fp`` must stay open while in use."""

    fp: IO[bytes]
    dataset: Dataset  # everything before the pixel data; the whole dataset when deflated
    syntax: str
    pixel_tag: int | None = None
    pixel_vr: str | None = None
    element_at: int | None = None  # file offset of the pixel data element
    value_at: int | None = None  # file offset of the pixel data's value
    value_length: int | None = None  # None: undefined (encapsulated)

    @property
    def inflated(self) -> bool:
        return self.syntax == DeflatedExplicitVRLittleEndian

    def pixel_data_end(self) -> int | None:
        """The file offset just after the pixel data element (None when deflated or absent)."""
        if self.value_at is None:
            return None
        if self.value_length is not None:
            return self.value_at + self.value_length
        position = self.value_at
        while True:
            self.fp.seek(position)
            header = self.fp.read(8)
            if len(header) < 8:
                return None
            group, element, length = _ITEM_HEADER.unpack(header)
            position += 8
            if (group, element) == (0xFFFE, 0xE0DD):
                return position
            if (group, element) != (0xFFFE, 0xE000) or length == _UNDEFINED_LENGTH:
                return None
            position += length


def open_stored(fp: IO[bytes]) -> StoredFile:
    """Read a stored file's attributes up to its pixel data (all of it when deflated)."""
    fp.seek(0)
    dataset = pydicom.dcmread(fp, stop_before_pixels=True)
    syntax = str(dataset.file_meta.TransferSyntaxUID)
    stored = StoredFile(fp=fp, dataset=dataset, syntax=syntax)
    if stored.inflated:
        # Positions in a deflated file mean nothing: inflate it whole (such files are small).
        fp.seek(0)
        stored.dataset = pydicom.dcmread(fp)
        for tag in PIXEL_TAGS:
            if tag in stored.dataset:
                stored.pixel_tag, stored.pixel_vr = tag, stored.dataset[tag].VR
        return stored
    # pydicom leaves the file at the pixel data element it stopped before.
    at = fp.tell()
    header = fp.read(12)
    if len(header) < 8:
        return stored
    big = syntax == ExplicitVRBigEndian
    group, element = struct.unpack(">HH" if big else "<HH", header[:4])
    tag = group << 16 | element
    if tag not in PIXEL_TAGS:
        return stored
    stored.pixel_tag = tag
    stored.element_at = at
    if syntax == ImplicitVRLittleEndian:
        (length,) = struct.unpack("<I", header[4:8])
        stored.pixel_vr = _implicit_pixel_vr(tag, dataset)
        stored.value_at = at + 8
    else:
        (length,) = struct.unpack(">I" if big else "<I", header[8:12])
        stored.pixel_vr = header[4:6].decode("ascii", "replace")
        stored.value_at = at + 12
    stored.value_length = None if length == _UNDEFINED_LENGTH else length
    return stored


def _implicit_pixel_vr(tag: int, dataset: Dataset) -> str:
    if tag == 0x7FE00008:
        return "OF"
    if tag == 0x7FE00009:
        return "OD"
    return "OW" if int(dataset.get("BitsAllocated", 16)) > 8 else "OB"


def pixel_vr_as_served(stored: StoredFile) -> str | None:
    """The pixel data's VR once served (encapsulated data is OB; see PS3.5 A.4)."""
    if stored.pixel_tag is None:
        return None
    if stored.pixel_tag == 0x7FE00010 and is_compressed(stored.syntax):
        return "OB"
    return stored.pixel_vr


class StoredFrames:
    """The frames of one stored file, read one at a time: as stored (compressed bytes, or the
    uncompressed bytes in little-endian order), or decoded."""

    def __init__(self, stored: StoredFile):
        self._stored = stored
        self._fp = stored.fp
        self.header = stored.dataset
        self.syntax = stored.syntax
        self.count = frame_count(self.header)

    @property
    def has_pixels(self) -> bool:
        return self._stored.pixel_tag is not None

    def frame(self, index: int, syntax: str) -> bytes:
        """Frame ``index`` (0-based) in ``syntax``: the stored syntax (as served) or Explicit VR
        Little Endian (see :func:`frame_unavailable_reason`)."""
        if not 0 <= index < self.count or not self.has_pixels:
            raise TranscodeError(f"frame {index + 1} does not exist")
        try:
            if syntax == served_syntax(self.syntax) and is_compressed(self.syntax):
                self._fp.seek(self._value_at())
                return get_frame(
                    self._fp,
                    index,
                    number_of_frames=self.count,
                    extended_offsets=self._extended_offsets(),
                )
            if syntax == EXPLICIT_LE:
                return self._uncompressed(index)
        except Exception as error:
            raise TranscodeError(
                f"frame {index + 1} could not be read from {syntax_name(self.syntax)} "
                f"pixel data: {error}"
            ) from error
        raise TranscodeError(f"frames cannot be served as {syntax_name(syntax)}")

    def _uncompressed(self, index: int) -> bytes:
        if is_compressed(self.syntax):
            self._fp.seek(0)
            # Decoded as pydicom's decompress() would, so frames agree with the dataset
            # retrieved uncompressed (colour as interleaved RGB).
            # pydicom annotates pixel_array's file as BinaryIO, yet reads it, as dcmread does,
            # through read, seek and tell alone (its ReadableBuffer), which a storage file has.
            pixels = pixel_array(self._fp, index=index)  # type: ignore[arg-type]
            return _little_endian_pixels(pixels, self.header)
        length = self._native_frame_length()
        source: Dataset | IO[bytes]
        if self._stored.inflated:
            source = self.header
            if length is not None and self._stored.pixel_tag is not None:
                start = index * length
                return bytes(self.header[self._stored.pixel_tag].value[start : start + length])
        else:
            source = self._fp
            if self.syntax != ExplicitVRBigEndian and length is not None:
                self._fp.seek(self._value_at() + index * length)
                return self._fp.read(length)
            self._fp.seek(0)
        planar = _stored_planar(self.header)
        # BinaryIO in pydicom's annotation, a ReadableBuffer in fact (see above).
        pixels = pixel_array(source, index=index, raw=True)  # type: ignore[arg-type]
        return _little_endian_pixels(pixels, self.header, planar=planar)

    def native_layout(self) -> tuple[int, int] | None:
        """Where the frames lie in the file when they can be read straight from it as Explicit
        VR Little Endian (uncompressed little endian, not deflated, whole bytes per frame): the
        first frame's offset and the bytes per frame. None otherwise."""
        if (
            not self.has_pixels
            or is_compressed(self.syntax)
            or self._stored.inflated
            or self.syntax == ExplicitVRBigEndian
        ):
            return None
        length = self._native_frame_length()
        if length is None:
            return None
        return self._value_at(), length

    def _value_at(self) -> int:
        """Where the pixel data's value starts in the file, which :func:`open_stored` finds for
        every file with pixel data that is not deflated."""
        if self._stored.value_at is None:
            raise TranscodeError("the pixel data was not found in the file")
        return self._stored.value_at

    def _native_frame_length(self) -> int | None:
        """Bytes per uncompressed frame, or None when frames do not start on a byte (1-bit
        images whose frames are not a multiple of 8 pixels)."""
        header = self.header
        samples = int(header.get("SamplesPerPixel") or 1)
        if str(header.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
            samples = 2  # chroma shared by each pair of pixels: two values per pixel
        bits = int(header.Rows) * int(header.Columns) * samples
        bits *= int(header.get("BitsAllocated") or 8)
        return bits // 8 if bits % 8 == 0 else None

    def _extended_offsets(self) -> tuple[bytes, bytes] | None:
        offsets = self.header.get("ExtendedOffsetTable")
        lengths = self.header.get("ExtendedOffsetTableLengths")
        if offsets and lengths:
            return bytes(offsets), bytes(lengths)
        return None
