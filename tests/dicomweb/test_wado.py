"""WADO-RS: a study, series or instance retrieved whole, its metadata, frames and bulk data,
in the transfer syntax the client asks for, through the one access authority.

The stories use St. Elsewhere's CT study of Dubois^Marie (``ct_study``: three CT slices and an
MR image, plus here a scout with an icon and a private blob, and a structured report), a study
of Lefevre^Anne holding one of pydicom's bundled files per stored syntax clients meet in the wild
(implicit VR, big endian, deflate, JPEG, JPEG-LS, JPEG 2000, RLE, a JPEG cine), and alice (a
clinician of St. Elsewhere), carol (of another organization) and anonymous callers.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from email.parser import BytesParser

import numpy as np
import pydicom
import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from pydicom import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import pixel_array
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from audit.models import Action, AuditEvent
from dicomweb import wado
from dicomweb.multipart import parse_accept
from studies.anonymize import pseudonym
from studies.models import AccessLevel, Instance, Study
from studies.synthetic import bundled_test_file, make_series, to_bytes
from tests.accounts.helpers import HttpsClient
from tests.dicomweb.conftest import CT_STUDY_UID, ingest
from tests.factories import share_entry

EXPLICIT_LE = str(ExplicitVRLittleEndian)
DICOM_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
OHIF_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"
RAW_FRAMES = 'multipart/related; type="application/octet-stream"'
SITE_URL = "https://portal.example.org:8443"
SYNTAXES_STUDY_UID = "1.2.826.0.1.3680043.8.498.9001"
UNKNOWN_UID = "1.2.826.0.1.3680043.8.498.404"

IMPLICIT = "MR_small_implicit.dcm"
BIG_ENDIAN = "MR_small_bigendian.dcm"
DEFLATED = "image_dfl.dcm"
DOSE = "rtdose.dcm"  # 15 frames, 32-bit, implicit VR
JPEG = "SC_rgb_jpeg_dcmtk.dcm"  # YBR_FULL
JPEG_LS = "MR_small_jpeg_ls_lossless.dcm"
J2K = "MR_small_jp2klossless.dcm"
RLE = "MR_small_RLE.dcm"
CINE = "examples_ybr_color.dcm"  # 30 JPEG frames, YBR_FULL_422


@pytest.fixture(autouse=True)
def _site_url(settings):
    settings.SITE_URL = SITE_URL


# --- The data ---------------------------------------------------------------------------------


@dataclass
class Stored:
    instance: Instance
    data: bytes  # the file as stored

    @property
    def dataset(self) -> Dataset:
        return pydicom.dcmread(io.BytesIO(self.data))


def _instance(ds: Dataset) -> Instance:
    return Instance.objects.select_related("series__study").get(sop_instance_uid=ds.SOPInstanceUID)


@pytest.fixture
def syntaxes(org, location) -> dict[str, Stored]:
    """One instance per stored syntax (pydicom's bundled files, given new UIDs), each its own
    series of one study of Lefevre^Anne."""
    found = {}
    for name in [IMPLICIT, BIG_ENDIAN, DEFLATED, DOSE, JPEG, JPEG_LS, J2K, RLE, CINE]:
        ds = pydicom.dcmread(bundled_test_file(name))
        ds.StudyInstanceUID = SYNTAXES_STUDY_UID
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID = "PAT-9001"
        ds.PatientName = "Lefevre^Anne"
        data = to_bytes(ds)
        ingest(org, location, {name: data})
        found[name] = Stored(_instance(ds), data)
    return found


ICON = bytes(range(256)) * 16
BLOB = bytes(range(200)) * 10
ICC = b"\x00\x01\x02\x03" * 4


@pytest.fixture
def scout(ct_study, org, location) -> Stored:
    """A scout of the CT study carrying what metadata must put behind BulkDataURIs: an icon
    (pixel data inside a sequence) and a 2000-byte private value; a short binary value inline;
    and the names that anonymization removes."""
    (ds,) = make_series(
        patient_name="Dubois^Marie",
        patient_id="PAT-7001",
        birth_date="19590303",
        sex="F",
        study_uid=CT_STUDY_UID,
        study_date="20240601",
        study_description="CT Head",
        accession="ACC7001",
        modality="CT",
        series_number=3,
        series_description="Scout",
        slices=1,
        rows=32,
        columns=32,
        institution="St. Elsewhere Radiology",
        referring_physician="Quinn^Michaela",
    )
    icon = Dataset()
    icon.Rows, icon.Columns, icon.SamplesPerPixel = 64, 64, 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 8, 7, 0
    icon.add_new(0x7FE00010, "OB", ICON)
    ds.IconImageSequence = [icon]
    ds.private_block(0x0029, "PORTAL TEST", create=True).add_new(0x10, "OB", BLOB)
    ds.add_new(0x00282000, "OB", ICC)
    data = to_bytes(ds)
    ingest(org, location, {"scout": data})
    return Stored(_instance(ds), data)


@pytest.fixture
def padded(ct_study, org, location) -> Stored:
    """pydicom's CT_small, filed in the CT study: its pixel data is followed by trailing padding,
    so it cannot be de-identified by rewriting the attributes before the pixel data alone."""
    ds = pydicom.dcmread(bundled_test_file("CT_small.dcm"))
    ds.StudyInstanceUID = CT_STUDY_UID
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName = "PAT-7001", "Dubois^Marie"
    data = to_bytes(ds)
    ingest(org, location, {"padded": data})
    return Stored(_instance(ds), data)


@pytest.fixture
def report(ct_study, org, location) -> Stored:
    """pydicom's structured report, filed in the CT study."""
    ds = pydicom.dcmread(bundled_test_file("test-SR.dcm"))
    ds.StudyInstanceUID = CT_STUDY_UID
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName = "PAT-7001", "Dubois^Marie"
    data = to_bytes(ds)
    ingest(org, location, {"report": data})
    return Stored(_instance(ds), data)


# --- Reading answers --------------------------------------------------------------------------


def body_of(response) -> bytes:
    """The whole body; a streamed one is read once and kept on the response."""
    if not response.streaming:
        return response.content
    if not hasattr(response, "streamed_body"):
        response.streamed_body = b"".join(response.streaming_content)
    return response.streamed_body


def parts_of(response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart/related answer, split the way
    dicomweb-client and OHIF split it: at CRLF "--boundary"."""
    content_type = response["Content-Type"]
    assert content_type.startswith("multipart/related;"), content_type
    boundary = re.search(r"boundary=\"?([^\";]+)", content_type).group(1).encode()
    opening, closing = b"--" + boundary + b"\r\n", b"\r\n--" + boundary + b"--\r\n"
    body = body_of(response)
    assert body.startswith(opening) and body.endswith(closing)
    parts = []
    for piece in body[len(opening) : -len(closing)].split(b"\r\n--" + boundary + b"\r\n"):
        head, _sep, content = piece.partition(b"\r\n\r\n")
        parts.append((BytesParser().parsebytes(head + b"\r\n\r\n")["Content-Type"], content))
    return parts


def datasets_of(response) -> list[Dataset]:
    return [pydicom.dcmread(io.BytesIO(content)) for _type, content in parts_of(response)]


def study_url(study_uid: str, *rest: str) -> str:
    return "/".join([reverse("dicomweb:study", args=[study_uid]), *rest])


def series_url(instance: Instance, *rest: str) -> str:
    return study_url(instance.series.study.study_uid, "series", instance.series.series_uid, *rest)


def instance_url(instance: Instance, *rest: str) -> str:
    return series_url(instance, "instances", instance.sop_instance_uid, *rest)


def retrieved_events():
    return AuditEvent.objects.filter(action=Action.INSTANCES_RETRIEVED)


def little_endian_bytes(array: np.ndarray) -> bytes:
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def bulk_data_uris(attributes: dict) -> list[str]:
    found = []
    for element in attributes.values():
        if "BulkDataURI" in element:
            found.append(element["BulkDataURI"])
        for item in element.get("Value", []) if element["vr"] == "SQ" else []:
            found.extend(bulk_data_uris(item))
    return found


# --- Retrieve -----------------------------------------------------------------------------------


def test_study_series_and_instance_come_as_dicom_parts_byte_for_byte_as_stored(
    ct_study, alice, api_client
):
    client = api_client(alice)
    ct = ct_study.instances[0]

    for url, count in [(study_url(CT_STUDY_UID), 4), (series_url(ct), 3), (instance_url(ct), 1)]:
        response = client.get(url, HTTP_ACCEPT=DICOM_AS_STORED)

        assert response.status_code == 200
        assert response["Content-Type"].startswith('multipart/related; type="application/dicom";')
        parts = parts_of(response)
        assert len(parts) == count
        for content_type, content in parts:
            assert content_type == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
            uid = pydicom.dcmread(io.BytesIO(content)).SOPInstanceUID
            assert content == ct_study.files[uid]


def test_without_a_transfer_syntax_instances_come_in_explicit_little_endian(
    ct_study, syntaxes, alice, api_client
):
    client = api_client(alice)
    for accept in ['multipart/related; type="application/dicom"', "*/*", "multipart/related"]:
        response = client.get(study_url(SYNTAXES_STUDY_UID), HTTP_ACCEPT=accept)

        assert response.status_code == 200
        datasets = datasets_of(response)
        assert len(datasets) == len(syntaxes)
        for (content_type, _content), ds in zip(parts_of(response), datasets, strict=True):
            assert content_type == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
            assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    # No Accept header at all is the same.
    assert len(datasets_of(client.get(study_url(CT_STUDY_UID)))) == 4


@pytest.mark.parametrize("name", [IMPLICIT, BIG_ENDIAN, DEFLATED, DOSE])
def test_implicit_big_endian_and_deflated_files_leave_as_explicit_little_endian_even_as_stored(
    syntaxes, alice, api_client, name
):
    stored = syntaxes[name]
    for accept in [DICOM_AS_STORED, 'multipart/related; type="application/dicom"']:
        response = api_client(alice).get(instance_url(stored.instance), HTTP_ACCEPT=accept)

        ((content_type, content),) = parts_of(response)
        assert content_type == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
        served = pydicom.dcmread(io.BytesIO(content))
        assert served.file_meta.TransferSyntaxUID == EXPLICIT_LE
        assert served.SOPInstanceUID == stored.instance.sop_instance_uid
        assert served.PatientName == "Lefevre^Anne"
        assert np.array_equal(pixel_array(served), pixel_array(stored.dataset))


@pytest.mark.parametrize("name", [JPEG, JPEG_LS, J2K, RLE, CINE])
def test_compressed_files_go_out_as_stored_when_asked_and_decompressed_by_default(
    syntaxes, alice, api_client, name
):
    stored = syntaxes[name]
    client = api_client(alice)

    as_stored = client.get(instance_url(stored.instance), HTTP_ACCEPT=DICOM_AS_STORED)
    ((content_type, content),) = parts_of(as_stored)
    assert content_type == f"application/dicom; transfer-syntax={stored.instance.transfer_syntax}"
    assert content == stored.data

    default = client.get(instance_url(stored.instance))
    ((content_type, content),) = parts_of(default)
    assert content_type == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
    served = pydicom.dcmread(io.BytesIO(content))
    assert served.SOPInstanceUID == stored.instance.sop_instance_uid
    # What pydicom decodes from the stored file (colour as RGB), now uncompressed.
    assert np.array_equal(served.pixel_array, pixel_array(stored.dataset))


def test_a_named_lossless_syntax_is_produced_when_the_server_can_encode_it(
    ct_study, syntaxes, alice, api_client
):
    client = api_client(alice)
    ct = ct_study.instances[0]
    ct_pixels = pixel_array(pydicom.dcmread(io.BytesIO(ct_study.files[ct.sop_instance_uid])))
    for instance, syntax, expected in [
        (syntaxes[J2K].instance, RLELossless, pixel_array(syntaxes[J2K].dataset)),
        (ct, JPEG2000Lossless, ct_pixels),
    ]:
        response = client.get(
            instance_url(instance),
            HTTP_ACCEPT=f'multipart/related; type="application/dicom"; transfer-syntax={syntax}',
        )

        ((content_type, content),) = parts_of(response)
        assert content_type == f"application/dicom; transfer-syntax={syntax}"
        served = pydicom.dcmread(io.BytesIO(content))
        assert served.file_meta.TransferSyntaxUID == syntax
        assert served.SOPInstanceUID == instance.sop_instance_uid
        assert np.array_equal(served.pixel_array, expected)


def test_a_syntax_that_cannot_be_produced_is_406_saying_why(ct_study, alice, api_client):
    client = api_client(alice)
    before = retrieved_events().count()
    for accept, reason in [
        # Lossy compression is never applied by the server.
        (
            f'multipart/related; type="application/dicom"; transfer-syntax={JPEGBaseline8Bit}',
            "does not compress pixel data as JPEG Baseline",
        ),
        (
            f"multipart/related; type=application/dicom; transfer-syntax={ImplicitVRLittleEndian}",
            "never served on the web",
        ),
        ("application/dicom", 'multipart/related; type="application/dicom"'),
        ("application/dicom+json", 'multipart/related; type="application/dicom"'),
    ]:
        response = client.get(study_url(CT_STUDY_UID), HTTP_ACCEPT=accept)

        assert response.status_code == 406, accept
        assert reason in response.json()["detail"]
    assert retrieved_events().count() == before


def test_each_instance_gets_the_best_syntax_it_can_have_and_its_part_says_which(
    syntaxes, alice, api_client
):
    accept = (
        f'multipart/related; type="application/dicom"; transfer-syntax={JPEGBaseline8Bit}, '
        f"multipart/related; type=application/dicom; transfer-syntax={EXPLICIT_LE}; q=0.5"
    )
    response = api_client(alice).get(study_url(SYNTAXES_STUDY_UID), HTTP_ACCEPT=accept)

    served = {
        pydicom.dcmread(io.BytesIO(content)).SOPInstanceUID: content_type
        for content_type, content in parts_of(response)
    }
    jpeg_files = {
        syntaxes[JPEG].instance.sop_instance_uid,
        syntaxes[CINE].instance.sop_instance_uid,
    }
    for uid, content_type in served.items():
        syntax = JPEGBaseline8Bit if uid in jpeg_files else EXPLICIT_LE
        assert content_type == f"application/dicom; transfer-syntax={syntax}"


def test_head_answers_headers_without_retrieving(ct_study, alice, api_client):
    response = api_client(alice).head(study_url(CT_STUDY_UID))

    assert response.status_code == 200
    assert response["Content-Type"].startswith('multipart/related; type="application/dicom";')
    assert body_of(response) == b""
    assert not retrieved_events().exists()


# --- Metadata -----------------------------------------------------------------------------------


def test_metadata_is_dicom_json_at_every_level(ct_study, alice, api_client):
    client = api_client(alice)
    ct = ct_study.instances[0]
    for url, count in [
        (study_url(CT_STUDY_UID, "metadata"), 4),
        (series_url(ct, "metadata"), 3),
        (instance_url(ct, "metadata"), 1),
    ]:
        response = client.get(url, HTTP_ACCEPT="application/dicom+json")

        assert response.status_code == 200
        assert response["Content-Type"] == "application/dicom+json"
        items = json.loads(body_of(response))
        assert len(items) == count
        for item in items:
            ds = Dataset.from_json(item, bulk_data_uri_handler=lambda *args: b"")
            assert ds.StudyInstanceUID == CT_STUDY_UID
            assert item["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Dubois^Marie"}]}
            assert item["7FE00010"] == {
                "vr": "OW",
                "BulkDataURI": SITE_URL + instance_url(_instance(ds), "bulkdata", "7FE00010"),
            }
            assert item["00083002"] == {"vr": "UI", "Value": [EXPLICIT_LE]}
            assert not any(key.startswith("0002") for key in item)


def test_every_bulk_data_uri_in_metadata_resolves_to_the_value(scout, alice, api_client):
    client = api_client(alice)
    response = client.get(instance_url(scout.instance, "metadata"))
    (item,) = json.loads(body_of(response))

    icon_path = "00880200/1/7FE00010"
    assert sorted(bulk_data_uris(item)) == sorted(
        SITE_URL + instance_url(scout.instance, "bulkdata", path)
        for path in ["00291010", icon_path, "7FE00010"]
    )
    assert item["00282000"]["InlineBinary"]  # short binary values stay inline

    def fetch(_tag, _vr, uri: str) -> bytes:
        assert uri.startswith(SITE_URL)
        answer = client.get(uri[len(SITE_URL) :], HTTP_ACCEPT=RAW_FRAMES)
        assert answer.status_code == 200, uri
        return b"".join(content for _type, content in parts_of(answer))

    rebuilt = Dataset.from_json(item, bulk_data_uri_handler=fetch)
    stored = scout.dataset
    assert rebuilt.PixelData == stored.PixelData
    assert rebuilt.IconImageSequence[0].PixelData == ICON
    assert rebuilt[0x00291010].value == BLOB
    assert rebuilt.ICCProfile == ICC


def test_pixel_bulk_data_of_a_multiframe_is_its_frames(syntaxes, alice, api_client):
    cine = syntaxes[CINE]
    client = api_client(alice)
    (item,) = json.loads(body_of(client.get(instance_url(cine.instance, "metadata"))))
    assert item["00083002"]["Value"] == [str(JPEGBaseline8Bit)]
    uri = item["7FE00010"]["BulkDataURI"][len(SITE_URL) :]

    as_stored = parts_of(client.get(uri, HTTP_ACCEPT=OHIF_FRAMES))
    stored_frames = list(generate_frames(cine.dataset.PixelData, number_of_frames=30))
    assert [content for _type, content in as_stored] == stored_frames
    assert {content_type for content_type, _ in as_stored} == {
        f"image/jpeg; transfer-syntax={JPEGBaseline8Bit}"
    }

    uncompressed = parts_of(client.get(uri, HTTP_ACCEPT=RAW_FRAMES))
    assert len(uncompressed) == 30
    assert uncompressed[7][1] == pixel_array(cine.dataset)[7].tobytes()


def test_metadata_of_a_big_endian_file_is_little_endian(syntaxes, alice, api_client):
    stored = syntaxes[BIG_ENDIAN]
    client = api_client(alice)
    (item,) = json.loads(body_of(client.get(instance_url(stored.instance, "metadata"))))

    assert item["00083002"]["Value"] == [EXPLICIT_LE]
    uri = item["7FE00010"]["BulkDataURI"][len(SITE_URL) :]
    ((content_type, content),) = parts_of(client.get(uri))
    assert content_type == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    assert content == little_endian_bytes(pixel_array(stored.dataset))


def test_metadata_must_be_asked_for_as_json(ct_study, alice, api_client):
    response = api_client(alice).get(
        study_url(CT_STUDY_UID, "metadata"), HTTP_ACCEPT="application/dicom+xml"
    )

    assert response.status_code == 406
    assert "application/dicom+json" in response.json()["detail"]


def test_metadata_of_a_200_slice_series_is_read_once_per_recipient_kind_then_cached(
    org, location, alice, carol, api_client, monkeypatch
):
    slices = make_series(
        patient_name="Martin^Paul",
        patient_id="PAT-7200",
        birth_date="19800101",
        sex="M",
        study_uid="1.2.826.0.1.3680043.8.498.7200",
        study_date="20240601",
        study_description="CT Chest",
        accession="ACC7200",
        modality="CT",
        series_number=1,
        series_description="Chest",
        slices=200,
        rows=16,
        columns=16,
    )
    ingest(org, location, {f"s{i}": to_bytes(ds) for i, ds in enumerate(slices)})
    share_entry(carol, Study.objects.get(study_uid=slices[0].StudyInstanceUID), anonymized=True)
    series = series_url(_instance(slices[0]), "metadata")
    opened = []
    real_open_stored = wado.open_stored
    monkeypatch.setattr(wado, "open_stored", lambda fp: opened.append(fp) or real_open_stored(fp))

    first = body_of(api_client(alice).get(series))
    assert len(json.loads(first)) == 200 and len(opened) == 200
    assert body_of(api_client(alice).get(series)) == first
    assert len(opened) == 200  # every dataset came from the cache

    anonymized = body_of(api_client(carol).get(series))
    assert len(opened) == 400  # never the identified datasets
    assert b"Martin" in first and b"Martin" not in anonymized
    assert body_of(api_client(carol).get(series)) == anonymized
    assert len(opened) == 400


# --- Frames -------------------------------------------------------------------------------------


def test_frames_come_uncompressed_in_little_endian(ct_study, alice, api_client):
    ct = ct_study.instances[0]
    response = api_client(alice).get(instance_url(ct, "frames", "1"), HTTP_ACCEPT=RAW_FRAMES)

    assert response.status_code == 200
    assert response["Content-Type"].startswith(
        'multipart/related; type="application/octet-stream";'
    )
    assert int(response["Content-Length"]) == len(response.content)
    ((content_type, content),) = parts_of(response)
    assert content_type == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    stored = pydicom.dcmread(io.BytesIO(ct_study.files[ct.sop_instance_uid]))
    assert content == stored.PixelData


def test_frames_of_a_multiframe_come_in_the_order_asked(syntaxes, alice, api_client):
    dose = syntaxes[DOSE]
    client = api_client(alice)
    response = client.get(instance_url(dose.instance, "frames", "3,1,15"), HTTP_ACCEPT=RAW_FRAMES)

    frames = pixel_array(dose.dataset)
    assert [content for _type, content in parts_of(response)] == [
        frames[2].tobytes(),
        frames[0].tobytes(),
        frames[14].tobytes(),
    ]

    cine = syntaxes[CINE]
    response = client.get(instance_url(cine.instance, "frames", "2,4"), HTTP_ACCEPT=RAW_FRAMES)
    decoded = pixel_array(cine.dataset)
    assert [content for _type, content in parts_of(response)] == [
        decoded[1].tobytes(),
        decoded[3].tobytes(),
    ]


@pytest.mark.parametrize(
    ("name", "media_type"),
    [(JPEG, "image/jpeg"), (JPEG_LS, "image/jls"), (J2K, "image/jp2"), (RLE, "image/dicom-rle")],
)
def test_compressed_frames_come_as_stored_for_ohif_and_in_their_own_media_type(
    syntaxes, alice, api_client, name, media_type
):
    stored = syntaxes[name]
    syntax = stored.instance.transfer_syntax
    (stored_frame,) = generate_frames(stored.dataset.PixelData, number_of_frames=1)
    client = api_client(alice)
    for accept in [
        OHIF_FRAMES,
        f'multipart/related; type="{media_type}"',
        f"multipart/related; type={media_type}; transfer-syntax={syntax}",
    ]:
        response = client.get(instance_url(stored.instance, "frames", "1"), HTTP_ACCEPT=accept)

        assert response.status_code == 200, accept
        assert response["Content-Type"].startswith(f'multipart/related; type="{media_type}";')
        assert parts_of(response) == [(f"{media_type}; transfer-syntax={syntax}", stored_frame)]


def test_frames_of_a_jpeg_cine_follow_ohifs_request(syntaxes, alice, api_client):
    cine = syntaxes[CINE]
    response = api_client(alice).get(
        instance_url(cine.instance, "frames", "30"), HTTP_ACCEPT=OHIF_FRAMES
    )

    stored_frames = list(generate_frames(cine.dataset.PixelData, number_of_frames=30))
    assert parts_of(response) == [
        (f"image/jpeg; transfer-syntax={JPEGBaseline8Bit}", stored_frames[29])
    ]


def test_any_media_type_gets_uncompressed_frames(syntaxes, alice, api_client):
    # dicomweb-client asks frames and bulk data as multipart/related; type="*/*": it cannot
    # see part headers, so uncompressed pixels are the only ones it can interpret.
    jpeg = syntaxes[JPEG]
    response = api_client(alice).get(
        instance_url(jpeg.instance, "frames", "1"), HTTP_ACCEPT='multipart/related; type="*/*"'
    )

    ((content_type, content),) = parts_of(response)
    assert content_type == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    assert content == pixel_array(jpeg.dataset).tobytes()


def test_native_and_big_endian_frames_asked_as_stored_are_little_endian(
    ct_study, syntaxes, alice, api_client
):
    client = api_client(alice)
    big = syntaxes[BIG_ENDIAN]
    response = client.get(instance_url(big.instance, "frames", "1"), HTTP_ACCEPT=OHIF_FRAMES)

    ((content_type, content),) = parts_of(response)
    assert content_type == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    assert content == little_endian_bytes(pixel_array(big.dataset))


def test_frames_in_a_type_the_stored_pixels_cannot_become_are_406(
    ct_study, syntaxes, alice, api_client
):
    client = api_client(alice)
    ct = ct_study.instances[0]
    for instance, accept in [
        (ct, 'multipart/related; type="image/jpeg"'),
        (syntaxes[JPEG].instance, 'multipart/related; type="image/jp2"'),
        (ct, "application/octet-stream"),
    ]:
        response = client.get(instance_url(instance, "frames", "1"), HTTP_ACCEPT=accept)

        assert response.status_code == 406, accept
        assert response.json()["detail"]


def test_frame_numbers_out_of_range_are_404_and_malformed_lists_400(ct_study, alice, api_client):
    client = api_client(alice)
    ct = ct_study.instances[0]

    beyond = client.get(instance_url(ct, "frames", "1,2"))
    assert beyond.status_code == 404
    assert "has 1" in beyond.json()["detail"]
    for frame_list in ["0", "1,a", "1,,2", "-1", "1.5"]:
        response = client.get(instance_url(ct, "frames", frame_list))
        assert response.status_code == 400, frame_list
        assert "frame" in response.json()["detail"].lower()


# --- Bulk data ----------------------------------------------------------------------------------


def test_bulk_data_that_is_not_there_is_404(scout, alice, api_client):
    client = api_client(alice)
    for path in [
        "00291011",  # no such element
        "00100010",  # not a binary value
        "00880200/2/7FE00010",  # no second item
        "00880200/0/7FE00010",  # items count from 1
        "00100010/1/7FE00010",  # not a sequence
        "7FE0001",
        "xyz",
        "00880200/1",
    ]:
        response = client.get(instance_url(scout.instance, "bulkdata", path))
        assert response.status_code == 404, path


# --- Access -------------------------------------------------------------------------------------


def test_an_anonymized_share_gets_the_zip_downloads_datasets(
    ct_study, scout, padded, carol, api_client
):
    study = ct_study.study
    share_entry(carol, study, anonymized=True, level=AccessLevel.REPORT_READ)
    browser = HttpsClient()
    browser.force_login(carol)
    download = browser.post(reverse("studies:download", args=[CT_STUDY_UID]))
    archive = zipfile.ZipFile(io.BytesIO(body_of(download)))
    from_zip = {}
    for name in archive.namelist():
        ds = pydicom.dcmread(io.BytesIO(archive.read(name)))
        from_zip[ds.SOPInstanceUID] = ds

    for accept in [DICOM_AS_STORED, 'multipart/related; type="application/dicom"']:
        response = api_client(carol).get(study_url(CT_STUDY_UID), HTTP_ACCEPT=accept)
        served = datasets_of(response)

        assert len(served) == len(from_zip) == 6
        alias = pseudonym(study)
        for ds in served:
            assert ds == from_zip[ds.SOPInstanceUID]
            assert ds.PatientName == alias.dicom_name
            assert ds.PatientID == alias.patient_id
            assert "PatientBirthDate" not in ds
            assert "InstitutionName" not in ds and "ReferringPhysicianName" not in ds
            assert "AccessionNumber" not in ds
            assert ds.PatientIdentityRemoved == "YES"
            assert (0x0029, 0x0010) not in ds
        assert b"Dubois" not in body_of(response)


def test_anonymized_files_that_need_converting_are_de_identified_too(syntaxes, carol, api_client):
    study = Study.objects.get(study_uid=SYNTAXES_STUDY_UID)
    share_entry(carol, study, anonymized=True)
    response = api_client(carol).get(study_url(SYNTAXES_STUDY_UID))

    body = body_of(response)
    assert b"Lefevre" not in body and b"PAT-9001" not in body
    for ds in datasets_of(response):
        assert ds.PatientName == pseudonym(study).dicom_name
        assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE


def test_anonymized_metadata_and_bulk_data_never_name_the_patient(scout, alice, carol, api_client):
    share_entry(carol, scout.instance.series.study, anonymized=True)
    metadata_url = study_url(CT_STUDY_UID, "metadata")
    private_blob = instance_url(scout.instance, "bulkdata", "00291010")
    # alice reads first, so a cached identified dataset would show if the cache leaked.
    assert b"Dubois" in body_of(api_client(alice).get(metadata_url))
    assert api_client(alice).get(private_blob).status_code == 200

    text = body_of(api_client(carol).get(metadata_url)).decode()

    for identifying in ["Dubois", "PAT-7001", "ACC7001", "19590303", "Quinn", "St. Elsewhere"]:
        assert identifying not in text
    items = json.loads(text)
    alias = pseudonym(scout.instance.series.study)
    assert {item["00100010"]["Value"][0]["Alphabetic"] for item in items} == {alias.dicom_name}
    assert api_client(carol).get(private_blob).status_code == 404
    icon = api_client(carol).get(instance_url(scout.instance, "bulkdata", "00880200/1/7FE00010"))
    assert parts_of(icon)[0][1] == ICON
    # And alice still reads the patient's name.
    assert b"Dubois" in body_of(api_client(alice).get(metadata_url))


def test_images_only_access_never_receives_the_structured_report(
    ct_study, report, alice, carol, api_client
):
    share_entry(carol, ct_study.study, level=AccessLevel.IMAGES)
    report_uid = report.instance.sop_instance_uid

    own = datasets_of(api_client(alice).get(study_url(CT_STUDY_UID)))
    assert report_uid in {ds.SOPInstanceUID for ds in own}

    client = api_client(carol)
    served = datasets_of(client.get(study_url(CT_STUDY_UID)))
    assert len(served) == 4 and report_uid not in {ds.SOPInstanceUID for ds in served}
    items = json.loads(body_of(client.get(study_url(CT_STUDY_UID, "metadata"))))
    assert len(items) == 4 and report_uid not in json.dumps(items)
    for url in [
        instance_url(report.instance),
        instance_url(report.instance, "metadata"),
        series_url(report.instance),
        series_url(report.instance, "metadata"),
    ]:
        assert client.get(url).status_code == 404, url


def _routes(instance: Instance, study_uid: str) -> list[str]:
    series, sop = instance.series.series_uid, instance.sop_instance_uid
    base = study_url(study_uid)
    return [
        base,
        f"{base}/metadata",
        f"{base}/series/{series}",
        f"{base}/series/{series}/metadata",
        f"{base}/series/{series}/instances/{sop}",
        f"{base}/series/{series}/instances/{sop}/metadata",
        f"{base}/series/{series}/instances/{sop}/frames/1",
        f"{base}/series/{series}/instances/{sop}/bulkdata/7FE00010",
    ]


def test_an_outsider_gets_the_same_404_as_for_an_unknown_study(ct_study, carol, api_client):
    client = api_client(carol)
    ct = ct_study.instances[0]
    for real, unknown in zip(_routes(ct, CT_STUDY_UID), _routes(ct, UNKNOWN_UID), strict=True):
        hidden = client.get(real)
        missing = client.get(unknown)

        assert hidden.status_code == missing.status_code == 404, real
        assert hidden.content == missing.content
    assert not retrieved_events().exists()


def test_a_share_behind_an_sms_code_answers_nothing_until_it_is_entered(
    ct_study, carol, api_client
):
    share_entry(carol, ct_study.study, two_factor_required=True)
    client = api_client(carol)
    for real, unknown in zip(
        _routes(ct_study.instances[0], CT_STUDY_UID),
        _routes(ct_study.instances[0], UNKNOWN_UID),
        strict=True,
    ):
        assert client.get(real).content == client.get(unknown).content
        assert client.get(real).status_code == 404


def test_anonymous_callers_are_asked_to_authenticate(ct_study):
    for url in _routes(ct_study.instances[0], CT_STUDY_UID):
        response = HttpsClient().get(url)

        assert response.status_code == 401, url
        assert "Bearer" in response["WWW-Authenticate"]


# --- Audit --------------------------------------------------------------------------------------


def test_each_request_is_one_audit_event_whatever_its_parts(ct_study, alice, api_client):
    client = api_client(alice)
    ct = ct_study.instances[0]
    requests = [
        (study_url(CT_STUDY_UID), "study", 4, CT_STUDY_UID),
        (series_url(ct), "series", 3, CT_STUDY_UID),
        (instance_url(ct), "instance", 1, CT_STUDY_UID),
        (study_url(CT_STUDY_UID, "metadata"), "metadata", 4, CT_STUDY_UID),
    ]
    for url, resource, instances, study_uid in requests:
        before = retrieved_events().count()
        body_of(client.get(url))

        assert retrieved_events().count() == before + 1, url
        event = retrieved_events().latest("id")
        assert event.study_uid == study_uid
        assert event.details["resource"] == resource
        assert event.details["instances"] == instances
        assert event.details["anonymized"] is False


def test_frames_are_recorded_once_per_viewing_session_not_once_per_frame(
    syntaxes, alice, api_client
):
    """OHIF fetches each frame in its own request while the radiologist scrolls: like rendered
    frames, they make one event per principal and study per 30-minute viewing session."""
    client = api_client(alice)
    dose = syntaxes[DOSE].instance
    before = retrieved_events().count()

    for url in (
        instance_url(dose, "frames", "1"),
        instance_url(dose, "frames", "2,3"),
        instance_url(dose, "bulkdata", "7FE00010"),
    ):
        body_of(client.get(url))

    assert retrieved_events().count() == before + 1
    event = retrieved_events().latest("id")
    assert event.study_uid == SYNTAXES_STUDY_UID
    assert event.details["resource"] == "frames"
    assert event.details["series_uid"] == dose.series.series_uid
    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        body_of(client.get(instance_url(dose, "frames", "4")))
    assert retrieved_events().count() == before + 2


# --- Accept -------------------------------------------------------------------------------------


def test_accept_media_ranges_are_read_quoted_or_not_with_weights():
    ranges = parse_accept(
        'multipart/related; type="application/dicom"; transfer-syntax="1.2.840.10008.1.2.4.50";'
        " q=0.4, multipart/related;type=application/octet-stream;transfer-syntax=*,"
        ' text/html;q=0, multipart/related; type="a, b;c"; q=0.2, nonsense, */*;q=oops'
    )

    assert [(r.media_type, r.part_type, r.transfer_syntax, r.q) for r in ranges] == [
        ("multipart/related", "application/octet-stream", "*", 1.0),
        ("*/*", None, None, 1.0),
        ("multipart/related", "application/dicom", "1.2.840.10008.1.2.4.50", 0.4),
        ("multipart/related", "a, b;c", None, 0.2),
    ]
    assert [r.media_type for r in parse_accept("")] == ["*/*"]


# --- Memory -------------------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_a_large_series_streams_in_bounded_memory(org, location, alice, carol, api_client):
    """40 slices of 8 MB (320 MB): the worker's memory grows by a few chunks, not by the series,
    whether files go out as stored or are de-identified on the way."""
    (template,) = make_series(
        patient_name="Grand^Serie",
        patient_id="PAT-8000",
        birth_date="19700101",
        sex="M",
        study_uid="1.2.826.0.1.3680043.8.498.8000",
        study_date="20240601",
        study_description="CT Big",
        accession="ACC8000",
        modality="CT",
        series_number=1,
        series_description="Big",
        slices=1,
        rows=16,
        columns=16,
    )
    template.Rows = template.Columns = 2048
    template.PixelData = np.random.default_rng(8).integers(0, 4096, (2048, 2048), "<u2").tobytes()
    total = 0
    for number in range(1, 41):
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.InstanceNumber = number
        data = to_bytes(template)
        total += len(data)
        ingest(org, location, {f"slice{number}": data})
    del template, data
    study = Study.objects.get(study_uid="1.2.826.0.1.3680043.8.498.8000")
    share_entry(carol, study, anonymized=True)
    url = series_url(Instance.objects.filter(series__study=study).first())

    for user in (alice, carol):
        response = api_client(user).get(url, HTTP_ACCEPT=DICOM_AS_STORED)
        baseline = peak = _rss()
        streamed = 0
        for chunk in response.streaming_content:
            streamed += len(chunk)
            peak = max(peak, _rss())

        assert streamed > total * 0.99
        assert peak - baseline < 48 * 1024 * 1024, f"grew {(peak - baseline) >> 20} MB"
