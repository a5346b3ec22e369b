"""Server-side rendering of single DICOM frames to PNG/JPEG.

This module is deliberately pure: it knows nothing about Django models or the
database, so views, Celery thumbnail tasks and tests can all call it with a
path, an open file or an in-memory :class:`pydicom.Dataset`.

The display pipeline follows DICOM PS3.3 C.11 / PS3.4 N.2 for greyscale images:

    stored values -> Modality LUT (rescale) -> VOI (window or VOI LUT)
    -> polarity (MONOCHROME1 / INVERSE) -> 8-bit grey

Colour images (RGB, YCbCr, PALETTE COLOR) skip the greyscale steps because the
standard does not apply VOI to colour data; they are only brought to 8 bits.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import numbers
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pydicom
from django.utils.translation import gettext_lazy as _
from PIL import Image
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    as_pixel_options,
    get_decoder,
    pixel_array,
)
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from studies.dicom_values import HeaderValues

__all__ = [
    "JPEG_QUALITY",
    "PlainImage",
    "RenderError",
    "Source",
    "Viewport",
    "Window",
    "default_window",
    "frame_count",
    "render_frame",
    "window_presets",
]

Source = str | os.PathLike[str] | IO[bytes] | Dataset

JPEG_QUALITY = 90

# Photometric interpretations whose decoded output pydicom 3 hands back as RGB:
# YBR_FULL / YBR_FULL_422 are converted by pydicom itself (``as_rgb`` defaults to
# True), YBR_ICT / YBR_RCT are undone by the JPEG 2000 codec's inverse MCT.
_RGB_AFTER_DECODE = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
_MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
_IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "gif": "GIF"}
# VOI LUT Function names as DICOMweb's ``window`` parameter spells them (PS3.18 8.3.5.1.4).
_WINDOW_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}
# The largest rendered image a viewport may ask for: a bigger one only burns CPU and memory.
MAX_VIEWPORT = 4096
# The largest table of grey levels computed per stored value (16-bit data needs at most this).
_MAX_LOOKUP_ENTRIES = 2**16
# The three pixel data elements pydicom can decode (Pixel, Float, Double Float), by tag.
_PIXEL_ELEMENTS = {
    (0x7FE0, 0x0010): "PixelData",
    (0x7FE0, 0x0008): "FloatPixelData",
    (0x7FE0, 0x0009): "DoubleFloatPixelData",
}
_PIXEL_KEYWORDS = tuple(_PIXEL_ELEMENTS.values())


class RenderError(Exception):
    """A frame cannot be rendered; the message says why, in words a user understands."""


@dataclass(frozen=True)
class Window:
    """A VOI window (DICOM Window Center / Window Width), in modality units (e.g. HU), and
    optionally the VOI LUT Function to apply it with ("LINEAR", "LINEAR_EXACT", "SIGMOID");
    without one, the image's own VOI LUT Function (default LINEAR) applies."""

    center: float
    width: float
    function: str | None = None

    def __post_init__(self) -> None:
        # Validate here so that every Window in the system is usable: a zero or
        # negative width would divide by zero in the VOI formulas.
        if not (math.isfinite(self.center) and math.isfinite(self.width)):
            raise ValueError("window center and width must be finite numbers")
        if self.width <= 0:
            raise ValueError(f"window width must be greater than 0, got {self.width:g}")
        if self.function is not None and self.function not in _WINDOW_FUNCTIONS.values():
            raise ValueError(f"unknown VOI LUT function {self.function!r}")

    @classmethod
    def parse(cls, text: str) -> Window:
        """Parse ``"center,width[,function]"`` (DICOMweb's ``window`` query parameter), e.g.
        ``"40,400"`` or ``"40,400,sigmoid"``; the function is linear, linear-exact or sigmoid."""
        parts = [part.strip() for part in str(text).split(",")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(
                "window must look like 'center,width[,function]' (e.g. '40,400' or "
                f"'40,400,sigmoid'), got {text!r}"
            )
        try:
            center, width = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"window center and width must be numbers, got {text!r}") from None
        function = None
        if len(parts) == 3:
            function = _WINDOW_FUNCTIONS.get(parts[2].lower())
            if function is None:
                raise ValueError(
                    "window must look like 'center,width[,function]' with the function "
                    f"linear, linear-exact or sigmoid, got {text!r}"
                )
        return cls(center, width, function)


@dataclass(frozen=True)
class Viewport:
    """DICOMweb's ``viewport`` (PS3.18 8.3.5.1.3): the source region (``x``, ``y`` and
    ``region_width`` x ``region_height``, by default the whole image; a negative region width
    or height flips the image) is scaled, keeping its aspect ratio, to the largest size that
    fits in ``width`` x ``height`` pixels."""

    width: int
    height: int
    x: int = 0
    y: int = 0
    region_width: int | None = None
    region_height: int | None = None

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_VIEWPORT:
                raise ValueError(
                    f"the viewport {name} must be between 1 and {MAX_VIEWPORT} pixels, got {value}"
                )
        if self.x < 0 or self.y < 0:
            raise ValueError("the source region's corner (sx, sy) cannot be negative")
        if self.region_width == 0 or self.region_height == 0:
            raise ValueError("the source region's width and height (sw, sh) cannot be 0")

    @classmethod
    def parse(cls, text: str) -> Viewport:
        """Parse ``"vw,vh"`` or ``"vw,vh,sx,sy,sw,sh"`` (sx to sh may be left empty)."""
        parts = [part.strip() for part in str(text).split(",")]
        if len(parts) not in (2, 6) or not (parts[0] and parts[1]):
            raise ValueError(
                f"viewport must look like 'vw,vh' or 'vw,vh,sx,sy,sw,sh' (e.g. '256,256'), "
                f"got {text!r}"
            )
        try:
            # Width and height are there (checked above); the region's values may be left empty.
            width, height = int(parts[0]), int(parts[1])
            region = [int(part) if part else None for part in parts[2:]]
        except ValueError:
            raise ValueError(
                f"viewport values must be whole numbers of pixels, got {text!r}"
            ) from None
        x, y, region_width, region_height = region + [None] * (4 - len(region))
        return cls(width, height, x or 0, y or 0, region_width, region_height)

    def source_box(self, columns: int, rows: int) -> tuple[int, int, int, int]:
        """The source region clipped to a ``columns`` x ``rows`` image, as (left, top, right,
        bottom); ValueError when nothing of the image is left."""
        right = columns if self.region_width is None else self.x + abs(self.region_width)
        bottom = rows if self.region_height is None else self.y + abs(self.region_height)
        box = (self.x, self.y, min(right, columns), min(bottom, rows))
        if box[0] >= box[2] or box[1] >= box[3]:
            raise ValueError(
                f"the source region starting at ({self.x}, {self.y}) lies outside the "
                f"{columns}x{rows} image"
            )
        return box

    def apply(self, image: Image.Image) -> Image.Image:
        """Crop, flip and scale ``image`` as this viewport asks."""
        image = image.crop(self.source_box(image.width, image.height))
        if self.region_width is not None and self.region_width < 0:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.region_height is not None and self.region_height < 0:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        scale = min(self.width / image.width, self.height / image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if size == image.size:
            return image
        return image.resize(size, Image.Resampling.LANCZOS)


# Standard CT windows (centre, width in HU) as commonly used by radiologists.
_CT_PRESETS = (
    (_("Soft tissue"), Window(40, 400)),
    (_("Lung"), Window(-600, 1500)),
    (_("Bone"), Window(300, 1500)),
    (_("Brain"), Window(40, 80)),
    (_("Abdomen"), Window(60, 400)),
    (_("Liver"), Window(30, 150)),
    (_("Mediastinum"), Window(50, 350)),
)


def window_presets(modality: str) -> list[tuple[Any, Window]]:
    """Named window presets for the viewer's dropdown.

    Only CT has presets: Hounsfield units are absolute, so a "lung window" means
    the same on every scanner. MR, US, XA... signal values are arbitrary, so a
    fixed preset would be meaningless and the image's own window is used instead.
    Names are lazy translation strings (evaluate them inside a request).
    """
    if (modality or "").strip().upper() == "CT":
        return list(_CT_PRESETS)
    return []


def frame_count(ds: Dataset | HeaderValues) -> int:
    """Number of frames in ``ds``: NumberOfFrames, or 1 when absent or unusable."""
    try:
        count = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        # Malformed IS values (e.g. "1A") exist in the wild; one frame is the
        # only safe assumption for navigation. Decoding will report the error.
        return 1
    return max(count, 1)


def default_window(ds: Dataset, *, frame: int = 1) -> Window | None:
    """The dataset's own window for ``frame`` (1-based), or None if it has none.

    Enhanced (multi-frame) objects keep the window in the per-frame or shared
    functional groups (Frame VOI LUT Sequence), so those are checked first.
    Multi-valued windows offer alternatives; the first is the primary one.
    """
    source = _functional_group_item(ds, frame - 1, "FrameVOILUTSequence") or ds
    center, width = source.get("WindowCenter"), source.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return None
    try:
        return Window(float(_first(center)), float(_first(width)))
    except (TypeError, ValueError, IndexError):
        return None  # unusable window (e.g. width 0): fall back to other VOI


def render_frame(
    source: Source,
    *,
    frame: int,
    window: Window | None = None,
    image_format: str = "png",
    max_size: int | None = None,
    viewport: Viewport | None = None,
    quality: int = JPEG_QUALITY,
    plain: PlainImage | None = None,
) -> bytes:
    """Render one frame (1-based, DICOMweb numbering) as PNG, JPEG or GIF bytes.

    ``plain``, the :class:`PlainImage` read from a file's header when it was stored, renders
    that file's frames without reading its header again (the same bytes).
    ``window`` overrides the dataset's own VOI (ignored for colour images).
    ``viewport`` crops, flips and scales the image as DICOMweb's ``viewport`` asks.
    ``max_size`` then shrinks the image to fit a ``max_size`` square, keeping aspect
    ratio (thumbnails); it never enlarges. ``quality`` (1-100) applies to JPEG.
    Raises RenderError when the frame cannot be rendered, ValueError for bad arguments.
    """
    pil_format = _IMAGE_FORMATS.get(image_format.lower())
    if pil_format is None:
        raise ValueError(f"image_format must be 'png', 'jpeg' or 'gif', got {image_format!r}")
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be a positive number of pixels, got {max_size}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")

    with _opened(source) as opened:
        if plain is not None and not isinstance(opened, Dataset):
            ds, pixels = plain.display_elements(), plain.frame(opened, frame)
        else:
            ds, pixels = _load_frame(opened, frame)
        # Inside: a large value the header left in the file (a LUT) is read back from it.
        image = Image.fromarray(_to_display(pixels, ds, frame - 1, window))
    if viewport is not None:
        image = viewport.apply(image)
    if max_size is not None:
        image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    return _encode(image, pil_format, quality=quality)


# --------------------------------------------------------------------------- plain images

# The transfer syntaxes whose pixel data is each value's bytes as they are in memory here.
_PLAIN_SYNTAXES = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})
# Everything the display of a greyscale frame reads of its header (_to_display and what it
# calls), once the elements below are absent.
_DISPLAY_KEYWORDS = (
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "PresentationLUTShape",
    "PixelPaddingValue",
)
# Their tags as DICOM JSON names them.
_DISPLAY_TAGS = {keyword: f"{tag_for_keyword(keyword):08X}" for keyword in _DISPLAY_KEYWORDS}
# Elements that make the display read more of the header: such images take the full path.
_BEYOND_PLAIN = (
    "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence",
    "ModalityLUTSequence",
    "VOILUTSequence",
)
# The stored values' NumPy types, by bits allocated and signedness (little endian).
_PLAIN_TYPES = {(8, 0): "u1", (8, 1): "i1", (16, 0): "<u2", (16, 1): "<i2"}
# Changed whenever what PlainImage keeps changes: an older description is then not used.
_PLAIN_VERSION = 1


@dataclass(frozen=True)
class PlainImage:
    """A greyscale image stored uncompressed and little endian, whose display depends on a few
    header elements alone (no LUT sequences, no functional groups): most CT and MR slices.

    Read from the file's header once, when the file is stored, and kept with the instance, it
    renders the file's frames from their pixel bytes alone: the header is not read again for
    each frame a viewer asks (a fifth of a cold CT frame's time). The frame decoded and the
    grey levels are the same as from the header (``render_frame`` without it).
    """

    offset: int  # where the Pixel Data element's value begins in the file
    rows: int
    columns: int
    frames: int
    dtype: str  # the stored values' NumPy type: "<u2", "<i2", "u1" or "i1"
    bits_stored: int
    display: dict[str, Any]  # the header's _DISPLAY_KEYWORDS that it holds, as DICOM JSON

    @classmethod
    def of(
        cls, header: HeaderValues, *, pixel_tag: int, offset: int, length: int
    ) -> PlainImage | None:
        """The plain image ``header`` describes, whose pixel data element (``pixel_tag``) has
        its value of ``length`` bytes at ``offset`` in the file; None when the image is not
        plain (the full path renders it) or its header is inconsistent."""
        try:
            return cls._of(header, pixel_tag=pixel_tag, offset=offset, length=length)
        except Exception:  # a value pydicom cannot convert, whatever its error: not plain
            return None

    @classmethod
    def _of(
        cls, header: HeaderValues, *, pixel_tag: int, offset: int, length: int
    ) -> PlainImage | None:
        if pixel_tag != 0x7FE00010 or _transfer_syntax(header) not in _PLAIN_SYNTAXES:
            return None
        if any(keyword in header for keyword in _BEYOND_PLAIN):
            return None
        if (
            header.get("SamplesPerPixel") != 1
            or str(header.get("PhotometricInterpretation", "")).strip().upper() not in _MONOCHROME
        ):
            return None
        rows, columns = header.get("Rows"), header.get("Columns")
        allocated, stored = header.get("BitsAllocated"), header.get("BitsStored")
        signed = header.get("PixelRepresentation")
        if not all(isinstance(value, int) for value in (rows, columns, allocated, stored, signed)):
            return None
        dtype = _PLAIN_TYPES.get((allocated, signed))
        if dtype is None or not 1 <= stored <= allocated:
            return None
        if rows < 1 or columns < 1 or _linear_rescale(header, 0) is None:
            return None
        frames = frame_count(header)
        if length < rows * columns * frames * allocated // 8:
            return None
        return cls(
            offset=offset,
            rows=rows,
            columns=columns,
            frames=frames,
            dtype=dtype,
            bits_stored=stored,
            display={
                tag: header.json(keyword)
                for keyword, tag in _DISPLAY_TAGS.items()
                if keyword in header
            },
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "version": _PLAIN_VERSION,
            "offset": self.offset,
            "rows": self.rows,
            "columns": self.columns,
            "frames": self.frames,
            "dtype": self.dtype,
            "bits_stored": self.bits_stored,
            "display": self.display,
        }

    @classmethod
    def from_json(cls, value: object) -> PlainImage | None:
        """The image ``as_json`` described; None for nothing, or for what another version of
        this class wrote (the full path then renders the image)."""
        if not isinstance(value, dict) or value.get("version") != _PLAIN_VERSION:
            return None
        if value.get("dtype") not in _PLAIN_TYPES.values():
            return None
        try:
            return cls(
                offset=int(value["offset"]),
                rows=int(value["rows"]),
                columns=int(value["columns"]),
                frames=int(value["frames"]),
                dtype=str(value["dtype"]),
                bits_stored=int(value["bits_stored"]),
                display=dict(value["display"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def display_elements(self) -> Dataset:
        """The header elements the display reads, as a dataset: one per process for the images
        whose elements are the same (a series' slices, most often), so it is read, never
        changed."""
        return _display_dataset(json.dumps(self.display))

    def frame(self, source: IO[bytes], frame: int) -> np.ndarray:
        """Frame ``frame`` (1-based) read from the file, as pydicom decodes it: the stored
        values, with the bits above Bits Stored cleared (or, signed, the sign extended)."""
        _check_frame_number(frame, self.frames)
        dtype = np.dtype(self.dtype)
        size = self.rows * self.columns * dtype.itemsize
        source.seek(self.offset + (frame - 1) * size)
        data = source.read(size)
        if len(data) < size:
            raise RenderError(f"the pixel data cannot be read: it ends before frame {frame}")
        pixels = np.frombuffer(data, dtype=dtype).reshape(self.rows, self.columns)
        unused = 8 * dtype.itemsize - self.bits_stored
        if unused:
            pixels = np.left_shift(pixels, unused)
            np.right_shift(pixels, unused, out=pixels)
        return pixels


@functools.lru_cache(maxsize=256)
def _display_dataset(display: str) -> Dataset:
    # Building it from DICOM JSON took 65 µs, a twentieth of rendering a cold CT frame.
    return Dataset.from_json(display)


# --------------------------------------------------------------------------- loading


@contextlib.contextmanager
def _opened(source: Source) -> Iterator[Dataset | IO[bytes]]:
    """The source as a dataset or an open file: a path is opened once, for the header, the
    frame and any value read back later, rather than by each of them."""
    if isinstance(source, Dataset) or hasattr(source, "read"):
        yield source  # type: ignore[misc]  # a dataset, or a file object (it reads)
        return
    try:
        handle = open(source, "rb")  # noqa: SIM115  # closed below, after rendering
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise RenderError(f"not a readable DICOM Part-10 file: {exc}") from exc
    with handle:
        yield handle


def _load_frame(source: Dataset | IO[bytes], frame: int) -> tuple[Dataset, np.ndarray]:
    """Return (metadata dataset, decoded pixels of the single requested frame)."""
    index = frame - 1
    if isinstance(source, Dataset):
        _check_renderable(source, frame)
        if not any(keyword in source for keyword in _PIXEL_KEYWORDS):
            raise RenderError(
                "the dataset has no pixel data element, so there is nothing to render"
            )
        return source, _decode(source, frame, lambda: pixel_array(source, index=index))

    header = _read_header(source)
    _check_renderable(header, frame)
    if header.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        # The frame-level reader below seeks into the raw file, which is
        # zlib-compressed for this syntax, so read it fully (inflated) instead.
        whole = _rewind_and_read(source)
        return header, _decode(header, frame, lambda: pixel_array(whole, index=index))
    return header, _decode(header, frame, lambda: _frame_after_header(header, source, index))


def _read_header(source: IO[bytes]) -> Dataset:
    """Read everything except the pixel data, leaving the file at the pixel data element.

    The frame is then decoded straight from the file (``_frame_after_header``), so a 1 GB
    cine never sits in memory and the header is parsed once. ``defer_size``
    additionally skips loading large non-pixel values we rarely need (overlays, private
    blobs, ICC profiles); it is safe here because the header never outlives the open file,
    so a deferred LUT can be read back.
    """
    _rewind(source)
    try:
        return pydicom.dcmread(source, stop_before_pixels=True, defer_size="1 KB")
    except FileNotFoundError:
        raise
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as exc:
        raise RenderError(f"not a readable DICOM Part-10 file: {exc}") from exc


def _rewind_and_read(source: IO[bytes]) -> Dataset:
    _rewind(source)
    return pydicom.dcmread(source)


def _rewind(source: IO[bytes]) -> None:
    # dcmread reads from the current position, and the Part-10 stream starts at offset 0
    # whatever a caller read of the file before.
    source.seek(0)


def _check_renderable(ds: Dataset, frame: int) -> None:
    """Fail early, with a clear message, before spending time on decoding."""
    if "Rows" not in ds or "Columns" not in ds:
        sop = ds.get("SOPClassUID")
        what = f"{UID(sop).name} is not an image" if sop else "it has no Rows/Columns"
        raise RenderError(f"the dataset has no pixel data ({what})")
    _check_frame_number(frame, frame_count(ds))
    syntax = _transfer_syntax(ds)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise RenderError(
            f"transfer syntax {syntax} ({syntax.name}) cannot be decoded here: "
            "no decoder exists for it (video and JPIP syntaxes are not supported)"
        ) from None
    if not decoder.is_available:
        # pydicom says it per plugin: "pylibjpeg - requires pylibjpeg and pylibjpeg-openjpeg".
        missing = "; ".join(decoder.missing_dependencies)
        raise RenderError(
            f"transfer syntax {syntax} ({syntax.name}) cannot be decoded here: "
            f"the decoding libraries are not installed ({missing})"
        )


def _check_frame_number(frame: int, count: int) -> None:
    """A RenderError unless ``frame`` is a whole number from 1 to ``count``."""
    is_integer = isinstance(frame, numbers.Integral) and not isinstance(frame, bool)
    if not is_integer or not 1 <= frame <= count:
        raise RenderError(f"frame {frame} is out of range: the image has {count} frame(s)")


def _transfer_syntax(ds: Dataset | HeaderValues) -> UID:
    # Asked a few times a frame: no empty Dataset made to stand for missing file meta, and the
    # UID pydicom read is not made again.
    file_meta = getattr(ds, "file_meta", None)
    syntax = None if file_meta is None else file_meta.get("TransferSyntaxUID")
    if not syntax:
        raise RenderError(
            "the dataset has no Transfer Syntax UID (missing File Meta Information), "
            "so its pixel data cannot be interpreted"
        )
    return syntax if isinstance(syntax, UID) else UID(syntax)


def _frame_after_header(header: Dataset, source: IO[bytes], index: int) -> np.ndarray:
    """Decode frame ``index`` (0-based) from the file ``_read_header`` left at the pixel data
    element, described by the header it read: what ``pixel_array(file, index=...)`` does,
    without parsing the header a second time."""
    at_pixels = source.tell()
    syntax = _transfer_syntax(header)
    # Reading the header's values may read a deferred one (an extended offset table) back
    # from the file, so come back to the pixel data element afterwards.
    options = as_pixel_options(header, transfer_syntax_uid=syntax)
    source.seek(at_pixels)
    options.update(_pixel_element(source, syntax))
    # pydicom annotates the file as BinaryIO, yet reads it, as dcmread does, through read,
    # seek and tell alone, which a storage file has.
    frame: np.ndarray = get_decoder(syntax).as_array(
        source,  # type: ignore[arg-type]
        index=index,
        validate=True,
        **options,
    )[0]
    return frame


def _pixel_element(source: IO[bytes], syntax: UID) -> dict[str, str]:
    """Read the pixel data element's tag, VR and length, leaving the file at its value. Like
    pydicom's own frame reader, read it as the transfer syntax says it is encoded."""
    byte_order = "<" if syntax.is_little_endian else ">"
    start = source.read(8)
    if len(start) < 8:
        raise AttributeError("the file ends before its pixel data element")
    options = {}
    if syntax.is_implicit_VR:
        group, element, _length = struct.unpack(f"{byte_order}HHL", start)
    else:
        # Pixel data VRs (OB, OW, OF, OD) have two reserved bytes, then a 4-byte length.
        group, element, vr, _reserved = struct.unpack(f"{byte_order}HH2sH", start)
        options["pixel_vr"] = vr.decode("ascii", "replace")
        source.read(4)
    keyword = _PIXEL_ELEMENTS.get((group, element))
    if keyword is None:
        raise AttributeError(f"({group:04X},{element:04X}) is not a pixel data element")
    return {"pixel_keyword": keyword, **options}


def _decode(header: Dataset, frame: int, decode: Callable[[], np.ndarray]) -> np.ndarray:
    """``decode()``'s frame (it decodes that frame alone), or a RenderError saying why not."""
    try:
        return decode()
    except (AttributeError, KeyError) as exc:
        raise RenderError(f"the pixel data cannot be read: {exc}") from exc
    except Exception as exc:  # decoders raise RuntimeError/ValueError/codec errors alike
        syntax = _transfer_syntax(header)  # checked before decoding: it is there
        raise RenderError(
            f"frame {frame} could not be decoded (transfer syntax {syntax}, {syntax.name}): "
            f"{str(exc).strip()}"
        ) from exc


# --------------------------------------------------------------------------- display


def _to_display(pixels: np.ndarray, ds: Dataset, index: int, window: Window | None) -> np.ndarray:
    """Turn a decoded frame into a uint8 (rows, cols) or (rows, cols, 3) array."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples == 1 and photometric == "PALETTE COLOR":
        return _palette_to_rgb(pixels, ds)
    if samples == 3:
        if photometric not in _RGB_AFTER_DECODE:
            raise RenderError(f"photometric interpretation {photometric} is not supported")
        return _colour_to_8bit(pixels, ds)
    if samples != 1:
        raise RenderError(f"images with {samples} samples per pixel are not supported")
    if photometric not in _MONOCHROME:
        raise RenderError(f"photometric interpretation {photometric} is not supported")
    return _greyscale(pixels, ds, index, window, invert=_is_inverted(ds, photometric))


def _greyscale(
    pixels: np.ndarray, ds: Dataset, index: int, window: Window | None, *, invert: bool
) -> np.ndarray:
    chosen = window or default_window(ds, frame=index + 1)
    if chosen is None and not ds.get("VOILUTSequence"):
        # The window is the frame's own range of values: every pixel takes part.
        return _grey_levels(pixels, ds, index, None, invert=invert)
    if pixels.dtype.kind in "iu" and pixels.size:
        if chosen is not None and pixels.dtype.itemsize <= 2:
            table = _grey_table(pixels.dtype, ds, index, chosen, invert=invert)
            if table is not None:
                # Indexed by the bits of each pixel read as unsigned (the table says which
                # value they stand for), in the pixels' own byte order.
                by_bits = pixels.view(pixels.dtype.str.replace("i", "u"))
                every_pixel: np.ndarray = table.take(by_bits)
                return every_pixel
        # Each grey level depends on the stored value alone, so compute it once per value the
        # frame holds (a table of at most 65,536 entries) and look the pixels up: a quarter
        # of the time of computing every pixel in floating point, with the same bytes.
        low, high = int(pixels.min()), int(pixels.max())
        if high - low < min(pixels.size, _MAX_LOOKUP_ENTRIES):
            every_value = np.arange(low, high + 1, dtype=np.int64)
            levels = _grey_levels(every_value, ds, index, chosen, invert=invert)
            looked_up: np.ndarray = levels.take(_distances_from(pixels, low))
            return looked_up
    return _grey_levels(pixels, ds, index, chosen, invert=invert)


@dataclass(frozen=True)
class _WindowedGrey:
    """Everything the grey level of a stored value depends on when the modality LUT is a linear
    rescale and the VOI a window (a CT's, most MR's): the stored values' type, the rescale, the
    window with its VOI LUT function, and the polarity."""

    dtype: str
    slope: float
    intercept: float
    center: float
    width: float
    function: str
    invert: bool

    def table(self) -> np.ndarray:
        """The grey level of every value the stored type holds, by the value's bits read as an
        unsigned integer: 256 entries for 8-bit data, 65,536 for 16-bit."""
        dtype = np.dtype(self.dtype)
        every_bits = np.arange(2 ** (8 * dtype.itemsize), dtype=f"u{dtype.itemsize}")
        every_value = every_bits.view(dtype.newbyteorder("="))
        values = _rescaled(every_value, self.slope, self.intercept)
        window = Window(self.center, self.width)
        return _to_grey(_apply_window(values, window, self.function), invert=self.invert)


class _GreyTables:
    """Tables of grey levels (``_WindowedGrey.table``) kept in this process for the frames that
    follow: a series' slices mostly share their rescale and window, so a viewer walking through
    one looks each slice's pixels up in a table built once rather than computing one per slice
    over the slice's values. A table of 16-bit data (0.5 ms) costs more than a CT slice's own
    range of values, so it is built the second time its mapping is asked for: a series whose
    every slice has its own window (some MR) is computed slice by slice, as it was before."""

    def __init__(self, *, kept: int, remembered: int) -> None:
        self._tables: OrderedDict[_WindowedGrey, np.ndarray] = OrderedDict()
        self._asked_once: OrderedDict[_WindowedGrey, None] = OrderedDict()
        self._kept, self._remembered = kept, remembered
        # Django's development server and threaded workers render concurrently.
        self._lock = threading.Lock()

    def get(self, mapping: _WindowedGrey) -> np.ndarray | None:
        """The table of ``mapping``, or None the first time it is asked for."""
        with self._lock:
            table = self._tables.get(mapping)
            if table is not None:
                self._tables.move_to_end(mapping)
                return table
            if mapping not in self._asked_once:
                self._asked_once[mapping] = None
                if len(self._asked_once) > self._remembered:
                    self._asked_once.popitem(last=False)
                return None
        table = mapping.table()
        table.flags.writeable = False  # shared by every frame that looks pixels up in it
        with self._lock:
            self._asked_once.pop(mapping, None)
            self._tables[mapping] = table
            if len(self._tables) > self._kept:
                self._tables.popitem(last=False)
        return table


# 32 tables of 64 KB: the windows of the series a few viewers are walking through.
_grey_tables = _GreyTables(kept=32, remembered=256)


def _grey_table(
    dtype: np.dtype, ds: Dataset, index: int, window: Window, *, invert: bool
) -> np.ndarray | None:
    """The kept table of grey levels of every value of ``dtype`` for this frame's rescale and
    ``window``; None when the modality LUT is not a rescale (a Modality LUT Sequence) or the
    table is not kept yet."""
    rescale = _linear_rescale(ds, index)
    if rescale is None:
        return None
    mapping = _WindowedGrey(
        dtype=dtype.str,
        slope=rescale[0],
        intercept=rescale[1],
        center=window.center,
        width=window.width,
        function=window.function or _voi_function(ds, index),
        invert=invert,
    )
    return _grey_tables.get(mapping)


def _distances_from(pixels: np.ndarray, low: int) -> np.ndarray:
    """Each pixel's distance from ``low``, the smallest of them, as unsigned integers as wide as
    the pixels (for 16-bit data a quarter of the memory of platform-sized ones, which ``take``
    gathers by in two thirds of the time). Subtracting in the pixels' own type wraps around
    where a distance passes its signed range; the unsigned reading of those bits is the
    distance, since two values of n bits are less than 2**n apart."""
    distances: np.ndarray = np.subtract(pixels, pixels.dtype.type(low))
    unsigned: np.ndarray = distances.view(np.dtype(f"u{distances.dtype.itemsize}"))
    return unsigned


def _grey_levels(
    pixels: np.ndarray, ds: Dataset, index: int, window: Window | None, *, invert: bool
) -> np.ndarray:
    """Stored values -> 8-bit grey, value by value: the modality LUT, then ``window`` (else the
    VOI LUT sequence, else the values' own range), then the polarity."""
    values = _modality_lut(pixels, ds, index)
    if window is not None:
        unit = _apply_window(values, window, window.function or _voi_function(ds, index))
    elif ds.get("VOILUTSequence"):
        unit = _apply_voi_lut_sequence(values, ds)
    else:
        unit = _apply_window(values, _data_window(values, pixels, ds), "LINEAR_EXACT")
    return _to_grey(unit, invert=invert)


def _to_grey(unit: np.ndarray, *, invert: bool) -> np.ndarray:
    """Values in [0, 1] -> 8-bit grey, black to white, or white to black when ``invert``."""
    if invert:
        unit = 1.0 - unit
    grey: np.ndarray = np.rint(unit * 255.0).astype(np.uint8)
    return grey


def _is_inverted(ds: Dataset, photometric: str) -> bool:
    # MONOCHROME1 means "minimum is white". A Presentation LUT Shape of INVERSE
    # says the same thing (and is mandated for MONOCHROME1), so it must not
    # invert a second time.
    return photometric == "MONOCHROME1" or ds.get("PresentationLUTShape") == "INVERSE"


def _modality_lut(pixels: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    """Stored values -> modality values (e.g. HU) as float64."""
    rescale = _linear_rescale(ds, index)
    if rescale is None:
        return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    return _rescaled(pixels, *rescale)


def _linear_rescale(ds: Dataset | HeaderValues, index: int) -> tuple[float, float] | None:
    """The frame's modality LUT as (slope, intercept), (1, 0) when it has none; None when it is
    a Modality LUT Sequence, or a rescale pydicom is left to refuse. Which one applies is
    pydicom's ``apply_modality_lut``'s choice."""
    # Enhanced CT/MR/PET keep Rescale Slope/Intercept in functional groups,
    # possibly different per frame; the top-level ones don't exist there.
    item = _functional_group_item(ds, index, "PixelValueTransformationSequence")
    if item is not None and "RescaleSlope" in item and "RescaleIntercept" in item:
        return float(item.RescaleSlope), float(item.RescaleIntercept)
    if ds.get("ModalityLUTSequence"):
        return None
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        try:
            return float(ds.get("RescaleSlope")), float(ds.get("RescaleIntercept"))
        except (TypeError, ValueError):
            return None
    return 1.0, 0.0


def _rescaled(pixels: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    values = pixels.astype(np.float64)
    if (slope, intercept) == (1.0, 0.0):
        return values  # x * 1.0 + 0.0 is x for every stored value: skip two passes
    # Two steps, as apply_modality_lut does them: the same values, bit for bit.
    values *= slope
    values += intercept
    return values


def _voi_function(ds: Dataset, index: int) -> str:
    item = _functional_group_item(ds, index, "FrameVOILUTSequence") or ds
    return str(item.get("VOILUTFunction") or "LINEAR").strip().upper()


def _apply_window(values: np.ndarray, window: Window, function: str) -> np.ndarray:
    """VOI window -> float64 in [0, 1], per PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT, SIGMOID)."""
    center, width = window.center, window.width
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    # LINEAR (the default) is defined with the odd "-0.5" and "width-1" terms
    # so that integer data maps exactly as the standard's reference viewers do.
    if width <= 1:
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _apply_voi_lut_sequence(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Apply the first VOI LUT and scale its output range to [0, 1]."""
    mapped = apply_voi(np.rint(values).astype(np.int64), ds).astype(np.float64)
    # LUT output bit depth is often declared as 16 while only 12 bits are used,
    # so normalise to the LUT's actual output range rather than 2**bits - 1.
    entries, first_mapped = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor[:2])
    every_input = np.arange(first_mapped, first_mapped + (entries or 2**16))
    lut = apply_voi(every_input, ds).astype(np.float64)
    low, high = float(lut.min()), float(lut.max())
    if high <= low:
        return np.zeros_like(mapped)
    return np.clip((mapped - low) / (high - low), 0.0, 1.0)


def _data_window(values: np.ndarray, pixels: np.ndarray, ds: Dataset) -> Window:
    """Min/max window of this frame, ignoring Pixel Padding Value (the area outside a CT's FOV)."""
    considered = values
    padding = ds.get("PixelPaddingValue")
    if isinstance(padding, int):
        kept = values[pixels != padding]
        considered = kept if kept.size else values
    finite = considered[np.isfinite(considered)]
    if finite.size == 0:
        return Window(0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    # A constant image gets a unit-wide window so it renders (black) rather than fails.
    return Window((low + high) / 2.0, max(high - low, 1e-6))


def _colour_to_8bit(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """RGB with 8/16/32 bits per sample -> uint8, scaling by Bits Stored."""
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    bits = int(ds.get("BitsStored") or pixels.dtype.itemsize * 8)
    scale = 255.0 / float(2**bits - 1)
    return np.rint(np.clip(pixels.astype(np.float64) * scale, 0, 255)).astype(np.uint8)


def _palette_to_rgb(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    try:
        rgb = apply_color_lut(pixels, ds)
    except (AttributeError, ValueError, KeyError) as exc:
        raise RenderError(f"the palette colour lookup table is unusable: {exc}") from exc
    rgb = rgb[..., :3]  # drop an alpha palette if present
    if rgb.dtype == np.uint16:
        # 16-bit palette entries: keep the most significant byte.
        rgb = (rgb >> 8).astype(np.uint8)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _encode(image: Image.Image, pil_format: str, *, quality: int) -> bytes:
    buffer = io.BytesIO()
    if pil_format == "JPEG":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format=pil_format)
    return buffer.getvalue()


# --------------------------------------------------------------------------- helpers


def _functional_group_item(ds: Dataset | HeaderValues, index: int, keyword: str) -> Dataset | None:
    """First item of ``keyword`` in the per-frame, else shared, functional groups."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    groups = []
    if per_frame is not None and 0 <= index < len(per_frame):
        groups.append(per_frame[index])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        sequence = group.get(keyword)
        if sequence:
            item: Dataset = sequence[0]
            return item
    return None


def _first(value: Any) -> Any:
    """First value of a possibly multi-valued element (Window Center can hold alternatives)."""
    if isinstance(value, str | bytes):
        return value
    try:
        return value[0]
    except TypeError:
        return value
