"""Tests for studies.synthetic: generated files must be valid, deterministic DICOM."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pydicom
import pytest
from pydicom import config
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.uid import (
    JPEG2000,
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MRImageStorage,
    RLELossless,
    UltrasoundMultiFrameImageStorage,
)

from studies.synthetic import (
    BUNDLED_RENDERABLE,
    BUNDLED_UNDECODABLE,
    bundled_test_file,
    make_multiframe,
    make_series,
    to_bytes,
)

PATIENT = {
    "patient_name": "Müller^Zoë",
    "patient_id": "PAT-001",
    "birth_date": "19750412",
    "sex": "F",
    "study_uid": "1.2.826.0.1.3680043.8.498.1000",
    "study_date": "20240105",
    "study_description": "Thorax",
    "accession": "ACC0001",
}


def series(**overrides):
    args = {
        **PATIENT,
        "modality": "CT",
        "series_number": 2,
        "series_description": "Thorax 5mm",
        "slices": 6,
        "rows": 96,
        "columns": 96,
        "institution": "St. Elsewhere Hôpital",
        "referring_physician": "Nuñez^José",
        **overrides,
    }
    return make_series(**args)


def reread(ds):
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


def hounsfield(ds) -> np.ndarray:
    return apply_modality_lut(pixel_array(ds), ds)


# --------------------------------------------------------------------------- series


def test_ct_series_is_valid_part10_dicom():
    datasets = series()
    assert len(datasets) == 6
    for number, original in enumerate(datasets, start=1):
        raw = to_bytes(original)
        assert raw[128:132] == b"DICM"
        ds = pydicom.dcmread(io.BytesIO(raw))
        meta = ds.file_meta
        assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID == CTImageStorage
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.ImplementationClassUID == PYDICOM_IMPLEMENTATION_UID
        assert ds.StudyInstanceUID == PATIENT["study_uid"]
        assert ds.InstanceNumber == number
        assert ds.Modality == "CT" and ds.Manufacturer == "Synthetic"
        assert (ds.AccessionNumber, ds.PatientID, ds.PatientSex) == ("ACC0001", "PAT-001", "F")
        assert (ds.StudyDate, ds.SeriesDate, ds.PatientBirthDate) == (
            "20240105",
            "20240105",
            "19750412",
        )
        assert ds.BodyPartExamined == "CHEST" and ds.SeriesNumber == 2
        assert ds.StudyDescription == "Thorax" and ds.SeriesDescription == "Thorax 5mm"
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
        assert (ds.Rows, ds.Columns) == (96, 96)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (
            16,
            16,
            15,
            1,
        )
        assert (ds.RescaleIntercept, ds.RescaleSlope) == (-1024, 1)
        assert (ds.WindowCenter, ds.WindowWidth) == (40, 400)
        assert ds.ImageOrientationPatient == [1, 0, 0, 0, 1, 0]
        assert len(ds.PixelSpacing) == 2 and ds.SliceThickness == 5
        assert pixel_array(ds).dtype == np.int16


def test_slice_geometry_is_consistent():
    datasets = [reread(ds) for ds in series()]
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert z == [float(ds.SliceLocation) for ds in datasets]
    assert np.allclose(np.diff(z), -5.0)  # head-to-feet, 5 mm apart
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    assert {ds.SeriesInstanceUID for ds in datasets} == {datasets[0].SeriesInstanceUID}


def test_sop_instance_uids_are_unique_and_valid():
    uids = [ds.SOPInstanceUID for ds in series(slices=20)]
    assert len(set(uids)) == 20
    assert all(uid.is_valid for uid in uids)


def test_uids_and_pixels_are_deterministic():
    first, second = series(), series()
    assert [ds.SOPInstanceUID for ds in first] == [ds.SOPInstanceUID for ds in second]
    assert first[0].SeriesInstanceUID == second[0].SeriesInstanceUID
    assert [to_bytes(ds) for ds in first] == [to_bytes(ds) for ds in second]


def test_different_series_get_different_uids():
    one, two = series(series_number=2)[0], series(series_number=3)[0]
    assert one.SeriesInstanceUID != two.SeriesInstanceUID
    assert one.SOPInstanceUID != two.SOPInstanceUID


def test_given_series_uid_is_used():
    datasets = series(series_uid="1.2.3.4.5")
    assert {ds.SeriesInstanceUID for ds in datasets} == {"1.2.3.4.5"}


def test_consecutive_slices_differ_visibly():
    volumes = [hounsfield(ds) for ds in series(slices=8)]
    for upper, lower in itertools.pairwise(volumes):
        # Noise alone changes pixels by a few HU; anatomy changes them by hundreds.
        changed = np.mean(np.abs(upper - lower) > 200)
        assert changed > 0.005


def test_accented_utf8_name_round_trips():
    raw = to_bytes(series(slices=1)[0])
    assert "Müller^Zoë".encode() in raw
    ds = pydicom.dcmread(io.BytesIO(raw))
    assert ds.PatientName.family_name == "Müller"
    assert ds.PatientName.given_name == "Zoë"
    assert ds.InstitutionName == "St. Elsewhere Hôpital"
    assert str(ds.ReferringPhysicianName) == "Nuñez^José"


def test_ct_hounsfield_units_are_anatomical():
    datasets = series(slices=9, rows=128, columns=128)
    middle = hounsfield(reread(datasets[4]))
    assert middle[0, 0] == -1000  # air outside the body
    assert np.mean(middle == -1000) > 0.15
    lung = np.mean((middle > -900) & (middle < -800))
    fat = np.mean((middle > -130) & (middle < -70))
    soft = np.mean((middle > 20) & (middle < 80))
    bone = np.mean(middle > 700)
    assert lung > 0.05 and fat > 0.03 and soft > 0.1 and bone > 0.002
    assert middle.max() < 1100


def test_head_ct_uses_brain_window_and_abdomen_differs_from_chest():
    head = series(body_part="HEAD", slices=3)[1]
    assert (head.WindowCenter, head.WindowWidth) == (40, 80)
    assert float(head.PixelSpacing[0]) < float(series(slices=3)[1].PixelSpacing[0])
    chest, abdomen = (
        hounsfield(series(slices=3)[1]),
        hounsfield(series(body_part="ABDOMEN", slices=3)[1]),
    )
    assert np.mean(chest < -800) > np.mean(abdomen < -800) + 0.05  # lungs vs no lungs


def test_mr_series():
    datasets = series(modality="MR", series_description="T1 SE", slices=5)
    for ds in datasets:
        ds = reread(ds)
        assert ds.SOPClassUID == MRImageStorage and ds.Modality == "MR"
        assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 12, 0)
        assert "RescaleSlope" not in ds and "RescaleIntercept" not in ds
        assert float(ds.SliceThickness) == 4.0 and ds.ScanningSequence == "SE"
        pixels = pixel_array(ds)
        assert pixels.dtype == np.uint16 and pixels.max() <= 4095
        assert pixels.std() > 50
        # The window comes from the data: centred inside the signal range.
        low, high = np.percentile(pixels, [1, 99.9])
        assert low < float(ds.WindowCenter) < high
        assert 0 < float(ds.WindowWidth) <= 4095
    windows = {(ds.WindowCenter, ds.WindowWidth) for ds in datasets}
    assert len(windows) == 1  # same window on every slice: no flicker when scrolling


def test_generated_values_pass_strict_vr_validation():
    # pydicom validates values when elements are created (reading mode) and written.
    previous = (config.settings.reading_validation_mode, config.settings.writing_validation_mode)
    config.settings.reading_validation_mode = config.RAISE
    config.settings.writing_validation_mode = config.RAISE
    try:
        for ds in [*series(slices=2), *series(modality="MR", slices=2)]:
            reread(ds)
        reread(make_multiframe(**PATIENT, frames=3, color=True))
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = previous


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"modality": "XR"}, "modality"),
        ({"slices": 0}, "slices"),
        ({"sex": "X"}, "sex"),
        ({"rows": 4}, "rows"),
        ({"study_date": "2024-01-05"}, "does not match format"),
    ],
)
def test_make_series_rejects_bad_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        series(**overrides)


# --------------------------------------------------------------------------- multi-frame


def test_multiframe_ultrasound_cine():
    ds = reread(make_multiframe(**PATIENT, series_number=7, frames=10))
    assert ds.SOPClassUID == UltrasoundMultiFrameImageStorage and ds.Modality == "US"
    assert ds.NumberOfFrames == 10
    assert ds.FrameIncrementPointer == 0x00181063  # Frame Time
    assert float(ds.FrameTime) == 40.0
    assert ds.PatientName == "Müller^Zoë" and ds.StudyInstanceUID == PATIENT["study_uid"]
    frames = pixel_array(ds)
    assert frames.shape == (10, 120, 160) and frames.dtype == np.uint8
    assert all(not np.array_equal(frames[0], frames[n]) for n in range(1, 10))


def test_multiframe_colour_and_determinism():
    one = make_multiframe(**PATIENT, frames=4, color=True)
    two = make_multiframe(**PATIENT, frames=4, color=True)
    assert to_bytes(one) == to_bytes(two)
    ds = reread(one)
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    frames = pixel_array(ds)
    assert frames.shape == (4, 120, 160, 3)
    red = (frames[..., 0] > 200) & (frames[..., 2] < 80)
    blue = (frames[..., 2] > 200) & (frames[..., 0] < 80)
    assert red.any() and blue.any()  # the Doppler jet changes direction over the cycle


def test_single_frame_multiframe_keeps_number_of_frames():
    ds = reread(make_multiframe(**PATIENT, frames=1))
    assert ds.NumberOfFrames == 1
    assert pixel_array(ds).shape == (120, 160)


# --------------------------------------------------------------------------- bundled files


def test_bundled_test_file():
    path = bundled_test_file("CT_small.dcm")
    assert path.is_file() and path.name == "CT_small.dcm"
    with pytest.raises(FileNotFoundError, match=r"'SC_rgb\.dcm' is not one of pydicom's bundled"):
        bundled_test_file("SC_rgb.dcm")  # exists upstream, but only as a download
    with pytest.raises(FileNotFoundError):
        bundled_test_file("../__init__.py")


def test_bundled_lists_are_consistent():
    assert len(BUNDLED_RENDERABLE) == len(set(BUNDLED_RENDERABLE))
    assert not set(BUNDLED_RENDERABLE) & set(BUNDLED_UNDECODABLE)
    for name in [*BUNDLED_RENDERABLE, *BUNDLED_UNDECODABLE]:
        assert bundled_test_file(name).is_file()
    assert all(reason for reason in BUNDLED_UNDECODABLE.values())


def test_bundled_renderable_covers_every_decodable_transfer_syntax():
    syntaxes = {
        pydicom.dcmread(
            bundled_test_file(name), stop_before_pixels=True
        ).file_meta.TransferSyntaxUID
        for name in BUNDLED_RENDERABLE
    }
    assert syntaxes >= {
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
        RLELossless,
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
        JPEG2000Lossless,
        JPEG2000,
    }
