"""Tests for studies.rendering: every claim is checked against pixel values."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pydicom
import pytest
from django.conf import settings
from django.utils import translation
from django.utils.functional import Promise
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array
from pydicom.pixels.decoders.base import Decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    MPEG2MPML,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)

from studies import rendering
from studies.rendering import (
    RenderError,
    Window,
    _grey_levels,
    default_window,
    frame_count,
    render_frame,
    window_presets,
)
from studies.synthetic import (
    BUNDLED_RENDERABLE,
    BUNDLED_UNDECODABLE,
    CT_INTERCEPT,
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
    "study_description": "CT Thorax",
    "accession": "ACC0001",
}


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def render(source, **kwargs) -> np.ndarray:
    kwargs.setdefault("frame", 1)
    return np.asarray(decode(render_frame(source, **kwargs)))


def ct_slice(**overrides) -> Dataset:
    args = {
        **PATIENT,
        "modality": "CT",
        "series_number": 2,
        "series_description": "Thorax 5mm",
        "slices": 5,
        **overrides,
    }
    return make_series(**args)[2]


def grey_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", **elements) -> Dataset:
    """A minimal, valid single-frame greyscale Secondary Capture built in memory."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.set_pixel_data(pixels, photometric, pixels.dtype.itemsize * 8)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


RAMP = np.tile(np.arange(0, 1024, 4, dtype=np.uint16), (16, 1))  # 0..1020, 256 columns

# --------------------------------------------------------------------------- bundled files


@pytest.mark.parametrize("name", BUNDLED_RENDERABLE)
def test_bundled_file_renders_to_png_of_right_size_and_mode(name):
    path = bundled_test_file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    image = decode(render_frame(path, frame=1))

    assert image.format == "PNG"
    assert image.size == (ds.Columns, ds.Rows)
    is_grey = ds.SamplesPerPixel == 1 and ds.PhotometricInterpretation != "PALETTE COLOR"
    assert image.mode == ("L" if is_grey else "RGB")
    assert np.asarray(image).std() > 0, "rendered image is constant"


@pytest.mark.parametrize("name", BUNDLED_RENDERABLE)
def test_path_file_object_and_dataset_sources_render_identically(name):
    path = bundled_test_file(name)
    from_path = render_frame(path, frame=1)
    with path.open("rb") as handle:
        assert render_frame(handle, frame=1) == from_path
    assert render_frame(pydicom.dcmread(path), frame=1) == from_path


@pytest.fixture
def header_reads(monkeypatch) -> list[object]:
    """The files whose preamble pydicom reads: once for each time it parses their header."""
    reads: list[object] = []
    read_preamble = pydicom.filereader.read_preamble

    def counted(fp, force):
        reads.append(fp)
        return read_preamble(fp, force)

    monkeypatch.setattr(pydicom.filereader, "read_preamble", counted)
    return reads


@pytest.mark.parametrize("opened", [False, True], ids=["path", "file object"])
def test_a_stored_frame_is_decoded_from_the_header_read_once(header_reads, tmp_path, opened):
    path = tmp_path / "slice.dcm"
    path.write_bytes(to_bytes(ct_slice(rows=64, columns=64)))
    expected = render_frame(pydicom.dcmread(path), frame=1, image_format="jpeg")
    header_reads.clear()
    if opened:
        with path.open("rb") as handle:
            assert render_frame(handle, frame=1, image_format="jpeg") == expected
    else:
        assert render_frame(path, frame=1, image_format="jpeg") == expected
    assert len(header_reads) == 1


def test_a_frame_after_a_deferred_extended_offset_table_decodes(tmp_path):
    # 200 frames: an 1,600-byte offset table, which the header leaves in the file (over 1 KB)
    # and reads back on the way to the pixel data.
    frames = np.arange(200 * 4 * 4, dtype=np.uint8).reshape(200, 4, 4)
    ds = grey_dataset(frames[0])
    ds.set_pixel_data(frames, "MONOCHROME2", 8)
    ds.compress(RLELossless, encapsulate_ext=True)
    path = tmp_path / "cine.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert len(pydicom.dcmread(path).ExtendedOffsetTable) == 1600
    for frame in (1, 137, 200):
        expected = render_frame(pydicom.dcmread(path), frame=frame)
        assert render_frame(path, frame=frame) == expected
        assert render_frame(io.BytesIO(path.read_bytes()), frame=frame) == expected
    np.testing.assert_array_equal(render(path, frame=200), render(grey_dataset(frames[199])))


@pytest.mark.parametrize("name", BUNDLED_UNDECODABLE)
def test_bundled_undecodable_file_raises_render_error(name):
    with pytest.raises(RenderError) as excinfo:
        render_frame(bundled_test_file(name), frame=1)
    assert len(str(excinfo.value)) > 20


def test_corrupt_jpeg_error_names_transfer_syntax():
    with pytest.raises(RenderError, match=r"1\.2\.840\.10008\.1\.2\.4\.51.*JPEG Extended"):
        render_frame(bundled_test_file("JPEG-lossy.dcm"), frame=1)


def test_file_without_file_meta_is_rejected_clearly():
    with pytest.raises(RenderError, match="Part-10"):
        render_frame(bundled_test_file("no_meta.dcm"), frame=1)


def test_last_frame_of_bundled_multiframe_renders():
    path = bundled_test_file("examples_ybr_color.dcm")  # 30-frame JPEG Baseline cine
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert frame_count(ds) == 30
    last = render(path, frame=30)
    assert last.shape == (240, 320, 3)
    assert not np.array_equal(last, render(path, frame=1))


# --------------------------------------------------------------------------- errors


def test_unsupported_transfer_syntax_raises_helpful_error():
    ds = pydicom.dcmread(bundled_test_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    with pytest.raises(
        RenderError, match=r"1\.2\.840\.10008\.1\.2\.4\.100 .*cannot be decoded here"
    ):
        render_frame(ds, frame=1)


def test_syntax_whose_decoding_libraries_are_missing_names_them(monkeypatch):
    # A decoder as pydicom builds it on an installation without its plugin's library.
    plugin = types.ModuleType("absent_jpeg2000_plugin")
    plugin.is_available = lambda syntax: False
    plugin.DECODER_DEPENDENCIES = {JPEG2000Lossless: ("openjpeg",)}
    monkeypatch.setitem(sys.modules, plugin.__name__, plugin)
    decoder = Decoder(JPEG2000Lossless)
    decoder.add_plugin("openjpeg-plugin", (plugin.__name__, "decode_pixel_data"))
    monkeypatch.setattr("studies.rendering.get_decoder", lambda syntax: decoder)
    ds = pydicom.dcmread(bundled_test_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    with pytest.raises(
        RenderError,
        match=r"cannot be decoded here: the decoding libraries are not installed "
        r"\(openjpeg-plugin - requires openjpeg\)",
    ):
        render_frame(ds, frame=1)


def test_non_image_object_raises_render_error():
    with pytest.raises(RenderError, match=r"no pixel data \(RT Plan Storage is not an image\)"):
        render_frame(bundled_test_file("rtplan.dcm"), frame=1)


def test_image_dataset_without_pixel_data_raises_render_error():
    ds = pydicom.dcmread(bundled_test_file("CT_small.dcm"))
    del ds.PixelData
    with pytest.raises(RenderError, match="no pixel data"):
        render_frame(ds, frame=1)


def test_dataset_without_transfer_syntax_raises_render_error():
    ds = pydicom.dcmread(bundled_test_file("CT_small.dcm"))
    del ds.file_meta.TransferSyntaxUID
    with pytest.raises(RenderError, match="Transfer Syntax UID"):
        render_frame(ds, frame=1)


def test_not_dicom_raises_render_error():
    with pytest.raises(RenderError, match="not a readable DICOM"):
        render_frame(io.BytesIO(b"GIF89a" + bytes(300)), frame=1)


@pytest.mark.parametrize("frame", [0, -1, 16, 100])
def test_frame_out_of_range_raises_render_error(frame):
    path = bundled_test_file("rtdose.dcm")  # 15 frames
    with pytest.raises(RenderError, match=f"frame {frame} is out of range.*15 frame"):
        render_frame(path, frame=frame)


def test_numpy_integer_frame_is_accepted():
    path = bundled_test_file("rtdose.dcm")
    assert render_frame(path, frame=np.int64(3)) == render_frame(path, frame=3)


def test_bad_arguments_raise_value_error():
    path = bundled_test_file("CT_small.dcm")
    with pytest.raises(ValueError, match="image_format"):
        render_frame(path, frame=1, image_format="webp")
    with pytest.raises(ValueError, match="max_size"):
        render_frame(path, frame=1, max_size=0)


# --------------------------------------------------------------------------- multi-frame


def test_multiframe_frames_differ_and_match_the_decoded_frame():
    path = bundled_test_file("SC_rgb_rle_2frame.dcm")
    frames = pixel_array(path)  # all frames, the slow way, as the reference
    first, second = render(path, frame=1), render(path, frame=2)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, frames[0])
    np.testing.assert_array_equal(second, frames[1])


def test_rtdose_frames_are_windowed_independently_and_differ():
    path = bundled_test_file("rtdose.dcm")
    images = [render(path, frame=n) for n in (1, 8, 15)]
    assert not np.array_equal(images[0], images[1])
    assert not np.array_equal(images[1], images[2])


def test_synthetic_cine_frames_differ_and_range_is_checked():
    cine = make_multiframe(**PATIENT, frames=10)
    first, fifth = render(cine, frame=1), render(cine, frame=5)
    assert first.shape == (120, 160)
    assert np.abs(first.astype(int) - fifth.astype(int)).mean() > 1
    assert render(cine, frame=10).std() > 0
    with pytest.raises(RenderError, match="frame 11 is out of range"):
        render_frame(cine, frame=11)


def test_synthetic_colour_cine_renders_rgb():
    cine = make_multiframe(**PATIENT, frames=4, color=True)
    rgb = render(cine, frame=1)
    assert rgb.shape == (120, 160, 3)
    np.testing.assert_array_equal(rgb, pixel_array(cine, index=0))


# --------------------------------------------------------------------------- greyscale pipeline


def test_modality_lut_and_window_give_expected_grey_levels():
    ds = ct_slice()
    stored = pixel_array(ds).copy()
    # Known HU patches: soft tissue, air, bone, and the window edges.
    patches = {(2, 2): 40, (2, 10): -1000, (2, 18): 900, (10, 2): -160, (10, 10): 240}
    for (row, col), hu in patches.items():
        stored[row : row + 4, col : col + 4] = hu - CT_INTERCEPT
    ds.PixelData = stored.tobytes()

    grey = render(ds, window=Window(40, 400))
    assert grey[3, 3] == 128  # 40 HU is the window centre -> mid grey
    assert grey[3, 11] == 0  # air is below the window
    assert grey[3, 19] == 255  # bone is above it
    assert grey[11, 3] == 0  # centre - width/2 is the bottom of the window
    assert grey[11, 11] == 255  # centre + width/2 is the top


def test_soft_tissue_pixel_of_synthetic_ct_renders_mid_grey():
    ds = ct_slice()
    hu = apply_modality_lut(pixel_array(ds), ds)
    row, col = np.unravel_index(np.argmin(np.abs(hu - 40)), hu.shape)
    assert abs(hu[row, col] - 40) <= 1
    grey = render(ds)  # the dataset's own window is 40/400
    expected = np.clip((hu[row, col] - 39.5) / 399 + 0.5, 0, 1) * 255
    assert abs(int(grey[row, col]) - expected) <= 1
    assert 126 <= grey[row, col] <= 130
    # Without the rescale, stored 1064 would sit far above the window (white).
    assert pixel_array(ds)[row, col] > 1000


def test_explicit_window_overrides_dataset_window():
    ds = ct_slice()
    assert default_window(ds) == Window(40, 400)
    assert render_frame(ds, frame=1) == render_frame(ds, frame=1, window=Window(40, 400))
    lung = render(ds, window=Window(-600, 1500))
    assert not np.array_equal(lung, render(ds))


def test_narrow_window_saturates_more_pixels():
    ds = ct_slice()
    wide = render(ds, window=Window(40, 2000))
    narrow = render(ds, window=Window(40, 20))

    def saturated(grey: np.ndarray) -> int:
        return int(np.count_nonzero((grey == 0) | (grey == 255)))

    assert saturated(narrow) > saturated(wide) + 1000


def test_monochrome1_is_inverted_relative_to_monochrome2():
    mono2 = render(grey_dataset(RAMP, "MONOCHROME2"))
    mono1 = render(grey_dataset(RAMP, "MONOCHROME1"))
    assert mono2[0, 0] == 0 and mono2[0, -1] == 255
    np.testing.assert_allclose(mono1.astype(int), 255 - mono2.astype(int), atol=1)


def test_presentation_lut_inverse_inverts_once():
    plain = render(grey_dataset(RAMP))
    inverse = render(grey_dataset(RAMP, PresentationLUTShape="INVERSE"))
    both = render(grey_dataset(RAMP, "MONOCHROME1", PresentationLUTShape="INVERSE"))
    np.testing.assert_allclose(inverse.astype(int), 255 - plain.astype(int), atol=1)
    np.testing.assert_array_equal(both, inverse)


def test_without_window_min_max_of_frame_is_used():
    grey = render(grey_dataset(RAMP))
    assert grey.min() == 0 and grey.max() == 255
    np.testing.assert_allclose(grey[0], np.rint(RAMP[0] / 1020 * 255), atol=1)


def test_voi_lut_function_sigmoid_and_linear_exact():
    pixels = np.array([[0, 100, 200, 300, 400] * 4] * 16, dtype=np.uint16)
    exact = render(
        grey_dataset(pixels, WindowCenter=200, WindowWidth=400, VOILUTFunction="LINEAR_EXACT")
    )
    assert list(exact[0, :5]) == [0, 64, 128, 191, 255]
    sigmoid = render(
        grey_dataset(pixels, WindowCenter=200, WindowWidth=400, VOILUTFunction="SIGMOID")
    )
    assert sigmoid[0, 2] == 128  # sigmoid is 0.5 at the centre
    assert 0 < sigmoid[0, 0] < 40 and 215 < sigmoid[0, 4] < 255  # soft, not clipped


def test_voi_lut_sequence_used_when_no_window():
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]
    item.LUTData = [0, 4095, 100, 2000]  # deliberately non-monotonic
    pixels = np.array([[0, 1, 2, 3] * 4] * 16, dtype=np.uint16)
    grey = render(grey_dataset(pixels, VOILUTSequence=Sequence([item])))
    expected = np.rint(np.array([0, 4095, 100, 2000]) / 4095 * 255)
    np.testing.assert_array_equal(grey[0, :4], expected)


def test_enhanced_functional_groups_rescale_and_per_frame_window():
    frames = np.stack([RAMP, RAMP]).astype(np.uint16)
    ds = grey_dataset(frames)
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 2, -1000, "HU"
    shared = Dataset()
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for center in (-1000, 1000):  # frame 1 windowed low, frame 2 windowed high
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 400
        group = Dataset()
        group.FrameVOILUTSequence = Sequence([voi])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)

    assert default_window(ds, frame=2) == Window(1000, 400)
    first, second = render(ds, frame=1), render(ds, frame=2)
    # Stored 0 -> -1000 HU: centre of frame 1's window, below frame 2's.
    assert first[0, 0] == 128 and second[0, 0] == 0
    # Stored 1000 -> 1000 HU: above frame 1's window, centre of frame 2's.
    assert first[0, 250] == 255 and second[0, 250] == 128


def test_one_bit_segmentation_renders_black_and_white():
    grey = render(bundled_test_file("liver_1frame.dcm"))
    assert set(np.unique(grey)) == {0, 255}


def test_signed_pixels_render_in_order():
    pixels = np.tile(np.arange(-512, 512, 4, dtype=np.int16), (16, 1))
    grey = render(grey_dataset(pixels))
    assert grey[0, 0] == 0 and grey[0, -1] == 255
    assert np.all(np.diff(grey[0].astype(int)) >= 0)


# --------------------------------------------------------------------------- colour


def test_uncompressed_rgb_keeps_exact_colours():
    path = bundled_test_file("examples_rgb_color.dcm")
    rgb = render(path)
    np.testing.assert_array_equal(rgb, pixel_array(path))


def test_explicit_window_is_ignored_for_colour():
    path = bundled_test_file("examples_rgb_color.dcm")
    assert render_frame(path, frame=1, window=Window(0, 10)) == render_frame(path, frame=1)


REFERENCE_RGB = "SC_rgb_rle.dcm"  # lossless RGB original of the SC_rgb_* family


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG YBR_FULL
        "SC_rgb_jpeg_lossy_gdcm.dcm",  # JPEG YBR_FULL
        "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG YBR_FULL_422
        "SC_rgb_dcmtk_+eb+cy+s2.dcm",  # JPEG YBR_FULL_422
        "SC_rgb_dcmtk_+eb+cr.dcm",  # JPEG, RGB components
        "SC_ybr_full_422_uncompressed.dcm",  # native YBR_FULL_422
        "SC_rgb_gdcm_KY.dcm",  # JPEG 2000
        "SC_rgb_jls_lossy_line.dcm",  # JPEG-LS
        "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless
        "SC_rgb_rle_16bit.dcm",  # 16 bits per sample
        "SC_rgb_rle_32bit.dcm",  # 32 bits per sample
    ],
)
def test_compressed_colour_matches_uncompressed_sibling(name):
    reference = pixel_array(bundled_test_file(REFERENCE_RGB)).astype(int)
    rgb = render(bundled_test_file(name)).astype(int)
    assert rgb.shape == reference.shape
    # Lossy JPEG differs by a few levels; unconverted YCbCr or swapped channels by ~50-90.
    assert np.abs(rgb - reference).mean() < 4
    red_band = rgb[2:8, 2:30].mean(axis=(0, 1))  # the top band of the image is pure red
    assert red_band[0] > 240 and red_band[1] < 20 and red_band[2] < 20


@pytest.mark.parametrize(
    ("name", "sibling"),
    [
        ("SC_jpeg_no_color_transform.dcm", "SC_rgb_jpeg_dcmd.dcm"),
        ("SC_rgb_small_odd_jpeg.dcm", "SC_rgb_small_odd.dcm"),
    ],
)
def test_jpeg_colour_matches_uncompressed_copy(name, sibling):
    rgb = render(bundled_test_file(name)).astype(int)
    reference = pixel_array(bundled_test_file(sibling)).astype(int)
    assert np.abs(rgb - reference).max() <= 5


def test_ybr_rct_jpeg2000_decodes_to_rgb():
    rgb = render(bundled_test_file("GDCMJ2K_TextGBR.dcm")).astype(int)
    # The image shows the words "red", "green", "blue" in those colours on grey.
    reds = (rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)
    blues = (rgb[..., 2] > 200) & (rgb[..., 0] < 60) & (rgb[..., 1] < 60)
    assert reds[:150].sum() > 500 and blues[250:].sum() > 500


def test_palette_colour_is_applied():
    path = bundled_test_file("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    expected = (apply_color_lut(pixel_array(ds), ds) >> 8).astype(np.uint8)
    rgb = render(path)
    assert rgb.shape == (ds.Rows, ds.Columns, 3)
    np.testing.assert_array_equal(rgb, expected)


# --------------------------------------------------------------------------- output options


@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
def test_jpeg_output(name):
    path = bundled_test_file(name)
    png = render(path).astype(int)
    image = decode(render_frame(path, frame=1, image_format="jpeg"))
    assert image.format == "JPEG"
    assert image.mode == ("L" if png.ndim == 2 else "RGB")
    assert np.abs(np.asarray(image).astype(int) - png).mean() < 3  # quality 90
    assert decode(render_frame(path, frame=1, image_format="JPG")).format == "JPEG"


def test_max_size_downsizes_keeping_aspect_ratio():
    palette = bundled_test_file("examples_palette.dcm")  # 800 x 350
    assert decode(render_frame(palette, frame=1, max_size=100)).size == (100, 44)
    ct = bundled_test_file("CT_small.dcm")  # 128 x 128
    assert decode(render_frame(ct, frame=1, max_size=64)).size == (64, 64)
    assert decode(render_frame(ct, frame=1, max_size=1000)).size == (128, 128)  # never enlarged


def test_synthetic_series_round_trips_through_bytes():
    ds = ct_slice()
    from_bytes = render_frame(io.BytesIO(to_bytes(ds)), frame=1)
    assert from_bytes == render_frame(ds, frame=1)


# --------------------------------------------------------------------------- metadata helpers


def test_window_parse():
    assert Window.parse("40,400") == Window(40.0, 400.0)
    assert Window.parse(" -600 , 1500 ") == Window(-600.0, 1500.0)
    assert Window.parse("40.5,1e3") == Window(40.5, 1000.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "center,width"),
        ("40", "center,width"),
        ("40,400,1", "center,width"),
        (",400", "center,width"),
        ("a,b", "must be numbers"),
        ("40,0", "greater than 0"),
        ("40,-10", "greater than 0"),
        ("nan,400", "finite"),
        ("40,inf", "finite"),
    ],
)
def test_window_parse_errors(text, message):
    with pytest.raises(ValueError, match=message):
        Window.parse(text)


def test_default_window():
    assert default_window(pydicom.dcmread(bundled_test_file("MR_small.dcm"))) == Window(600, 1600)
    # Multi-valued window: the first pair is the primary one.
    overlay = pydicom.dcmread(bundled_test_file("examples_overlay.dcm"))
    assert len(overlay.WindowCenter) == 2
    assert default_window(overlay) == Window(overlay.WindowCenter[0], overlay.WindowWidth[0])
    assert default_window(pydicom.dcmread(bundled_test_file("CT_small.dcm"))) is None
    assert default_window(grey_dataset(RAMP, WindowCenter=10, WindowWidth=0)) is None


def test_frame_count():
    assert frame_count(pydicom.dcmread(bundled_test_file("rtdose.dcm"))) == 15
    assert frame_count(pydicom.dcmread(bundled_test_file("CT_small.dcm"))) == 1
    assert frame_count(Dataset()) == 1
    assert frame_count(pydicom.dcmread(bundled_test_file("badVR.dcm"))) == 1  # "1A"


def test_window_presets():
    presets = window_presets("CT")
    assert [window for _, window in presets] == [
        Window(40, 400),
        Window(-600, 1500),
        Window(300, 1500),
        Window(40, 80),
        Window(60, 400),
        Window(30, 150),
        Window(50, 350),
    ]
    # Lazy translations: evaluating them needs Django settings, so only check the type here.
    assert all(isinstance(name, Promise) for name, _ in presets)
    if settings.configured:  # e.g. under pytest-django: the names can be evaluated
        with translation.override("en"):
            assert [str(name) for name, _ in presets] == [
                "Soft tissue",
                "Lung",
                "Bone",
                "Brain",
                "Abdomen",
                "Liver",
                "Mediastinum",
            ]
    assert window_presets("ct") == presets
    assert window_presets("MR") == []
    assert window_presets("") == []


# --------------------------------------------------------------------------- grey levels per value


def _noisy(dtype, low: int, high: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    return np.random.default_rng(7).integers(low, high, size=size, endpoint=True, dtype=dtype)


def _voi_lut(entries: int, first: int) -> Sequence:
    item = Dataset()
    item.LUTDescriptor = [entries, first, 16]
    item.LUTData = [(value * 37) % 4096 for value in range(entries)]  # not monotonic
    return Sequence([item])


@pytest.mark.parametrize(
    ("pixels", "photometric", "elements", "window"),
    [
        # A CT: signed values, a rescale to HU, the dataset's window.
        (
            _noisy(np.int16, -2000, 3000),
            "MONOCHROME2",
            {"RescaleSlope": 1, "RescaleIntercept": -1024, "WindowCenter": 40, "WindowWidth": 400},
            None,
        ),
        # Signed values over 32,767 apart: a pixel's distance from the smallest one passes the
        # pixels' own signed range (and more pixels than values, so they are looked up).
        (
            _noisy(np.int16, -30000, 30000, size=(256, 256)),
            "MONOCHROME2",
            {"WindowCenter": 0, "WindowWidth": 50000},
            None,
        ),
        # A window asked for, sigmoid, on fractional rescale.
        (
            _noisy(np.uint16, 0, 4095),
            "MONOCHROME2",
            {"RescaleSlope": 0.37, "RescaleIntercept": -12.5},
            Window(300, 900, "SIGMOID"),
        ),
        (
            _noisy(np.uint16, 0, 60000),
            "MONOCHROME1",
            {"WindowCenter": 9000, "WindowWidth": 1},
            None,
        ),
        (
            _noisy(np.uint8, 0, 255),
            "MONOCHROME2",
            {"WindowCenter": 100, "WindowWidth": 50, "PresentationLUTShape": "INVERSE"},
            Window(90, 60, "LINEAR_EXACT"),
        ),
        # A VOI LUT sequence, values below and above its first entry.
        (_noisy(np.uint16, 0, 300), "MONOCHROME2", {"VOILUTSequence": _voi_lut(200, 50)}, None),
    ],
)
def test_grey_levels_looked_up_per_value_are_those_computed_per_pixel(
    pixels, photometric, elements, window
):
    """The renderer computes a grey level once per stored value and looks the pixels up; the
    image must be the one computing every pixel gives."""
    ds = grey_dataset(pixels, photometric, **elements)
    chosen = window or default_window(ds)
    invert = photometric == "MONOCHROME1" or elements.get("PresentationLUTShape") == "INVERSE"
    per_pixel = _grey_levels(pixel_array(ds), ds, 0, chosen, invert=invert)
    np.testing.assert_array_equal(render(ds, image_format="png", window=window), per_pixel)


# --------------------------------------------------------------------------- kept grey tables


@pytest.fixture
def fresh_grey_tables(monkeypatch):
    """No table kept from other tests, and a count of the tables built."""
    monkeypatch.setattr(rendering, "_grey_tables", rendering._GreyTables(kept=4, remembered=8))
    built = []
    original = rendering._WindowedGrey.table

    def counted(mapping):
        built.append(mapping)
        return original(mapping)

    monkeypatch.setattr(rendering._WindowedGrey, "table", counted)
    return built


def _reference_grey(ds: Dataset, window: Window, *, invert: bool) -> np.ndarray:
    """Grey levels computed pixel by pixel, straight from PS3.3 C.11.2.1.2 on pydicom's decoded
    values and its modality LUT: what the renderer's tables must give."""
    values = np.asarray(apply_modality_lut(pixel_array(ds), ds), dtype=np.float64)
    center, width = window.center, window.width
    function = window.function or str(ds.get("VOILUTFunction") or "LINEAR").upper()
    if function == "SIGMOID":
        unit = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    elif function == "LINEAR_EXACT":
        unit = np.clip((values - center) / width + 0.5, 0.0, 1.0)
    elif width <= 1:
        unit = (values > center - 0.5).astype(np.float64)
    else:
        unit = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    if invert:
        unit = 1.0 - unit
    return np.rint(unit * 255.0).astype(np.uint8)


def _bundled(name: str, **elements) -> Dataset:
    ds = pydicom.dcmread(bundled_test_file(name))
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _ct_stored_in_hu() -> Dataset:
    """CT_small with its values stored as HU (intercept 0): signed, most of them below zero."""
    ds = _bundled("CT_small.dcm")
    hu = (pixel_array(ds).astype(np.int32) - 1024).astype(np.int16)
    assert hu.min() < 0 < hu.max()
    ds.PixelData, ds.RescaleIntercept = hu.tobytes(), 0
    return ds


@pytest.mark.parametrize(
    ("ds", "window", "invert"),
    [
        # A CT: signed 16-bit, rescaled to HU (intercept -1024), windowed for soft tissue.
        (_bundled("CT_small.dcm"), Window(40, 400), False),
        # Values below zero stored (signed 16-bit), no rescale to speak of.
        (_ct_stored_in_hu(), Window(-600, 1500), False),
        # The same CT, MONOCHROME1 (white is the lowest value), and a lung window.
        (
            _bundled("CT_small.dcm", PhotometricInterpretation="MONOCHROME1"),
            Window(-600, 1500),
            True,
        ),
        # A fractional rescale and a sigmoid VOI LUT function.
        (
            _bundled("CT_small.dcm", RescaleSlope=0.37, RescaleIntercept=-12.5),
            Window(300, 900, "SIGMOID"),
            False,
        ),
        # An MR's own window (signed 16-bit, no rescale), big-endian as stored.
        (_bundled("MR_small_bigendian.dcm"), None, False),
        (_bundled("MR_small.dcm", VOILUTFunction="LINEAR_EXACT"), None, False),
        # 12-bit unsigned with a multi-valued window (the first applies), inverted by the
        # Presentation LUT Shape.
        (_bundled("examples_overlay.dcm", PresentationLUTShape="INVERSE"), None, True),
        # 8-bit, a window one value wide.
        (_bundled("JPEGLSNearLossless_08.dcm"), Window(100, 1), False),
    ],
    ids=[
        "ct",
        "ct-negative-stored",
        "ct-monochrome1",
        "ct-fractional-sigmoid",
        "mr-big-endian",
        "mr-linear-exact",
        "12-bit-inverse",
        "8-bit-narrow",
    ],
)
def test_grey_levels_from_a_kept_table_are_those_computed_per_pixel(
    fresh_grey_tables, ds, window, invert
):
    """The second frame asked with the same rescale and window builds a table of every stored
    value's grey level, which the frames after it are looked up in; every render is the
    image a straightforward per-pixel windowing gives."""
    expected = _reference_grey(ds, window or default_window(ds), invert=invert)
    renders = [render(ds, image_format="png", window=window) for _ in range(3)]
    assert len(fresh_grey_tables) == 1  # built for the second render, kept for the third
    for grey in renders:
        np.testing.assert_array_equal(grey, expected)


def test_a_kept_table_serves_the_next_slices_of_a_series(fresh_grey_tables):
    slices = make_series(
        **PATIENT,
        modality="CT",
        series_number=3,
        series_description="Axial",
        slices=4,
        rows=32,
        columns=32,
    )
    for ds in slices:
        np.testing.assert_array_equal(
            render(ds, image_format="png"), _reference_grey(ds, Window(40, 400), invert=False)
        )
    assert len(fresh_grey_tables) == 1


def test_slices_with_windows_of_their_own_build_no_table(fresh_grey_tables):
    """An MR series whose every slice has its own window: each slice's levels are computed over
    its own values, as no table would serve another slice."""
    for center in range(500, 520):
        ds = _bundled("MR_small.dcm", WindowCenter=center)
        np.testing.assert_array_equal(
            render(ds, image_format="png"), _reference_grey(ds, default_window(ds), invert=False)
        )
    assert fresh_grey_tables == []


def test_a_modality_lut_sequence_is_never_looked_up_in_a_rescale_table(fresh_grey_tables):
    ds = _bundled("CT_small.dcm")
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = [(value * 7) % 4096 for value in range(4096)]  # not monotonic
    item.ModalityLUTType = "HU"
    ds.ModalityLUTSequence = Sequence([item])
    for _ in range(3):
        np.testing.assert_array_equal(
            render(ds, image_format="png", window=Window(2000, 4000)),
            _reference_grey(ds, Window(2000, 4000), invert=False),
        )
    assert fresh_grey_tables == []
