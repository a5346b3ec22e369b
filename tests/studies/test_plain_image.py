"""A plain greyscale image's frames rendered from its pixel bytes and the few header values kept
when it was stored (``studies.rendering.PlainImage``): the same bytes as from its header, for
every kind of image the description covers, and the full path for every other kind."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    SecondaryCaptureImageStorage,
)

from studies import rendering
from studies.dicom_header import read_header
from studies.rendering import PlainImage, RenderError, Viewport, Window, render_frame
from studies.synthetic import bundled_test_file, make_series, to_bytes

PATIENT = {
    "patient_name": "Peeters^Lotte",
    "patient_id": "PAT-PLAIN",
    "birth_date": "19800101",
    "sex": "F",
    "study_uid": "1.2.826.0.1.3680043.8.498.4242",
    "study_date": "20240105",
    "study_description": "CT Thorax",
    "accession": "ACC4242",
}


def _series_slice(modality: str, **elements) -> Dataset:
    ds = make_series(
        **PATIENT,
        modality=modality,
        series_number=1,
        series_description="Axial",
        slices=3,
        rows=40,
        columns=32,
    )[1]
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _grey(
    pixels: np.ndarray,
    *,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    syntax=ExplicitVRLittleEndian,
    **elements,
) -> Dataset:
    """A greyscale Secondary Capture holding ``pixels`` (one frame, or several stacked) as they
    are, whatever ``bits_stored`` says of their upper bits."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.StudyInstanceUID = PATIENT["study_uid"]
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.PatientID = "PAT-PLAIN"
    ds.set_pixel_data(pixels, photometric, pixels.dtype.itemsize * 8)
    if bits_stored is not None:
        ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
        ds.PixelData = pixels.tobytes()  # the upper bits as they are, not cleared
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _noise(dtype, low: int, high: int, shape=(24, 20)) -> np.ndarray:
    return np.random.default_rng(3).integers(low, high, size=shape, endpoint=True, dtype=dtype)


def _stored(ds: Dataset | bytes) -> tuple[bytes, PlainImage | None]:
    """The file's bytes and what reading its header when it is stored keeps of it."""
    data = ds if isinstance(ds, bytes) else to_bytes(ds)
    header = read_header(io.BytesIO(data), len(data))
    return data, PlainImage.from_json(header.plain_image)


PLAIN = {
    "CT slice, signed, rescaled to HU, its own window": lambda: _series_slice("CT"),
    "MR slice": lambda: _series_slice("MR"),
    "MONOCHROME1": lambda: _series_slice("CT", PhotometricInterpretation="MONOCHROME1"),
    "Presentation LUT Shape INVERSE": lambda: _series_slice("CT", PresentationLUTShape="INVERSE"),
    "the header's sigmoid VOI function": lambda: _series_slice("CT", VOILUTFunction="SIGMOID"),
    "several windows, the first applies": lambda: _series_slice(
        "CT", WindowCenter=[40, 300], WindowWidth=[400, 1500]
    ),
    "no window, padding left out of the range": lambda: _grey(
        _noise(np.int16, -2000, 1500), PixelPaddingValue=-2000, RescaleSlope=1, RescaleIntercept=0
    ),
    "unsigned 12 of 16 bits, upper bits set": lambda: _grey(
        _noise(np.uint16, 0, 65535), bits_stored=12, WindowCenter=2048, WindowWidth=4096
    ),
    "signed 12 of 16 bits, sign not extended": lambda: _grey(
        _noise(np.uint16, 0, 65535).view(np.int16), bits_stored=12, PixelRepresentation=1
    ),
    "unsigned 8-bit": lambda: _grey(_noise(np.uint8, 0, 255)),
    "signed 8-bit": lambda: _grey(_noise(np.int8, -128, 127), PixelRepresentation=1),
    "multi-frame": lambda: _grey(_noise(np.uint16, 0, 4095, shape=(5, 24, 20))),
    "implicit VR": lambda: _grey(_noise(np.uint16, 0, 4095), syntax=ImplicitVRLittleEndian),
    "pydicom's CT_small": lambda: pydicom.dcmread(bundled_test_file("CT_small.dcm")),
    "pydicom's MR_small": lambda: pydicom.dcmread(bundled_test_file("MR_small.dcm")),
}


@pytest.mark.parametrize("make", PLAIN.values(), ids=PLAIN.keys())
@pytest.mark.parametrize(
    "window",
    [None, Window(40, 400), Window(-600, 1500, "SIGMOID"), Window(100, 1, "LINEAR_EXACT")],
    ids=["own window", "soft tissue", "lung sigmoid", "narrowest"],
)
def test_a_plain_image_renders_the_same_bytes_as_from_its_header(make, window):
    data, plain = _stored(make())
    assert plain is not None
    for frame in sorted({1, plain.frames}):
        for image_format in ("png", "jpeg"):
            options = {"frame": frame, "window": window, "image_format": image_format}
            from_header = render_frame(io.BytesIO(data), **options)
            assert render_frame(io.BytesIO(data), plain=plain, **options) == from_header


def test_a_viewport_and_a_thumbnail_size_apply_to_a_plain_image_as_to_any(tmp_path):
    data, plain = _stored(_series_slice("CT"))
    options = {"frame": 1, "viewport": Viewport(20, 20, 2, 2, -16, 30), "max_size": 12}
    assert render_frame(io.BytesIO(data), plain=plain, **options) == render_frame(
        io.BytesIO(data), **options
    )


def test_a_plain_image_is_rendered_without_reading_its_header(monkeypatch, tmp_path):
    data, plain = _stored(_series_slice("CT"))
    path = tmp_path / "slice.dcm"
    path.write_bytes(data)
    expected = render_frame(path, frame=1, image_format="jpeg")

    def no_header(*_args, **_kwargs):
        raise AssertionError("the header was read")

    monkeypatch.setattr(rendering, "_read_header", no_header)
    monkeypatch.setattr(pydicom, "dcmread", no_header)
    assert render_frame(path, frame=1, image_format="jpeg", plain=plain) == expected
    with pytest.raises(AssertionError, match="the header was read"):
        render_frame(path, frame=1, image_format="jpeg")


def test_a_series_slices_share_their_display_elements_and_render_as_alone(tmp_path):
    slices = make_series(
        **PATIENT, modality="CT", series_number=1, series_description="Axial", slices=3
    )
    stored = [_stored(ds) for ds in slices]
    plains = [plain for _data, plain in stored]
    assert all(plain is not None for plain in plains)
    first, *others = [plain.display_elements() for plain in plains]
    # Built once for the series, not once a frame.
    assert all(other is first for other in others)
    # A slice rendered after its neighbours gives the bytes it gives on its own.
    for data, plain in stored:
        from_header = render_frame(io.BytesIO(data), frame=1, image_format="jpeg")
        assert render_frame(io.BytesIO(data), frame=1, image_format="jpeg", plain=plain) == (
            from_header
        )
    # Another window or rescale is another dataset.
    other_window = _stored(_series_slice("CT", WindowCenter=300, WindowWidth=1500))[1]
    assert other_window.display_elements() is not first
    assert other_window.display_elements().WindowCenter == 300


def _palette() -> Dataset:
    ds = _grey(_noise(np.uint8, 0, 255), photometric="PALETTE COLOR")
    ds.SamplesPerPixel = 1
    return ds


def _with_sequence(keyword: str) -> Dataset:
    ds = _series_slice("CT")
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new("LUTData", "US", list(range(4096)))
    setattr(ds, keyword, Sequence([item]))
    return ds


def _compressed() -> Dataset:
    ds = _grey(_noise(np.uint16, 0, 4095))
    ds.compress(RLELossless)
    return ds


def _rgb() -> Dataset:
    return _grey(_noise(np.uint8, 0, 255, shape=(24, 20, 3)), photometric="RGB")


def _unreadable_rescale() -> bytes:
    data = to_bytes(_series_slice("CT", RescaleSlope="7.25"))
    assert data.count(b"7.25") == 1
    return data.replace(b"7.25", b"abcd")


def _enhanced() -> Dataset:
    ds = _series_slice("CT")
    group = Dataset()
    group.PixelValueTransformationSequence = Sequence([Dataset()])
    group.PixelValueTransformationSequence[0].RescaleSlope = 2
    group.PixelValueTransformationSequence[0].RescaleIntercept = 0
    ds.SharedFunctionalGroupsSequence = Sequence([group])
    return ds


def _thirty_two_bits() -> Dataset:
    ds = _grey(_noise(np.uint16, 0, 4095))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.PixelData = _noise(np.uint32, 0, 70000).tobytes()
    return ds


NOT_PLAIN = {
    "compressed": _compressed,
    "colour": _rgb,
    "palette colour": _palette,
    "a VOI LUT Sequence": lambda: _with_sequence("VOILUTSequence"),
    "a Modality LUT Sequence": lambda: _with_sequence("ModalityLUTSequence"),
    "functional groups": _enhanced,
    "a rescale that is no number": _unreadable_rescale,
    "big endian": lambda: pydicom.dcmread(bundled_test_file("MR_small_bigendian.dcm")),
    "deflated": lambda: _grey(_noise(np.uint16, 0, 4095), syntax=DeflatedExplicitVRLittleEndian),
    "32-bit": _thirty_two_bits,
}


@pytest.mark.parametrize("make", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_other_images_keep_no_plain_description(make):
    _data, plain = _stored(make())
    assert plain is None


def test_a_description_of_another_version_or_damaged_is_not_used():
    _data, plain = _stored(_series_slice("CT"))
    assert plain is not None
    described = plain.as_json()
    assert PlainImage.from_json(described) == plain
    assert PlainImage.from_json({**described, "version": described["version"] + 1}) is None
    assert PlainImage.from_json({**described, "rows": "many"}) is None
    assert PlainImage.from_json({**described, "dtype": "<f8"}) is None
    without_offset = {key: value for key, value in described.items() if key != "offset"}
    assert PlainImage.from_json(without_offset) is None
    assert PlainImage.from_json(None) is None


def test_a_frame_past_the_last_or_past_the_file_says_why():
    data, plain = _stored(_grey(_noise(np.uint16, 0, 4095, shape=(3, 24, 20))))
    assert plain is not None and plain.frames == 3
    with pytest.raises(RenderError, match="out of range: the image has 3 frame"):
        render_frame(io.BytesIO(data), frame=4, plain=plain)
    cut = data[: plain.offset + 2 * 24 * 20 * 2 + 100]
    render_frame(io.BytesIO(cut), frame=2, plain=plain)
    with pytest.raises(RenderError, match="ends before frame 3"):
        render_frame(io.BytesIO(cut), frame=3, plain=plain)
