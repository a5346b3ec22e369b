"""Synthetic but realistic DICOM data for demos and tests.

Real patient images can't be committed to an open-source repository, yet the
portal needs studies that look and behave like the real thing: several slices
that change as you scroll, CT values in Hounsfield units, proper UIDs, UTF-8
names. Everything here is generated with pydicom and numpy and is fully
deterministic (same arguments -> byte-identical files and UIDs), so demo data
can be regenerated and tests can rely on exact values. No Django, no database.

The phantoms are simple ellipses painted in order (body, fat, lungs, heart,
spine...), whose sizes vary with slice position, plus mild seeded noise.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

__all__ = [
    "BUNDLED_RENDERABLE",
    "BUNDLED_UNDECODABLE",
    "bundled_test_file",
    "make_multiframe",
    "make_series",
    "to_bytes",
]

# --------------------------------------------------------------------------- tissues

# Tissue labels painted into a label map, later turned into CT HU or MR signal.
AIR, LUNG, FAT, FLUID, SOFT_TISSUE, ORGAN, GREY_MATTER, WHITE_MATTER, MARROW, BONE = range(10)

# Typical unenhanced CT numbers (HU).
CT_HU = {
    AIR: -1000,
    LUNG: -850,
    FAT: -100,
    FLUID: 8,
    SOFT_TISSUE: 40,
    ORGAN: 60,
    GREY_MATTER: 38,
    WHITE_MATTER: 28,
    MARROW: 250,
    BONE: 900,
}
# T1-weighted-looking MR signal (arbitrary units, 12-bit): fat and white matter
# bright, fluid and cortical bone dark, air black.
MR_SIGNAL = {
    AIR: 0,
    LUNG: 40,
    FAT: 1500,
    FLUID: 250,
    SOFT_TISSUE: 600,
    ORGAN: 800,
    GREY_MATTER: 750,
    WHITE_MATTER: 1050,
    MARROW: 1200,
    BONE: 90,
}

CT_INTERCEPT = -1024
CT_NOISE_HU = 6.0
MR_NOISE = 20.0
MR_BITS_STORED = 12

# An ellipse in normalised image coordinates: x left->right, y top(anterior)->bottom,
# both in [-1, 1]; (label, centre x, centre y, semi-axis x, semi-axis y).
Ellipse = tuple[int, float, float, float, float]


@dataclass(frozen=True)
class _Identity:
    """Patient / study / series attributes shared by every instance of a series."""

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_uid: str
    study_date: str
    study_time: str
    study_description: str
    accession: str
    modality: str
    series_uid: str
    series_number: int
    series_description: str
    body_part: str
    institution: str
    referring_physician: str


# --------------------------------------------------------------------------- public API


def make_series(
    *,
    patient_name: str,
    patient_id: str,
    birth_date: str,
    sex: str,
    study_uid: str,
    study_date: str,
    study_description: str,
    accession: str,
    modality: str,
    series_number: int,
    series_description: str,
    slices: int,
    rows: int = 128,
    columns: int = 128,
    body_part: str = "CHEST",
    institution: str = "",
    referring_physician: str = "",
    series_uid: str | None = None,
    study_time: str = "090000",
) -> list[Dataset]:
    """A CT or MR axial volume of a phantom, one single-frame dataset per slice.

    ``body_part`` picks the phantom: HEAD/BRAIN, ABDOMEN/PELVIS, else a chest.
    UIDs are derived from the arguments, so calling twice gives identical UIDs
    (and identical pixels): demo data can be re-imported idempotently.
    """
    modality = modality.upper()
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality must be 'CT' or 'MR', got {modality!r}")
    if slices < 1:
        raise ValueError(f"slices must be at least 1, got {slices}")
    _check_common(rows=rows, columns=columns, sex=sex, dates=(birth_date, study_date))

    identity = _Identity(
        patient_name=patient_name,
        patient_id=patient_id,
        birth_date=birth_date,
        sex=sex,
        study_uid=study_uid,
        study_date=study_date,
        study_time=study_time,
        study_description=study_description,
        accession=accession,
        modality=modality,
        series_uid=series_uid
        or _uid("series", study_uid, modality, series_number, series_description),
        series_number=series_number,
        series_description=series_description,
        body_part=body_part.upper(),
        institution=institution,
        referring_physician=referring_physician,
    )
    labels = [
        _phantom_labels(identity.body_part, rows, columns, _slice_fraction(i, slices))
        for i in range(slices)
    ]
    if modality == "CT":
        volume = [_ct_stored_values(lab, _rng(identity, i)) for i, lab in enumerate(labels)]
        window = (40.0, 80.0) if _is_head(identity.body_part) else (40.0, 400.0)
    else:
        volume = [_mr_stored_values(lab, _rng(identity, i)) for i, lab in enumerate(labels)]
        window = _window_from_data(np.stack(volume))

    return [
        _slice_dataset(identity, pixels, index=i, slices=slices, window=window)
        for i, pixels in enumerate(volume)
    ]


def make_multiframe(
    *,
    patient_name: str,
    patient_id: str,
    birth_date: str,
    sex: str,
    study_uid: str,
    study_date: str,
    study_description: str,
    accession: str,
    series_number: int = 1,
    series_description: str = "Echo cine",
    frames: int = 10,
    rows: int = 120,
    columns: int = 160,
    color: bool = False,
    frame_time_ms: float = 40.0,
    institution: str = "",
    referring_physician: str = "",
    series_uid: str | None = None,
    study_time: str = "090000",
) -> Dataset:
    """One Ultrasound Multi-frame (cine) dataset of a beating "heart" in a sector scan.

    Every frame differs (the chamber contracts and relaxes over one cycle), which
    is what multi-frame navigation needs to be tested against. With ``color``
    the frames are RGB with a colour-Doppler-like jet whose direction flips
    between systole and diastole; otherwise 8-bit MONOCHROME2.
    """
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    _check_common(rows=rows, columns=columns, sex=sex, dates=(birth_date, study_date))
    identity = _Identity(
        patient_name=patient_name,
        patient_id=patient_id,
        birth_date=birth_date,
        sex=sex,
        study_uid=study_uid,
        study_date=study_date,
        study_time=study_time,
        study_description=study_description,
        accession=accession,
        modality="US",
        series_uid=series_uid or _uid("series", study_uid, "US", series_number, series_description),
        series_number=series_number,
        series_description=series_description,
        body_part="HEART",
        institution=institution,
        referring_physician=referring_physician,
    )
    rng = _rng(identity, 0)
    cine = np.stack([_echo_frame(rows, columns, f / frames, color, rng) for f in range(frames)])

    sop_uid = _uid("instance", identity.series_uid, 1)
    ds = _base_dataset(identity, UltrasoundMultiFrameImageStorage, sop_uid, instance_number=1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "CARDIAC"]
    ds.FrameTime = _ds(frame_time_ms)
    # Tells viewers that consecutive frames are spaced by Frame Time (cine loop).
    ds.FrameIncrementPointer = Tag("FrameTime")
    ds.CineRate = round(1000.0 / frame_time_ms)
    ds.set_pixel_data(
        cine if frames > 1 else cine[0],
        photometric_interpretation="RGB" if color else "MONOCHROME2",
        bits_stored=8,
        generate_instance_uid=False,
    )
    # set_pixel_data drops Number of Frames for a single frame; cine objects keep it.
    ds.NumberOfFrames = frames
    if not color:
        # Ultrasound pixels are already display values: an identity window.
        ds.WindowCenter, ds.WindowWidth = _ds(128.0), _ds(256.0)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """Serialize ``ds`` as a DICOM Part-10 file (preamble, DICM, File Meta)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# --------------------------------------------------------------------------- bundled files

# Files shipped inside the pydicom wheel (data/test_files) that render here, one
# or more per decodable transfer syntax. pydicom's get_testdata_file() is never
# used: it downloads missing files, and this project must work offline.
BUNDLED_RENDERABLE: list[str] = [
    # Explicit VR Little Endian
    "CT_small.dcm",  # CT, signed 16-bit with rescale, no window
    "MR_small.dcm",
    "MR_small_padded.dcm",
    "examples_overlay.dcm",  # 12-bit MR, multi-valued window, overlay plane
    "examples_palette.dcm",  # PALETTE COLOR with 16-bit LUTs
    "examples_rgb_color.dcm",
    "SC_rgb_small_odd.dcm",  # 3x3 RGB (odd length pixel data)
    "SC_ybr_full_422_uncompressed.dcm",  # subsampled YBR_FULL_422 stored natively
    "liver_1frame.dcm",  # 1 bit allocated (bit-packed SEG)
    # Implicit VR Little Endian
    "MR_small_implicit.dcm",
    "SC_rgb_jpeg_dcmd.dcm",  # uncompressed sibling of SC_jpeg_no_color_transform
    "rtdose.dcm",  # 32-bit unsigned, 15 frames
    "rtdose_1frame.dcm",
    # Explicit VR Big Endian (retired, still found in archives)
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "ExplVR_BigEnd.dcm",  # RGB
    "SC_rgb_small_odd_big_endian.dcm",
    "liver_expb_1frame.dcm",  # 1-bit big endian
    "rtdose_expb.dcm",
    "rtdose_expb_1frame.dcm",
    # Deflated Explicit VR Little Endian
    "image_dfl.dcm",
    # RLE Lossless
    "MR_small_RLE.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_rle_16bit.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_rle_32bit.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
    "rtdose_rle.dcm",
    "rtdose_rle_1frame.dcm",
    # JPEG Baseline (Process 1)
    "SC_rgb_jpeg_dcmtk.dcm",  # YBR_FULL
    "SC_rgb_jpeg_lossy_gdcm.dcm",  # YBR_FULL
    "SC_rgb_dcmtk_+eb+cr.dcm",  # RGB, no colour transform
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",  # YBR_FULL
    "SC_rgb_dcmtk_+eb+cy+n2.dcm",  # YBR_FULL
    "SC_rgb_dcmtk_+eb+cy+np.dcm",  # YBR_FULL_422
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",  # YBR_FULL_422
    "SC_rgb_dcmtk_+eb+cy+s4.dcm",  # YBR_FULL
    "SC_rgb_small_odd_jpeg.dcm",
    "SC_jpeg_no_color_transform.dcm",  # RGB components, no transform
    "SC_jpeg_no_color_transform_2.dcm",  # RGB with Adobe APP14 marker
    "SC_rgb_jpeg_app14_dcmd.dcm",
    "examples_ybr_color.dcm",  # 30-frame YBR_FULL_422 ultrasound
    # JPEG Extended (Process 2 and 4), 12-bit
    "JPGExtended.dcm",
    # JPEG Lossless, First-Order Prediction (Process 14, SV1)
    "SC_rgb_jpeg_gdcm.dcm",
    # JPEG-LS Lossless
    "MR_small_jpeg_ls_lossless.dcm",
    # JPEG-LS Near-Lossless
    "JPEGLSNearLossless_08.dcm",
    "JPEGLSNearLossless_16.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "SC_rgb_jls_lossy_sample.dcm",
    # JPEG 2000 Lossless
    "MR_small_jp2klossless.dcm",
    "J2K_pixelrep_mismatch.dcm",  # codestream unsigned, Pixel Representation 1
    "GDCMJ2K_TextGBR.dcm",  # YBR_RCT, non-conformant JP2 header
    "examples_jpeg2k.dcm",  # YBR_RCT ultrasound
    # JPEG 2000 (lossy)
    "JPEG2000.dcm",
    "693_J2KI.dcm",  # Bits Stored 14 but 16-bit codestream
    "SC_rgb_gdcm_KY.dcm",  # RGB
]

# Bundled files that *have* pixel data but cannot be rendered here, with why.
# (Files without any image, e.g. rtplan.dcm or test-SR.dcm, are in neither list.)
BUNDLED_UNDECODABLE: dict[str, str] = {
    "JPEG-lossy.dcm": (
        "12-bit JPEG Extended with invalid SOS scan parameters: libjpeg refuses it and "
        "Pillow has no 12-bit JPEG; only GDCM tolerates it (JPGExtended.dcm is the fixed copy)"
    ),
    "JPEG2000-embedded-sequence-delimiter.dcm": (
        "JPEG 2000 codestream deliberately corrupted (4 bytes replaced by a Sequence Delimiter)"
    ),
    "SC_rgb_jpeg.dcm": (
        "malformed file: declared Explicit VR but encoded Implicit VR, and the encapsulated "
        "Pixel Data has no valid Basic Offset Table item"
    ),
    "MR_truncated.dcm": "Pixel Data is truncated (fewer bytes than Rows x Columns x 2)",
    "badVR.dcm": "Number of Frames is the invalid IS value '1A', so the frame layout is unknown",
    "no_meta.dcm": (
        "no File Meta Information (not a Part-10 file), so the transfer syntax is unknown"
    ),
}


def bundled_test_file(name: str) -> Path:
    """Path of a file shipped in pydicom's ``data/test_files`` folder (offline-safe)."""
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    path = folder / name
    if Path(name).name != name or not path.is_file():
        raise FileNotFoundError(
            f"{name!r} is not one of pydicom's bundled test files in {folder} "
            "(most pydicom test data is downloaded on demand, which this project never does)"
        )
    return path


# --------------------------------------------------------------------------- datasets


def _slice_dataset(
    identity: _Identity,
    pixels: np.ndarray,
    *,
    index: int,
    slices: int,
    window: tuple[float, float],
) -> Dataset:
    rows, columns = pixels.shape
    is_ct = identity.modality == "CT"
    sop_class = CTImageStorage if is_ct else MRImageStorage
    sop_uid = _uid("instance", identity.series_uid, index + 1)
    ds = _base_dataset(identity, sop_class, sop_uid, instance_number=index + 1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.FrameOfReferenceUID = _uid("frame-of-reference", identity.study_uid, identity.modality)
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"

    fov = 240.0 if _is_head(identity.body_part) else 400.0
    spacing = fov / max(rows, columns)
    thickness = 5.0 if is_ct else 4.0
    # Slices run head -> feet (decreasing z), centred on z = 0, like a real scan.
    z = ((slices - 1) / 2.0 - index) * thickness
    ds.ImagePositionPatient = [_ds(-spacing * columns / 2), _ds(-spacing * rows / 2), _ds(z)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = _ds(z)
    ds.SliceThickness = _ds(thickness)
    ds.SpacingBetweenSlices = _ds(thickness)
    ds.PixelSpacing = [_ds(spacing), _ds(spacing)]

    if is_ct:
        ds.KVP = 120
        ds.ConvolutionKernel = "STANDARD"
        ds.RescaleIntercept = CT_INTERCEPT
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.set_pixel_data(pixels, "MONOCHROME2", 16, generate_instance_uid=False)
    else:
        _add_mr_acquisition(ds)
        ds.set_pixel_data(pixels, "MONOCHROME2", MR_BITS_STORED, generate_instance_uid=False)
    ds.WindowCenter, ds.WindowWidth = _ds(window[0]), _ds(window[1])
    return ds


def _base_dataset(
    identity: _Identity, sop_class: str, sop_uid: str, *, instance_number: int
) -> Dataset:
    """Patient, study, series, equipment and SOP common modules plus File Meta."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]

    # UTF-8 so names like "Müller^Zoë" or "Łukasz" survive unchanged.
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = identity.study_date

    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.birth_date
    ds.PatientSex = identity.sex
    ds.PatientAge = _age(identity.birth_date, identity.study_date)

    series_time = _add_minutes(identity.study_time, 2 * identity.series_number)
    ds.StudyInstanceUID = identity.study_uid
    ds.StudyDate = identity.study_date
    ds.StudyTime = identity.study_time
    ds.StudyID = identity.accession[:16]
    ds.AccessionNumber = identity.accession
    ds.StudyDescription = identity.study_description
    ds.ReferringPhysicianName = identity.referring_physician

    ds.Modality = identity.modality
    ds.SeriesInstanceUID = identity.series_uid
    ds.SeriesNumber = identity.series_number
    ds.SeriesDescription = identity.series_description
    ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = identity.study_date
    ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = series_time
    ds.BodyPartExamined = identity.body_part
    ds.InstanceNumber = instance_number
    ds.AcquisitionNumber = 1

    ds.Manufacturer = "Synthetic"
    ds.ManufacturerModelName = "Phantom generator"
    ds.InstitutionName = identity.institution
    ds.BurnedInAnnotation = "NO"
    return ds


def _add_mr_acquisition(ds: Dataset) -> None:
    """Type 1/2 MR Image module attributes of a plain T1 spin-echo."""
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = _ds(500.0)
    ds.EchoTime = _ds(15.0)
    ds.EchoTrainLength = 1
    ds.MagneticFieldStrength = _ds(1.5)
    ds.ImagingFrequency = _ds(63.87)
    ds.ImagedNucleus = "1H"


# --------------------------------------------------------------------------- phantoms


def _phantom_labels(body_part: str, rows: int, columns: int, t: float) -> np.ndarray:
    """Label map of one slice; ``t`` in [0, 1] runs from the top to the bottom slice."""
    # A complex step is mgrid's number of points, which numpy's stubs do not know.
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : columns * 1j]  # type: ignore[misc]
    labels = np.full((rows, columns), AIR, dtype=np.uint8)
    for label, cx, cy, ax, ay in _shapes(body_part, t):
        if ax > 0 and ay > 0:
            labels[((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0] = label
    return labels


def _shapes(body_part: str, t: float) -> list[Ellipse]:
    if _is_head(body_part):
        return _head_shapes(t)
    if body_part in ("ABDOMEN", "PELVIS"):
        return _torso_shapes(t) + _abdomen_organs(t)
    return _torso_shapes(t) + _chest_organs(t)


def _torso_shapes(t: float) -> list[Ellipse]:
    """Skin/fat, muscle wall and spine, shared by chest and abdomen."""
    breathe = 1.0 + 0.04 * math.sin(2 * math.pi * t)
    ax, ay = 0.9 * breathe, 0.62 * breathe
    return [
        (FAT, 0.0, 0.05, ax, ay),
        (SOFT_TISSUE, 0.0, 0.05, ax * 0.9, ay * 0.86),
        (BONE, 0.0, 0.45, 0.1, 0.1),  # vertebral body: cortex...
        (MARROW, 0.0, 0.45, 0.075, 0.075),  # ...and cancellous bone
        (BONE, 0.0, 0.6, 0.06, 0.05),  # neural arch
        (FLUID, 0.0, 0.585, 0.035, 0.03),  # spinal canal
    ]


def _chest_organs(t: float) -> list[Ellipse]:
    lung = 0.45 + 0.55 * math.sin(math.pi * (0.15 + 0.75 * t))  # lungs widen downwards
    heart = max(0.0, math.sin(math.pi * (t - 0.2) / 0.8)) if t > 0.2 else 0.0
    shapes: list[Ellipse] = [
        (LUNG, -0.4, 0.0, 0.3 * lung, 0.42 * lung),
        (LUNG, 0.4, 0.0, 0.3 * lung, 0.42 * lung),
        (ORGAN, 0.1, 0.02, 0.24 * heart, 0.2 * heart),  # heart appears mid-chest
        (ORGAN, -0.08, 0.3, 0.06, 0.06),  # descending aorta
        (BONE, 0.0, -0.5, 0.07, 0.035 if t < 0.75 else 0.0),  # sternum
    ]
    # Ribs cross axial slices obliquely, so each one comes and goes with z.
    for k in range(8):
        angle = math.pi * (0.15 + 0.7 * (k % 4) / 3) * (1 if k < 4 else -1)
        if math.cos(2 * math.pi * (2.5 * t + k / 8)) > -0.3:
            cx, cy = 0.8 * math.sin(angle) * 0.93, -0.56 * math.cos(angle) + 0.05
            shapes.append((BONE, cx, cy, 0.035, 0.035))
    return shapes


def _abdomen_organs(t: float) -> list[Ellipse]:
    liver = max(0.0, 1.0 - 1.2 * t)  # liver dome at the top, gone lower down
    kidney = max(0.0, math.sin(math.pi * t))
    return [
        (ORGAN, -0.35, -0.02, 0.4 * liver, 0.42 * liver),
        (ORGAN, 0.5, 0.1, 0.14 * liver, 0.2 * liver),  # spleen
        (ORGAN, -0.3, 0.38, 0.11 * kidney, 0.15 * kidney),
        (ORGAN, 0.3, 0.38, 0.11 * kidney, 0.15 * kidney),
        (FLUID, 0.15, -0.15, 0.12 * (0.4 + t), 0.09 * (0.4 + t)),  # bowel loop
        (ORGAN, -0.05, 0.28, 0.055, 0.055),  # aorta
    ]


def _head_shapes(t: float) -> list[Ellipse]:
    size = 0.55 + 0.45 * math.sin(math.pi * (0.1 + 0.5 * t))  # skull widens from vertex down
    ventricles = max(0.0, math.sin(math.pi * (t - 0.25) / 0.6)) if 0.25 < t < 0.85 else 0.0
    return [
        (FAT, 0.0, 0.0, 0.82 * size, 0.94 * size),  # scalp
        (BONE, 0.0, 0.0, 0.78 * size, 0.9 * size),  # skull
        (FLUID, 0.0, 0.0, 0.72 * size, 0.84 * size),  # CSF
        (GREY_MATTER, 0.0, 0.0, 0.7 * size, 0.82 * size),
        (WHITE_MATTER, 0.0, 0.0, 0.55 * size, 0.66 * size),
        (FLUID, -0.1, -0.05, 0.06 * ventricles, 0.25 * ventricles),  # lateral ventricles
        (FLUID, 0.1, -0.05, 0.06 * ventricles, 0.25 * ventricles),
    ]


def _ct_stored_values(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label map -> HU with noise -> stored int16 (HU - intercept)."""
    lut = np.array([CT_HU[label] for label in range(len(CT_HU))], dtype=np.float64)
    hu = lut[labels] + rng.normal(0.0, CT_NOISE_HU, labels.shape)
    hu[labels == AIR] = CT_HU[AIR]  # air outside the body is clean, as on real scanners
    stored: np.ndarray = np.rint(hu - CT_INTERCEPT).astype(np.int16)
    return stored


def _mr_stored_values(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label map -> MR magnitude with coil shading and Rician noise -> uint16."""
    lut = np.array([MR_SIGNAL[label] for label in range(len(MR_SIGNAL))], dtype=np.float64)
    y = np.linspace(-1.0, 1.0, labels.shape[0])[:, None]
    signal = lut[labels] * (1.0 + 0.15 * y)  # receive-coil sensitivity falls off
    # Magnitude images have Rician noise: |signal + complex Gaussian noise|.
    real = signal + rng.normal(0.0, MR_NOISE, labels.shape)
    imaginary = rng.normal(0.0, MR_NOISE, labels.shape)
    magnitude = np.hypot(real, imaginary)
    stored: np.ndarray = np.clip(np.rint(magnitude), 0, 2**MR_BITS_STORED - 1).astype(np.uint16)
    return stored


def _window_from_data(volume: np.ndarray) -> tuple[float, float]:
    """A window covering the volume's signal (1st-99.5th percentile of the body)."""
    body = volume[volume > 4 * MR_NOISE]
    values = body if body.size else volume
    low, high = np.percentile(values, [1.0, 99.5])
    return float(round((low + high) / 2)), float(max(round(high - low), 1))


def _echo_frame(
    rows: int, columns: int, phase: float, color: bool, rng: np.random.Generator
) -> np.ndarray:
    """One apical-view-like echo frame: a speckled sector with a beating chamber."""
    y, x = np.mgrid[0 : 1 : rows * 1j, -1 : 1 : columns * 1j]  # type: ignore[misc]
    depth = np.hypot(x * columns / rows / 1.2, y)
    angle = np.arctan2(x * columns / rows / 1.2, y)
    sector = (np.abs(angle) < math.radians(45)) & (depth < 0.95) & (depth > 0.05)

    beat = 1.0 + 0.18 * math.sin(2 * math.pi * phase)
    r = np.hypot((x * columns / rows / 1.2) / (0.17 * beat), (y - 0.55) / (0.26 * beat))
    tissue = 70.0 + 110.0 * np.exp(-(((r - 1.15) / 0.18) ** 2))  # bright myocardium ring
    tissue = np.where(r < 1.0, 12.0, tissue)  # dark blood pool
    speckle = rng.rayleigh(1.0, (rows, columns)) / math.sqrt(math.pi / 2)
    brightness = np.clip(tissue * speckle * (1.1 - 0.4 * depth), 0, 255) * sector
    grey: np.ndarray = np.rint(brightness).astype(np.uint8)
    if not color:
        return grey

    rgb = np.repeat(grey[..., None], 3, axis=2)
    jet = sector & (r < 0.8) & (np.abs(x) < 0.08)
    toward = math.sin(2 * math.pi * phase) >= 0  # red towards the probe, blue away
    rgb[jet] = (220, 40, 30) if toward else (30, 60, 230)
    return rgb


# --------------------------------------------------------------------------- helpers


def _check_common(*, rows: int, columns: int, sex: str, dates: Sequence[str]) -> None:
    if rows < 16 or columns < 16:
        raise ValueError(f"rows and columns must be at least 16, got {rows}x{columns}")
    if sex not in ("M", "F", "O", ""):
        raise ValueError(f"sex must be 'M', 'F', 'O' or '', got {sex!r}")
    for value in dates:
        if value:
            datetime.strptime(value, "%Y%m%d")  # raises ValueError for non-DICOM dates


def _slice_fraction(index: int, slices: int) -> float:
    return index / (slices - 1) if slices > 1 else 0.5


def _is_head(body_part: str) -> bool:
    return body_part in ("HEAD", "BRAIN")


def _uid(*parts: object) -> str:
    """Deterministic UID: same inputs -> same UID, under pydicom's UID root."""
    return generate_uid(entropy_srcs=[str(part) for part in parts])


def _rng(identity: _Identity, index: int) -> np.random.Generator:
    # sha256 rather than hash(): Python salts str hashes per process, which
    # would make the "deterministic" noise differ between runs.
    key = "\x1f".join([identity.series_uid, identity.patient_id, str(index)]).encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def _ds(value: float) -> str:
    """Format a float as a valid DS (Decimal String, at most 16 characters)."""
    return f"{value:.6g}"


def _age(birth_date: str, study_date: str) -> str:
    if not birth_date or not study_date:
        return ""
    born = datetime.strptime(birth_date, "%Y%m%d").date()
    seen = datetime.strptime(study_date, "%Y%m%d").date()
    years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    return f"{max(years, 0):03d}Y"


def _add_minutes(time: str, minutes: int) -> str:
    """HHMMSS + minutes, wrapping at midnight (series start after the study)."""
    start = datetime.combine(date(2000, 1, 1), datetime.strptime(time[:6], "%H%M%S").time())
    return (start + timedelta(minutes=minutes)).strftime("%H%M%S")
