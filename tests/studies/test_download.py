"""Downloading a study: a page with a button on GET, a streamed ZIP of DICOM files on POST,
de-identified for anonymized recipients, audited as an export."""

from __future__ import annotations

import io
import re
import zipfile

import pydicom
import pytest
from django.urls import reverse
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from audit.models import Action, AuditEvent
from portal import worker_heartbeat
from studies.anonymize import deidentify_dataset, pseudonym
from studies.models import Study
from studies.services.ingestion import ingest_files
from studies.synthetic import make_multiframe, make_series, to_bytes
from tests.accounts.helpers import HttpsClient, plain_static_storage
from tests.factories import make_study, share_entry

STUDY_UID = "1.2.826.0.1.3680043.8.498.5001"


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    plain_static_storage(settings)


def login(user) -> HttpsClient:
    client = HttpsClient()
    client.force_login(user)
    return client


@pytest.fixture
def study(org, location) -> Study:
    """A CT series of four slices and a cine echo, from one patient."""
    identity = {
        "patient_name": "Vermeulen^Els",
        "patient_id": "PAT-5001",
        "birth_date": "19700707",
        "sex": "F",
        "study_uid": STUDY_UID,
        "study_date": "20240801",
        "study_description": "Cardiac workup",
        "accession": "ACC5001",
        "institution": "St. Elsewhere",
        "referring_physician": "Quinn^Michaela",
    }
    ct = make_series(
        **identity,
        modality="CT",
        series_number=2,
        series_description="Chest",
        slices=4,
        rows=32,
        columns=32,
    )
    echo = make_multiframe(**identity, series_number=5, frames=3, rows=32, columns=48)
    files = [(f"f{i}", io.BytesIO(to_bytes(ds))) for i, ds in enumerate([*ct, echo])]
    result = ingest_files(files=files, organization=org, location=location)
    assert len(result.stored) == 5
    return Study.objects.get(study_uid=STUDY_UID)


def zip_of(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def download_url(study) -> str:
    return reverse("studies:download", args=[study.study_uid])


def test_get_shows_a_confirmation_page_and_exports_nothing(study, alice):
    response = login(alice).get(download_url(study))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert f'<form method="post" action="{download_url(study)}"' in html
    assert "5 DICOM files" in html
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    assert "Vermeulen" not in title and "PAT-5001" not in title
    assert not AuditEvent.objects.filter(action=Action.STUDY_DOWNLOADED).exists()


def test_post_streams_a_zip_of_the_studys_files(study, alice):
    response = login(alice).post(download_url(study))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    disposition = response["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="study-[0-9a-f]{10}\.zip"', disposition)
    assert "Vermeulen" not in disposition and STUDY_UID not in disposition
    archive = zip_of(response)
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["2/1.dcm", "2/2.dcm", "2/3.dcm", "2/4.dcm", "5/1.dcm"]
    sop_uids = set()
    for name in archive.namelist():
        ds = pydicom.dcmread(io.BytesIO(archive.read(name)))
        assert ds.StudyInstanceUID == STUDY_UID
        assert ds.PatientName == "Vermeulen^Els"  # the original files, unchanged
        sop_uids.add(ds.SOPInstanceUID)
    assert len(sop_uids) == 5
    assert pydicom.dcmread(io.BytesIO(archive.read("5/1.dcm"))).NumberOfFrames == 3

    event = AuditEvent.objects.get(action=Action.STUDY_DOWNLOADED)
    assert (event.actor, event.study_uid, event.event_code) == (alice, STUDY_UID, "110106")
    assert event.details == {"files": 5, "series": 2, "anonymized": False, "via": "worklist"}


def test_a_zip_streamed_by_a_watched_worker_reports_as_its_chunks_go_out(study, alice, monkeypatch):
    # Under gunicorn (portal.worker_heartbeat): a download longer than the worker timeout must
    # tell the master the worker is alive; tests/portal/test_long_answers_under_gunicorn.py
    # serves one through gunicorn itself.
    reports = []
    monkeypatch.setattr(worker_heartbeat, "_report", lambda: reports.append(len(chunks)))
    monkeypatch.setattr(worker_heartbeat, "_EVERY_SECONDS", 0.0)
    chunks: list[bytes] = []

    response = login(alice).post(download_url(study))
    for chunk in response.streaming_content:
        chunks.append(chunk)

    assert len(chunks) > 1
    assert reports == list(range(1, len(chunks) + 1))  # after each chunk has gone out
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None and len(archive.namelist()) == 5


def test_anonymized_recipient_downloads_de_identified_files(study, carol):
    share_entry(
        carol,
        study,
        level="images",
        anonymized=True,
    )
    client = login(carol)
    alias = pseudonym(study)

    page = client.get(download_url(study)).content.decode()
    response = client.post(download_url(study))

    assert alias.display_name in page and "Vermeulen" not in page
    archive = zip_of(response)
    assert len(archive.namelist()) == 5
    for name in archive.namelist():
        raw = archive.read(name)
        assert b"Vermeulen" not in raw and b"PAT-5001" not in raw and b"ACC5001" not in raw
        ds = pydicom.dcmread(io.BytesIO(raw))
        assert ds.PatientName == alias.dicom_name
        assert ds.PatientID == alias.patient_id
        assert ds.PatientIdentityRemoved == "YES"
        for keyword in (
            "PatientBirthDate",
            "AccessionNumber",
            "InstitutionName",
            "ReferringPhysicianName",
        ):
            assert keyword not in ds
        assert ds.pixel_array.size > 0  # the images survive de-identification
    event = AuditEvent.objects.get(action=Action.STUDY_DOWNLOADED)
    assert event.actor == carol
    assert event.details["anonymized"] is True
    assert event.details["via"] == "share"


def test_outsider_gets_404_and_nothing_is_exported(study, carol):
    client = login(carol)

    assert client.get(download_url(study)).status_code == 404
    assert client.post(download_url(study)).status_code == 404
    assert not AuditEvent.objects.filter(action=Action.STUDY_DOWNLOADED).exists()


def test_anonymous_visitor_is_asked_to_log_in_whether_or_not_the_study_exists(study):
    real = HttpsClient().post(download_url(study))
    made_up = HttpsClient().post(reverse("studies:download", args=["1.2.3.4"]))

    assert real.status_code == made_up.status_code == 302
    assert reverse("accounts:login") in real["Location"]
    assert not AuditEvent.objects.filter(action=Action.STUDY_DOWNLOADED).exists()


def test_download_is_csrf_protected(study, alice):
    client = HttpsClient(enforce_csrf_checks=True)
    client.force_login(alice)

    assert client.post(download_url(study)).status_code == 403
    assert not AuditEvent.objects.filter(action=Action.STUDY_DOWNLOADED).exists()


def test_study_without_stored_files_has_nothing_to_download(org, location, alice):
    empty = make_study(org, location=location)  # database rows only, no DICOM files
    client = login(alice)

    page = client.get(download_url(empty))
    post = client.post(download_url(empty))

    assert "no stored DICOM files" in page.content.decode()
    assert post.status_code == 404
    assert not AuditEvent.objects.filter(action=Action.STUDY_DOWNLOADED).exists()


def _structured_report(study: Study) -> bytes:
    """A Basic Text SR of the study: no pixel data; the findings, the verifying radiologist and
    the patient's name sit in nested sequences."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.SeriesNumber = 90
    ds.InstanceNumber = 1
    ds.PatientName = "Vermeulen^Els"
    ds.PatientID = "PAT-5001"
    ds.PatientBirthDate = "19700707"
    ds.AccessionNumber = "ACC5001"
    observer = Dataset()
    observer.VerifyingObserverName = "Radiologist^Hanne"
    observer.VerifyingOrganization = "St. Elsewhere"
    ds.VerifyingObserverSequence = [observer]
    finding = Dataset()
    finding.ValueType = "TEXT"
    finding.TextValue = "Cardiomegaly. Findings discussed with the patient."
    person = Dataset()
    person.ValueType = "PNAME"
    person.PersonName = "Vermeulen^Els"
    ds.ContentSequence = [finding, person]
    ds.ValueType = "CONTAINER"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def study_with_sr(study, org, location) -> Study:
    result = ingest_files(
        files=[("sr", io.BytesIO(_structured_report(study)))], organization=org, location=location
    )
    assert len(result.stored) == 1
    return study


def test_an_images_only_recipient_gets_no_structured_report(study_with_sr, carol):
    share_entry(carol, study_with_sr, level="images")
    archive = zip_of(login(carol).post(download_url(study_with_sr)))
    assert len(archive.namelist()) == 5
    assert all(b"Cardiomegaly" not in archive.read(name) for name in archive.namelist())


def test_an_anonymized_reader_gets_the_report_scrubbed_of_nested_names(study_with_sr, carol):
    share_entry(carol, study_with_sr, level="report_read", anonymized=True)
    archive = zip_of(login(carol).post(download_url(study_with_sr)))
    # The authority never gives an anonymized recipient the report: no SR either.
    assert len(archive.namelist()) == 5
    assert all(b"Cardiomegaly" not in archive.read(name) for name in archive.namelist())


def test_de_identification_reaches_nested_sequences(study_with_sr):
    ds = pydicom.dcmread(io.BytesIO(_structured_report(study_with_sr)))
    deidentify_dataset(ds, study_with_sr)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    raw = buffer.getvalue()
    assert b"Vermeulen" not in raw and b"Radiologist" not in raw and b"19700707" not in raw
    assert ds.PatientName == pseudonym(study_with_sr).dicom_name
    assert "PersonName" not in ds.ContentSequence[1]


def test_the_owner_downloads_the_report_too(study_with_sr, alice):
    archive = zip_of(login(alice).post(download_url(study_with_sr)))
    assert len(archive.namelist()) == 6
    assert any(b"Cardiomegaly" in archive.read(name) for name in archive.namelist())
