"""HeaderValues decodes the plain elements itself: it must read every header as pydicom does."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom import config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from studies.dicom_values import HeaderValues

_DATA = Path(pydicom.__file__).parent / "data"
_FILES = sorted((_DATA / "test_files").glob("*.dcm")) + sorted(
    (_DATA / "charset_files").glob("*.dcm")
)
# Read by ingestion, yet absent from most files: absent, both read as nothing.
_OFTEN_ABSENT = ("IssuerOfPatientID", "NumberOfFrames", "VOILUTFunction", "PresentationLUTShape")


def _read(source: Path | bytes) -> Dataset:
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    return pydicom.dcmread(stream, stop_before_pixels=True, force=True)


def _as_read(value: object) -> object:
    """What the header's readers make of a value: its text, stripped, or its values."""
    if value is None or value == "":
        return ""
    if isinstance(value, MultiValue | list):
        return [_as_read(item) for item in value]
    if type(value) is int:  # a US; an IS (an int subclass) reads as written
        return value
    return str(value).strip()


_UNCONVERTIBLE = object()


def _as_pydicom_reads(ds: Dataset, keyword: str) -> object:
    try:
        return _as_read(ds.get(keyword))
    except Exception:  # a value pydicom cannot convert: nothing to compare with
        return _UNCONVERTIBLE


def _same_as_pydicom(source: Path | bytes) -> list[str]:
    """The keywords whose value HeaderValues reads otherwise than pydicom does: of every
    element the header holds, and of a few it may not."""
    values = HeaderValues(_read(source))
    reference = _read(source)  # a separate copy: pydicom converts elements in place
    keywords = {element.keyword for element in reference if element.keyword}
    differing = []
    for keyword in sorted(keywords | set(_OFTEN_ABSENT)):
        expected = _as_pydicom_reads(reference, keyword)
        if expected is _UNCONVERTIBLE:
            continue
        if _as_read(values.get(keyword)) != expected:
            differing.append(keyword)
        elif (
            keyword in reference
            and reference[keyword].VR in ("CS", "US", "DS")
            and values.json(keyword) != reference[keyword].to_json_dict(None, 1024)
        ):
            differing.append(f"{keyword} (JSON)")
    return differing


def _readable(path: Path) -> bool:
    try:
        _read(path).get("PatientName")
    except Exception:  # some bundled files are deliberately broken for pydicom's own tests
        return False
    return True


def test_the_bundled_files_and_character_sets_read_as_pydicom_reads_them():
    readable = [path for path in _FILES if _readable(path)]
    for path in readable:
        assert _same_as_pydicom(path) == [], path.name
    # The files the comparison ran on include other character sets and encodings.
    names = {path.name for path in readable}
    assert {"chrJapMulti.dcm", "chrRuss.dcm", "chrX1.dcm", "CT_small.dcm"} <= names
    assert len(readable) > 60


def _header(**elements) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    with config.disable_value_validation():  # "1e400" is no DS, yet such files exist
        for keyword, value in elements.items():
            setattr(ds, keyword, value)
    return ds


def _file(ds: Dataset, syntax=ExplicitVRLittleEndian) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    with config.disable_value_validation():
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
)
@pytest.mark.parametrize(
    "elements",
    [
        {"PatientName": "Müller^Zoë", "SpecificCharacterSet": "ISO_IR 100"},
        {"PatientName": "Müller^Zoë", "SpecificCharacterSet": "ISO_IR 192"},
        {"PatientName": "Ωμέγα^Άλφα", "SpecificCharacterSet": "ISO_IR 126"},
        {"PatientName": "Smith^Anne", "PatientID": " 0042 "},
        {"WindowCenter": ["40", "300"], "WindowWidth": ["400", "1500"]},
        {"NumberOfFrames": "2.0", "SeriesNumber": "+3", "InstanceNumber": " 12"},
        {"RescaleSlope": "1e400", "RescaleIntercept": "-1024.5"},
        {"Rows": 512, "Columns": 256, "BitsAllocated": 16, "PixelRepresentation": 1},
        {"StudyDescription": "", "Modality": "ct", "StudyDate": "2024.05.17"},
        {"InstitutionName": "St. Anna\\Annex", "ReferringPhysicianName": "Doe^J=Doe^J"},
    ],
)
def test_plain_and_unusual_values_read_as_pydicom_reads_them(elements, syntax):
    assert _same_as_pydicom(_file(_header(**elements), syntax)) == []


def test_values_are_decoded_once_and_absent_ones_are_none():
    values = HeaderValues(_read(_file(_header(PatientID="P-1", Rows=64))))
    assert values.get("PatientID") == "P-1"
    assert values.get("Rows") == 64
    assert values.get("AccessionNumber") is None
    assert values.get("AccessionNumber", "") == ""
    assert "Rows" in values and "Columns" not in values
    # Present but empty is not absent: the default is for what the header lacks.
    empty = HeaderValues(_read(_file(_header(Rows=None, PatientID=""))))
    reference = _read(_file(_header(Rows=None, PatientID="")))
    for keyword in ("Rows", "PatientID", "Columns"):
        assert empty.get(keyword, "default") == reference.get(keyword, "default"), keyword
    values.dataset.PatientID = "changed after reading"
    assert values.get("PatientID") == "P-1"


def test_plain_values_are_read_without_pydicom_converting_them():
    ds = _read(_file(_header(PatientName="Smith^Anne", Rows=64, RescaleSlope="1.5")))
    values = HeaderValues(ds)
    assert [values.get(k) for k in ("PatientName", "Rows", "RescaleSlope")] == [
        "Smith^Anne",
        64,
        "1.5",
    ]
    assert values.json("RescaleSlope") == {"vr": "DS", "Value": [1.5]}
    # Still the bytes pydicom read: the values above were decoded here.
    assert all(isinstance(ds.get_item(k), RawDataElement) for k in ("PatientName", "Rows"))
