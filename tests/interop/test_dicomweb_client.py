"""Acceptance: dicomweb-client (PyPI), a real DICOMweb client, against the live portal over HTTP.

It searches at all three levels (wildcard, date range, limit/offset, includefield), retrieves
studies, series and instances with pixel data identical to what was stored, reads metadata that
is valid PS3.18 JSON whose every BulkDataURI resolves, fetches frames in the stored syntax and
in explicit little endian, renders, and stores a study with STOW-RS. It authenticates as
integrators do, with an API token sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from studies.synthetic import bundled_test_file, make_series, to_bytes
from tests.accounts.helpers import api_token
from tests.dicomweb.conftest import CT_STUDY_UID, IngestedStudy, ingest
from tests.interop.servers import live_portal

pytestmark = pytest.mark.django_db(transaction=True)

PRIOR_STUDY_UID = "1.2.826.0.1.3680043.8.498.7002"
OTHER_STUDY_UID = "1.2.826.0.1.3680043.8.498.7003"
STOWED_STUDY_UID = "1.2.826.0.1.3680043.8.498.7004"
RAW_LE = ("application/octet-stream", str(ExplicitVRLittleEndian))
# A private value long enough for metadata to send it by BulkDataURI rather than inline.
PRIVATE_BLOB = bytes(range(256)) * 16
# PS3.5 6.2: every VR a DICOM JSON attribute may name.
VRS = frozenset(
    {
        "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD",
        "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI",
        "UL", "UN", "UR", "US", "UT", "UV",
    }
)  # fmt: skip
_TAG = re.compile(r"^[0-9A-F]{8}$")


@dataclass
class World:
    ct: IngestedStudy  # Dubois^Marie, 2024-06-01: CT (3 slices) and MR (1), plus what follows
    jpeg_ls: Dataset  # a JPEG-LS lossless MR of the same study, as stored
    blob: Dataset  # a CT of the same study carrying PRIVATE_BLOB
    files: dict[str, bytes]  # every instance of the CT study by SOP Instance UID, as stored


def _series(study_uid: str, **overrides) -> list[Dataset]:
    common = dict(
        patient_name="Dubois^Marie",
        patient_id="PAT-7001",
        birth_date="19590303",
        sex="F",
        study_uid=study_uid,
        study_date="20240601",
        study_description="CT Head",
        accession="ACC7001",
        modality="CT",
        series_number=1,
        series_description="Head axial",
        slices=2,
        rows=32,
        columns=32,
    )
    common.update(overrides)
    return make_series(**common)


@pytest.fixture
def world(org, location, ct_study) -> World:
    # pydicom's JPEG-LS lossless file, made part of the CT study as its third series.
    jpeg_ls = pydicom.dcmread(bundled_test_file("MR_small_jpeg_ls_lossless.dcm"))
    jpeg_ls.StudyInstanceUID = CT_STUDY_UID
    jpeg_ls.SeriesInstanceUID = generate_uid()
    jpeg_ls.SOPInstanceUID = jpeg_ls.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    jpeg_ls.SeriesNumber = 3
    jpeg_ls.PatientID, jpeg_ls.PatientName = "PAT-7001", "Dubois^Marie"
    (blob,) = _series(
        CT_STUDY_UID, series_number=4, series_description="Scout", slices=1, rows=16, columns=16
    )
    blob.private_block(0x0029, "PORTAL INTEROP", create=True).add_new(0x10, "OB", PRIVATE_BLOB)
    extra = {"jls": to_bytes(jpeg_ls), "blob": to_bytes(blob)}
    ingest(org, location, extra)
    # A prior CT of the same patient, and another patient's MR.
    prior = _series(PRIOR_STUDY_UID, study_date="20220310", accession="ACC7002")
    other = _series(
        OTHER_STUDY_UID,
        patient_name="Durand^Paul",
        patient_id="PAT-7003",
        birth_date="19800101",
        sex="M",
        study_date="20230505",
        study_description="MR Knee",
        accession="ACC7003",
        modality="MR",
        series_description="Knee sagittal",
        body_part="KNEE",
    )
    ingest(org, location, {f"prior{i}": to_bytes(ds) for i, ds in enumerate(prior)})
    ingest(org, location, {f"other{i}": to_bytes(ds) for i, ds in enumerate(other)})
    files = dict(ct_study.files)
    files[jpeg_ls.SOPInstanceUID] = extra["jls"]
    files[blob.SOPInstanceUID] = extra["blob"]
    return World(
        ct=ct_study, jpeg_ls=pydicom.dcmread(io.BytesIO(extra["jls"])), blob=blob, files=files
    )


@pytest.fixture
def client(settings, alice) -> Iterator:
    from dicomweb_client.api import DICOMwebClient

    token = api_token(alice)
    with live_portal(settings) as url:
        # Each request closes its connection, so no server thread waits on it at the end.
        yield DICOMwebClient(
            f"{url}/dicomweb",
            headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        )


def uids(results: list[dict], tag: str) -> list[str]:
    return [result[tag]["Value"][0] for result in results]


STUDY_UID_TAG, SERIES_UID_TAG, SOP_UID_TAG = "0020000D", "0020000E", "00080018"


# --- QIDO-RS ----------------------------------------------------------------------------------


def test_studies_are_found_by_wildcard_date_range_and_pages(world, client):
    by_name = client.search_for_studies(search_filters={"PatientName": "dub*"})
    upper_case = client.search_for_studies(search_filters={"PatientName": "DUBOIS^M?RIE"})
    in_2024 = client.search_for_studies(search_filters={"StudyDate": "20240101-20241231"})
    before_2024 = client.search_for_studies(search_filters={"StudyDate": "-20231231"})
    first_page = client.search_for_studies(limit=2, offset=0)
    second_page = client.search_for_studies(limit=2, offset=2)
    everything = client.search_for_studies()

    assert sorted(uids(by_name, STUDY_UID_TAG)) == sorted([CT_STUDY_UID, PRIOR_STUDY_UID])
    assert sorted(uids(upper_case, STUDY_UID_TAG)) == sorted([CT_STUDY_UID, PRIOR_STUDY_UID])
    assert uids(in_2024, STUDY_UID_TAG) == [CT_STUDY_UID]
    assert sorted(uids(before_2024, STUDY_UID_TAG)) == sorted([PRIOR_STUDY_UID, OTHER_STUDY_UID])
    assert len(first_page) == 2 and len(second_page) == 1
    paged = uids(first_page, STUDY_UID_TAG) + uids(second_page, STUDY_UID_TAG)
    assert sorted(paged) == sorted(uids(everything, STUDY_UID_TAG))
    assert len(set(paged)) == 3
    [ct] = in_2024
    assert ct["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Dubois^Marie"}]}
    assert sorted(ct["00080061"]["Value"]) == ["CT", "MR"]
    assert ct["00201208"]["Value"] == [6]  # NumberOfStudyRelatedInstances
    assert ct["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{CT_STUDY_UID}")


def test_includefield_adds_attributes_by_keyword_by_tag_or_all(world, client):
    axial = world.ct.instances[0].series.series_uid
    plain = client.search_for_series(CT_STUDY_UID, search_filters={"SeriesInstanceUID": axial})
    by_keyword = client.search_for_series(
        CT_STUDY_UID, search_filters={"SeriesInstanceUID": axial}, fields=["BodyPartExamined"]
    )
    by_tag = client.search_for_instances(CT_STUDY_UID, axial, fields=["00180015"])
    everything = client.search_for_studies(
        search_filters={"StudyInstanceUID": CT_STUDY_UID}, fields=["all"]
    )

    assert "00180015" not in plain[0]
    assert by_keyword[0]["00180015"] == {"vr": "CS", "Value": ["HEAD"]}
    assert {r["00180015"]["Value"][0] for r in by_tag} == {"HEAD"}
    # Study level: the patient's birth date and sex come by default, and with "all" too.
    assert everything[0]["00100030"]["Value"] == ["19590303"]
    assert everything[0]["00081030"]["Value"] == ["CT Head"]


def test_series_are_found_in_a_study_and_across_studies(world, client):
    in_study = client.search_for_series(CT_STUDY_UID)
    ct_only = client.search_for_series(CT_STUDY_UID, search_filters={"Modality": "CT"})
    # Text other than person names matches case-sensitively (PS3.4 C.2.2.2.4).
    head = client.search_for_series(search_filters={"SeriesDescription": "Head*"})
    lower = client.search_for_series(search_filters={"SeriesDescription": "head*"})
    knee_2023 = client.search_for_series(
        search_filters={"StudyDate": "20230101-20231231", "Modality": "MR"},
        fields=["StudyDescription"],
    )
    paged = client.search_for_series(CT_STUDY_UID, limit=1, offset=1)

    assert len(in_study) == 4
    assert {r["00080060"]["Value"][0] for r in ct_only} == {"CT"}
    assert len(ct_only) == 2  # the axial CT and the scout
    assert {r[STUDY_UID_TAG]["Value"][0] for r in head} == {CT_STUDY_UID, PRIOR_STUDY_UID}
    assert lower == []
    assert uids(knee_2023, STUDY_UID_TAG) == [OTHER_STUDY_UID]
    assert knee_2023[0]["00081030"]["Value"] == ["MR Knee"]
    assert len(paged) == 1
    assert uids(paged, SERIES_UID_TAG)[0] in uids(in_study, SERIES_UID_TAG)


def test_instances_are_found_in_a_series_a_study_and_everywhere(world, client):
    axial = world.ct.instances[0].series.series_uid
    in_series = client.search_for_instances(CT_STUDY_UID, axial, fields=["Rows", "00280011"])
    in_study = client.search_for_instances(CT_STUDY_UID)
    by_uid = client.search_for_instances(
        search_filters={"SOPInstanceUID": world.jpeg_ls.SOPInstanceUID}
    )
    pages = [client.search_for_instances(CT_STUDY_UID, axial, limit=2, offset=n) for n in (0, 2)]

    assert len(in_series) == 3
    assert {(r["00280010"]["Value"][0], r["00280011"]["Value"][0]) for r in in_series} == {(64, 48)}
    assert sorted(uids(in_study, SOP_UID_TAG)) == sorted(world.files)
    assert uids(by_uid, SERIES_UID_TAG) == [world.jpeg_ls.SeriesInstanceUID]
    assert [len(page) for page in pages] == [2, 1]
    assert sorted(uids(pages[0] + pages[1], SOP_UID_TAG)) == sorted(uids(in_series, SOP_UID_TAG))


# --- WADO-RS: instances -----------------------------------------------------------------------


def assert_same_pixels(received: Dataset, stored: bytes) -> None:
    original = pydicom.dcmread(io.BytesIO(stored))
    assert received.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(received.pixel_array, original.pixel_array), received.SOPInstanceUID
    if not original.file_meta.TransferSyntaxUID.is_compressed:
        assert received.PixelData == original.PixelData


def test_a_study_series_and_instance_are_retrieved_with_the_stored_pixels(world, client):
    study = client.retrieve_study(CT_STUDY_UID)
    as_stored = client.retrieve_study(CT_STUDY_UID, media_types=(("application/dicom", "*"),))
    first = world.ct.instances[0]
    series = client.retrieve_series(CT_STUDY_UID, first.series.series_uid)
    instance = client.retrieve_instance(
        CT_STUDY_UID, first.series.series_uid, first.sop_instance_uid
    )

    assert sorted(ds.SOPInstanceUID for ds in study) == sorted(world.files)
    for ds in study:
        # Without a transfer-syntax parameter, explicit VR little endian (decompressed).
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert_same_pixels(ds, world.files[ds.SOPInstanceUID])
    stored_jls = next(ds for ds in as_stored if ds.SOPInstanceUID == world.jpeg_ls.SOPInstanceUID)
    assert stored_jls.file_meta.TransferSyntaxUID == JPEGLSLossless
    assert stored_jls.PixelData == world.jpeg_ls.PixelData
    assert len(series) == 3
    for ds in [*series, instance]:
        assert_same_pixels(ds, world.files[ds.SOPInstanceUID])


# --- WADO-RS: metadata and bulk data ----------------------------------------------------------


def check_dicom_json(attributes: dict, where: str = "") -> list[tuple[str, str]]:
    """Assert PS3.18 F.2 on one data set; returns its (tag path, BulkDataURI) pairs."""
    uris = []
    for tag, attribute in attributes.items():
        path = f"{where}{tag}"
        assert _TAG.match(tag), f"{path}: not an 8-digit upper-case hex tag"
        assert attribute.get("vr") in VRS, f"{path}: bad vr {attribute.get('vr')!r}"
        values = [key for key in ("Value", "BulkDataURI", "InlineBinary") if key in attribute]
        assert len(values) <= 1, f"{path}: more than one of {values}"
        assert set(attribute) <= {"vr", "Value", "BulkDataURI", "InlineBinary"}, path
        if "Value" in attribute:
            assert isinstance(attribute["Value"], list) and attribute["Value"], path
        if attribute["vr"] == "PN" and "Value" in attribute:
            for name in attribute["Value"]:
                assert isinstance(name, dict), f"{path}: PN values are objects"
                assert set(name) <= {"Alphabetic", "Ideographic", "Phonetic"}, path
        if attribute["vr"] == "SQ":
            for index, item in enumerate(attribute.get("Value", [])):
                uris += check_dicom_json(item, f"{path}[{index}].")
        if "BulkDataURI" in attribute:
            uris.append((path, attribute["BulkDataURI"]))
    return uris


def test_metadata_is_valid_dicom_json_and_every_bulk_data_uri_resolves(world, client):
    metadata = client.retrieve_study_metadata(CT_STUDY_UID)
    series = client.retrieve_series_metadata(CT_STUDY_UID, world.blob.SeriesInstanceUID)
    instance = client.retrieve_instance_metadata(
        CT_STUDY_UID, world.blob.SeriesInstanceUID, world.blob.SOPInstanceUID
    )

    assert sorted(m[SOP_UID_TAG]["Value"][0] for m in metadata) == sorted(world.files)
    assert series == [instance]
    resolved = 0
    for attributes in metadata:
        sop_uid = attributes[SOP_UID_TAG]["Value"][0]
        stored = pydicom.dcmread(io.BytesIO(world.files[sop_uid]))
        # pydicom reads it back as a data set (bulk data left out).
        parsed = Dataset.from_json(attributes, bulk_data_uri_handler=lambda *_: b"")
        assert parsed.SOPInstanceUID == sop_uid
        assert str(parsed.PatientName) == "Dubois^Marie"
        for tag_path, uri in check_dicom_json(attributes):
            [value] = [b"".join(client.retrieve_bulkdata(uri))]
            if tag_path == "7FE00010":
                if stored.file_meta.TransferSyntaxUID.is_compressed:
                    expected = b"".join(generate_frames(stored.PixelData, number_of_frames=1))
                    assert value in (expected, stored.pixel_array.astype("<u2").tobytes())
                else:
                    assert value == stored.PixelData
            else:
                tag = int(tag_path[-8:], 16)
                assert value == stored[tag].value, f"{sop_uid} {tag_path}"
            resolved += 1
    blob_uris = check_dicom_json(instance)
    assert any(tag.endswith("00291010") for tag, _ in blob_uris), "the blob is bulk data"
    assert resolved >= len(world.files) + 1


# --- WADO-RS: frames --------------------------------------------------------------------------


def test_frames_come_in_the_stored_syntax_and_in_explicit_little_endian(world, client):
    first = world.ct.instances[0]
    stored_first = pydicom.dcmread(io.BytesIO(world.files[first.sop_instance_uid]))
    jls = world.jpeg_ls

    raw = client.retrieve_instance_frames(
        CT_STUDY_UID, first.series.series_uid, first.sop_instance_uid, frame_numbers=[1]
    )
    raw_named = client.retrieve_instance_frames(
        CT_STUDY_UID,
        first.series.series_uid,
        first.sop_instance_uid,
        frame_numbers=[1],
        media_types=(RAW_LE,),
    )
    compressed = client.retrieve_instance_frames(
        CT_STUDY_UID,
        jls.SeriesInstanceUID,
        jls.SOPInstanceUID,
        frame_numbers=[1],
        media_types=(("image/jls", str(JPEGLSLossless)),),
    )
    decompressed = client.retrieve_instance_frames(
        CT_STUDY_UID,
        jls.SeriesInstanceUID,
        jls.SOPInstanceUID,
        frame_numbers=[1],
        media_types=(RAW_LE,),
    )

    assert raw == raw_named == [stored_first.PixelData]
    [stored_frame] = list(generate_frames(jls.PixelData, number_of_frames=1))
    assert compressed == [stored_frame]
    expected = jls.pixel_array.astype(jls.pixel_array.dtype.newbyteorder("<")).tobytes()
    assert decompressed == [expected]


# --- Rendered ---------------------------------------------------------------------------------


def test_instances_and_frames_render_as_png_and_jpeg(world, client):
    first = world.ct.instances[0]
    png = client.retrieve_instance_rendered(
        CT_STUDY_UID, first.series.series_uid, first.sop_instance_uid, media_types=("image/png",)
    )
    jpeg = client.retrieve_instance_frames_rendered(
        CT_STUDY_UID,
        first.series.series_uid,
        first.sop_instance_uid,
        frame_numbers=[1],
        media_types=("image/jpeg",),
    )
    jls = client.retrieve_instance_rendered(
        CT_STUDY_UID,
        world.jpeg_ls.SeriesInstanceUID,
        world.jpeg_ls.SOPInstanceUID,
        media_types=("image/png",),
    )

    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert Image.open(io.BytesIO(png)).size == (48, 64)
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    assert Image.open(io.BytesIO(jls)).size == (world.jpeg_ls.Columns, world.jpeg_ls.Rows)


# --- STOW-RS ----------------------------------------------------------------------------------


def test_a_study_stored_with_stow_is_found_and_retrieved_identical(world, client):
    sent = [
        pydicom.dcmread(io.BytesIO(to_bytes(ds)))
        for ds in _series(
            STOWED_STUDY_UID,
            patient_name="Martin^Luc",
            patient_id="PAT-7004",
            accession="ACC7004",
            study_date="20240915",
            slices=3,
        )
    ]

    answer = client.store_instances(sent)
    found = client.search_for_studies(search_filters={"PatientName": "martin*"})
    retrieved = client.retrieve_study(STOWED_STUDY_UID)

    assert {item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence} == {
        ds.SOPInstanceUID for ds in sent
    }
    assert "FailedSOPSequence" not in answer or not answer.FailedSOPSequence
    assert uids(found, STUDY_UID_TAG) == [STOWED_STUDY_UID]
    assert found[0]["00201208"]["Value"] == [3]
    by_uid = {ds.SOPInstanceUID: ds for ds in retrieved}
    assert sorted(by_uid) == sorted(ds.SOPInstanceUID for ds in sent)
    for ds in sent:
        assert by_uid[ds.SOPInstanceUID].PixelData == ds.PixelData
