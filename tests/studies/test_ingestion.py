"""DICOM ingestion: what a hospital's uploads turn into, and what happens to the files that
cannot be filed."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from datetime import date, time
from pathlib import Path

import pydicom
import pytest
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.core.files.storage import storages
from django.core.files.uploadedfile import InMemoryUploadedFile, TemporaryUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom.uid import generate_uid

from audit.models import Action, AuditEvent, Outcome
from studies.dicom_header import normalize_name
from studies.models import Entry, EntryOrigin, Instance, Patient, Series, Study
from studies.services import ingestion
from studies.services.ingestion import IngestResult, ingest_files, storage_name
from studies.services.worklists import location_worklist
from studies.synthetic import BUNDLED_RENDERABLE, bundled_test_file, make_series, to_bytes

STUDY_UID = "1.2.826.0.1.3680043.8.498.7001"


def ct_series(*, slices: int = 3, series_number: int = 2, modality: str = "CT", **overrides):
    args = {
        "patient_name": "Müller^Zoë",
        "patient_id": "PAT-7001",
        "birth_date": "19750412",
        "sex": "F",
        "study_uid": STUDY_UID,
        "study_date": "20240105",
        "study_description": "CT Thorax",
        "accession": "ACC7001",
        "modality": modality,
        "series_number": series_number,
        "series_description": f"{modality} series {series_number}",
        "slices": slices,
        "rows": 32,
        "columns": 32,
        "institution": "St. Elsewhere",
        "referring_physician": "House^Gregory",
    }
    args.update(overrides)
    return make_series(**args)


def upload(org, location, files, *, opened=io.BytesIO, **kwargs) -> IngestResult:
    """Ingest (name, bytes) pairs the way the views do, each opened by ``opened``."""
    return ingest_files(
        files=[(name, opened(data)) for name, data in files],
        organization=org,
        location=location,
        **kwargs,
    )


@pytest.fixture(
    params=["in memory", "read as a stream", "an upload held in memory", "an upload on disk"]
)
def opened(request):
    """Every way ingestion takes a file: one already in memory (a STOW-RS part, a C-STORE data
    set, an upload Django's form parser kept in memory) or in a temporary file of that parser
    is hashed and read where it is; any other stream (a file on disk being imported) is copied
    to a spooled file as it is read."""
    if request.param == "in memory":
        return io.BytesIO
    if request.param == "an upload held in memory":
        return lambda data: InMemoryUploadedFile(
            io.BytesIO(data), "files", "upload.dcm", "application/dicom", len(data), None
        )
    if request.param == "an upload on disk":
        return _temporary_upload
    return lambda data: io.BufferedReader(io.BytesIO(data))


def _temporary_upload(data: bytes) -> TemporaryUploadedFile:
    # As Django's TemporaryFileUploadHandler leaves it once the request is parsed.
    upload = TemporaryUploadedFile("upload.dcm", "application/dicom", 0, None)
    upload.write(data)
    upload.flush()
    upload.size = len(data)
    upload.seek(0)
    return upload


def named(datasets, prefix="slice"):
    return [(f"{prefix}{i + 1}.dcm", to_bytes(ds)) for i, ds in enumerate(datasets)]


def cut(data: bytes, keep: int) -> bytes:
    return data[:keep]


def without(ds, keyword):
    ds = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
    delattr(ds, keyword)
    return to_bytes(ds)


# --- Good files -------------------------------------------------------------------------------


def test_synthetic_ct_series_becomes_patient_study_series_and_instances(
    org, location, alice, opened
):
    slices = ct_series(slices=4)

    result = upload(org, location, named(slices), uploaded_by=alice, opened=opened)

    assert result.stored == [ds.SOPInstanceUID for ds in slices]
    assert result.duplicates == [] and result.rejected == []
    assert result.studies == [STUDY_UID]
    assert result.status_code == 201

    study = Study.objects.get(study_uid=STUDY_UID)
    assert study.organization == org
    assert study.received_location == location
    assert study.study_date == date(2024, 1, 5)
    assert study.study_time == time(9, 0)
    assert study.description == "CT Thorax"
    assert study.accession == "ACC7001"
    assert study.institution == "St. Elsewhere"
    assert study.referring_physician == "Gregory House"
    assert (study.modalities, study.series_count, study.instance_count) == ("CT", 1, 4)

    patient = study.patient
    assert (patient.patient_id, patient.issuer) == ("PAT-7001", "")
    assert (patient.family_name, patient.given_name) == ("Müller", "Zoë")
    assert patient.name == "Müller^Zoë"
    assert patient.birth_date == date(1975, 4, 12)
    assert patient.sex == "F"
    assert "zoe muller" in patient.name_search and "muller zoe" in patient.name_search

    series = Series.objects.get(study=study)
    assert (series.modality, series.number, series.instance_count) == ("CT", 2, 4)
    instances = list(Instance.objects.filter(series=series).order_by("number"))
    assert [i.number for i in instances] == [1, 2, 3, 4]
    first = instances[0]
    assert first.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert first.transfer_syntax == "1.2.840.10008.1.2.1"
    assert (first.frames, first.rows, first.columns, first.has_pixels) == (1, 32, 32, True)
    assert first.size == len(to_bytes(slices[0]))


def test_series_of_several_modalities_keep_counts_and_sorted_modalities(org, location, alice):
    ct = ct_series(slices=2, series_number=2)
    mr = ct_series(slices=3, series_number=3, modality="MR")

    upload(org, location, named(ct, "ct"), uploaded_by=alice)
    upload(org, location, named(mr, "mr"), uploaded_by=alice)

    study = Study.objects.get(study_uid=STUDY_UID)
    assert study.modalities == "CT MR"
    assert (study.series_count, study.instance_count) == (2, 5)
    assert Patient.objects.filter(organization=org).count() == 1
    counts = dict(Series.objects.filter(study=study).values_list("modality", "instance_count"))
    assert counts == {"CT": 2, "MR": 3}


def test_new_study_is_filed_once_in_the_location_worklist(org, location, alice):
    slices = ct_series(slices=3)

    upload(org, location, named(slices[:2]), uploaded_by=alice)
    upload(org, location, named(slices[2:]), uploaded_by=alice)

    entries = Entry.objects.filter(study__study_uid=STUDY_UID)
    assert entries.count() == 1
    entry = entries.get()
    assert entry.worklist == location_worklist(location)
    assert entry.origin == EntryOrigin.INGESTION
    assert entry.added_by == alice


def test_a_chunks_new_studies_are_filed_without_looking_for_entries(org, location, alice):
    studies = [ct_series(slices=1, study_uid=f"{STUDY_UID}.{n}")[0] for n in range(3)]

    with CaptureQueriesContext(connection) as queries:
        result = upload(org, location, named(studies), uploaded_by=alice)

    assert len(result.stored) == 3
    assert not [
        q for q in queries if q["sql"].startswith("SELECT") and '"studies_entry"' in q["sql"]
    ]
    entries = Entry.objects.filter(worklist=location_worklist(location))
    assert sorted(entries.values_list("study__study_uid", flat=True)) == sorted(
        ds.StudyInstanceUID for ds in studies
    )


@pytest.mark.parametrize("name", BUNDLED_RENDERABLE)
def test_each_bundled_renderable_file_is_stored_or_rejected_for_a_missing_uid(org, location, name):
    data = bundled_test_file(name).read_bytes()
    header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)

    result = upload(org, location, [(name, data)])

    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID") if k not in header]
    if missing:
        # Some of pydicom's JPEG-LS samples are bare images without study or series.
        assert result.stored == []
        [rejection] = result.rejected
        assert rejection.name == name
        assert "Study Instance UID" in rejection.reason
        return
    assert result.stored == [header.SOPInstanceUID]
    instance = Instance.objects.get(sop_instance_uid=header.SOPInstanceUID)
    assert instance.transfer_syntax == header.file_meta.TransferSyntaxUID
    assert instance.frames == int(header.get("NumberOfFrames") or 1)
    assert instance.has_pixels
    assert instance.rows == header.Rows and instance.columns == header.Columns
    assert storages["dicom"].open(instance.file).read() == data


def test_file_without_patient_id_gets_a_patient_of_its_own_study(org, location):
    data = bundled_test_file("image_dfl.dcm").read_bytes()  # Patient ID is empty

    result = upload(org, location, [("deflated.dcm", data)])

    assert len(result.stored) == 1
    patient = Study.objects.get(study_uid=result.studies[0]).patient
    assert patient.patient_id.startswith("NOID-")


# --- Storage ----------------------------------------------------------------------------------


def test_files_are_stored_under_content_derived_names(org, location, opened):
    ds = ct_series(slices=1)[0]
    data = to_bytes(ds)

    upload(org, location, [("a.dcm", data)], opened=opened)

    instance = Instance.objects.get(sop_instance_uid=ds.SOPInstanceUID)
    sha = hashlib.sha256(data).hexdigest()
    assert instance.sha256 == sha
    assert instance.file == storage_name(sha) == f"{sha[:2]}/{sha[2:4]}/{sha}.dcm"
    assert storages["dicom"].exists(instance.file)


def test_a_chunks_image_descriptions_are_written_as_values_not_as_an_array(
    require_postgres, org, location
):
    # Django writes many rows as one array per column (UNNEST) on PostgreSQL, and psycopg
    # escapes each quote of a JSON text in an array in Python: the descriptions go as VALUES.
    slices = ct_series(slices=3)

    with CaptureQueriesContext(connection) as queries:
        result = upload(org, location, named(slices))

    assert result.stored == [ds.SOPInstanceUID for ds in slices]
    [insert] = [q["sql"] for q in queries if q["sql"].startswith('INSERT INTO "studies_instance"')]
    assert "jsonb[]" not in insert
    described = Instance.objects.values_list("plain_image", flat=True)
    assert [image["rows"] for image in described] == [32, 32, 32]


def test_identical_bytes_are_stored_once(org, location, tmp_path):
    ds = ct_series(slices=1)[0]
    data = to_bytes(ds)

    first = upload(org, location, [("a.dcm", data)])
    second = upload(org, location, [("copy of a.dcm", data)])

    assert first.stored == [ds.SOPInstanceUID]
    assert second.stored == [] and second.duplicates == [ds.SOPInstanceUID]
    assert second.differing_duplicates == []
    assert second.status_code == 200
    stored = [p for p in (tmp_path / "dicom").rglob("*") if p.is_file()]
    assert len(stored) == 1
    assert Instance.objects.count() == 1
    assert Study.objects.get().instance_count == 1


def test_same_sop_instance_uid_with_different_bytes_is_a_duplicate_and_says_so(org, location):
    ds = ct_series(slices=1)[0]
    original = to_bytes(ds)
    ds.SeriesDescription = "edited elsewhere"
    edited = to_bytes(ds)

    upload(org, location, [("original.dcm", original)])
    result = upload(org, location, [("edited.dcm", edited)])

    assert result.duplicates == [ds.SOPInstanceUID]
    assert result.differing_duplicates == [ds.SOPInstanceUID]
    [outcome] = result.files
    assert outcome.status == "duplicate"
    assert "different content" in outcome.message
    assert result.as_json()["duplicates_with_different_content"] == [ds.SOPInstanceUID]
    instance = Instance.objects.get(sop_instance_uid=ds.SOPInstanceUID)
    assert storages["dicom"].open(instance.file).read() == original


def test_duplicate_within_one_batch(org, location):
    ds = ct_series(slices=1)[0]
    data = to_bytes(ds)

    result = upload(org, location, [("a.dcm", data), ("a-again.dcm", data)])

    assert result.stored == [ds.SOPInstanceUID]
    assert result.duplicates == [ds.SOPInstanceUID]
    assert Study.objects.get().instance_count == 1


# --- Bad files --------------------------------------------------------------------------------


def test_bad_files_are_reported_by_name_while_good_files_are_stored(org, location, alice, opened):
    good = ct_series(slices=3)
    truncated_source = to_bytes(ct_series(slices=1, series_number=9)[0])
    bad = [
        ("notes.txt", b"Patient called, will bring the CD on Monday.\n"),
        ("empty.dcm", b""),
        ("cut.dcm", cut(truncated_source, len(truncated_source) - 500)),
        ("no-study.dcm", without(ct_series(slices=1, series_number=11)[0], "StudyInstanceUID")),
        ("no-series.dcm", without(ct_series(slices=1, series_number=12)[0], "SeriesInstanceUID")),
        ("no-sop.dcm", without(ct_series(slices=1, series_number=13)[0], "SOPInstanceUID")),
    ]
    files = named(good[:1]) + bad[:3] + named(good[1:], "more") + bad[3:]

    result = upload(org, location, files, uploaded_by=alice, opened=opened)

    assert result.stored == [ds.SOPInstanceUID for ds in good]
    reasons = {r.name: r.reason for r in result.rejected}
    assert list(reasons) == [name for name, _ in bad]
    assert "not a DICOM file" in reasons["notes.txt"]
    assert reasons["empty.dcm"] == "The file is empty."
    assert "incomplete" in reasons["cut.dcm"]
    assert "Study Instance UID (0020,000D)" in reasons["no-study.dcm"]
    assert "Series Instance UID (0020,000E)" in reasons["no-series.dcm"]
    assert "SOP Instance UID (0008,0018)" in reasons["no-sop.dcm"]
    assert "Study Instance UID" not in reasons["no-sop.dcm"]
    assert result.status_code == 201
    study = Study.objects.get()
    assert (study.series_count, study.instance_count) == (1, 3)
    assert Series.objects.count() == 1


@pytest.mark.parametrize("keep", [300, 541, 700, 940, 1500])
def test_file_cut_anywhere_in_its_header_is_rejected_as_incomplete(org, location, keep, opened):
    data = to_bytes(ct_series(slices=1)[0])

    result = upload(org, location, [("head.dcm", cut(data, keep))], opened=opened)

    [rejection] = result.rejected
    assert rejection.code == "truncated"
    assert "incomplete" in rejection.reason
    assert Instance.objects.count() == 0


def test_image_without_pixel_data_is_rejected(org, location):
    data = without(ct_series(slices=1)[0], "PixelData")

    result = upload(org, location, [("stripped.dcm", data)])

    [rejection] = result.rejected
    assert rejection.code == "no_pixel_data"


def test_non_image_object_is_stored_without_pixels(org, location):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian

    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID = generate_uid()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID = BasicTextSRStorage
    sr.StudyInstanceUID, sr.SeriesInstanceUID = STUDY_UID, generate_uid()
    sr.PatientID, sr.PatientName, sr.Modality = "PAT-7001", "Müller^Zoë", "SR"
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    upload(org, location, named(ct_series(slices=1)))

    result = upload(org, location, [("report.dcm", buffer.getvalue())])

    assert result.stored == [sr.SOPInstanceUID]
    instance = Instance.objects.get(sop_instance_uid=sr.SOPInstanceUID)
    assert not instance.has_pixels and instance.rows is None
    assert Study.objects.get().modalities == "CT SR"


def test_compressed_file_cut_short_is_rejected(org, location):
    data = bundled_test_file("MR_small_RLE.dcm").read_bytes()

    # Cut inside the compressed fragment (this sample ends with trailing padding).
    result = upload(org, location, [("rle.dcm", cut(data, 7000))])

    [rejection] = result.rejected
    assert rejection.code == "truncated"


def test_too_large_file_is_rejected_with_the_limit(org, location, settings, opened):
    settings.UPLOAD_MAX_FILE_SIZE = 1000
    data = to_bytes(ct_series(slices=1)[0])

    result = upload(org, location, [("big.dcm", data)], opened=opened)

    [rejection] = result.rejected
    assert rejection.code == "too_large"
    assert "1000" in rejection.reason.replace("\xa0", " ")


def test_dicomdir_is_rejected_with_advice(org, location):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.FileSetID = "CD1"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)

    result = upload(org, location, [("DICOMDIR", buffer.getvalue())])

    [rejection] = result.rejected
    assert rejection.code == "dicomdir"


def test_study_held_by_another_organization_conflicts_without_revealing_it(
    org, location, other_org, carol
):
    other_location = carol.memberships.get().locations.get()
    first = ct_series(slices=1)
    upload(other_org, other_location, named(first), uploaded_by=carol)
    second = ct_series(slices=1, series_number=5)

    result = upload(org, location, named(second))

    [rejection] = result.rejected
    assert rejection.reason.startswith("It conflicts with a study held elsewhere")
    assert other_org.name not in rejection.reason
    assert Study.objects.get().organization == other_org
    assert Instance.objects.count() == 1
    # Even the exact same file: no hint that it is already stored elsewhere.
    again = upload(org, location, named(first))
    assert again.duplicates == [] and again.rejected[0].code == "conflict"


def test_same_study_uid_for_another_patient_is_rejected(org, location):
    upload(org, location, named(ct_series(slices=1)))

    other = ct_series(slices=1, series_number=3, patient_id="PAT-9999")
    result = upload(org, location, named(other))

    assert result.rejected[0].code == "patient_mismatch"
    assert Study.objects.get().instance_count == 1


# --- Audit and permission ---------------------------------------------------------------------


def test_upload_audits_once_per_study_and_once_per_rejected_file(org, location, alice):
    slices = ct_series(slices=2)
    other_study = ct_series(slices=1, study_uid="1.2.826.0.1.3680043.8.498.7002")
    files = named(slices) + named(slices[:1], "again") + named(other_study, "other")
    files.append(("readme.txt", b"not an image"))

    upload(org, location, files, uploaded_by=alice)

    uploads = AuditEvent.objects.filter(action=Action.STUDY_UPLOADED).order_by("id")
    assert [e.study_uid for e in uploads] == [STUDY_UID, "1.2.826.0.1.3680043.8.498.7002"]
    first = uploads[0]
    assert first.actor == alice
    assert first.event_code == "110107"
    assert first.organization_id == org.pk
    assert first.patient_id == "PAT-7001"
    assert first.details == {
        "stored": 2,
        "duplicates": 1,
        "location": "Radiology",
        "location_id": location.pk,
    }
    [rejected] = AuditEvent.objects.filter(action=Action.UPLOAD_REJECTED)
    assert rejected.actor == alice
    assert rejected.outcome == Outcome.MINOR_FAILURE
    assert rejected.organization_id == org.pk
    assert rejected.details["file"] == "readme.txt"
    assert "not a DICOM file" in rejected.details["reason"]


def test_system_import_is_audited_under_its_label(org, location):
    upload(org, location, named(ct_series(slices=1)), actor_label="import_dicom")

    event = AuditEvent.objects.get(action=Action.STUDY_UPLOADED)
    assert event.actor is None
    assert event.actor_label == "import_dicom"


def test_outsider_may_not_upload_into_the_organization(org, location, carol):
    with pytest.raises(PermissionDenied):
        upload(org, location, named(ct_series(slices=1)), uploaded_by=carol)

    assert Study.objects.count() == 0
    assert not AuditEvent.objects.filter(action=Action.STUDY_UPLOADED).exists()


def test_progress_callback_sees_every_file(org, location):
    seen = []

    upload(org, location, [*named(ct_series(slices=2)), ("x.txt", b"x")], on_file=seen.append)

    assert [(o.name, o.status) for o in seen] == [
        ("slice1.dcm", "stored"),
        ("slice2.dcm", "stored"),
        ("x.txt", "rejected"),
    ]


def test_parser_crash_on_one_file_rejects_that_file_only(org, location, monkeypatch):
    from studies import dicom_header

    real = dicom_header.read_partial
    calls = []

    def flaky(fileobj, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise IndexError("pydicom tripped over something")
        return real(fileobj, **kwargs)

    monkeypatch.setattr(dicom_header, "read_partial", flaky)

    result = upload(org, location, named(ct_series(slices=3)))

    assert len(result.stored) == 2
    assert [r.name for r in result.rejected] == ["slice2.dcm"]
    assert result.rejected[0].code == "damaged"


def test_storage_failure_mid_batch_keeps_and_audits_what_was_stored(org, location, alice):
    storage = storages["dicom"]
    real_write = storage.write_incoming
    writes = []
    counting = threading.Lock()

    def failing_write(name, content):
        with counting:  # the chunk's files are written from several threads
            writes.append(name)
            full = len(writes) >= 3  # the disk is full from the third file on
        if full:
            raise OSError("disk full")
        return real_write(name, content)

    storage.write_incoming = failing_write
    with pytest.raises(OSError, match="disk full"):
        upload(org, location, named(ct_series(slices=4)), uploaded_by=alice)

    study = Study.objects.get()
    assert study.instance_count == 2
    event = AuditEvent.objects.get(action=Action.STUDY_UPLOADED)
    assert event.details["stored"] == 2


@pytest.mark.parametrize(
    ("backend", "threads"),
    [
        ("studies.storage.DicomFileStorage", "several"),
        ("django.core.files.storage.FileSystemStorage", "the caller's"),
    ],
)
def test_a_chunks_files_are_stored_at_once_only_in_the_portals_own_storage(
    org, location, settings, tmp_path, monkeypatch, backend, threads
):
    # Each file waits for its flush to disk: the portal's storage lets a chunk's flushes overlap.
    # Another backend may not be safe to write from several threads; it is written in turn.
    settings.STORAGES = {
        **settings.STORAGES,
        "dicom": {"BACKEND": backend, "OPTIONS": {"location": str(tmp_path / "store")}},
    }
    writers = set()
    real_chunks = File.chunks

    def chunks(self, chunk_size=None):
        writers.add(threading.current_thread().name)  # both storages write a file's chunks
        return real_chunks(self, chunk_size)

    monkeypatch.setattr(File, "chunks", chunks)
    files = named(ct_series(slices=6))

    result = upload(org, location, files)

    assert len(result.stored) == 6
    if threads == "several":
        assert writers and all(name.startswith("dicom-store") for name in writers)
    else:
        assert writers == {threading.current_thread().name}
    sent = {hashlib.sha256(data).hexdigest(): data for _name, data in files}
    for instance in Instance.objects.all():
        with storages["dicom"].open(instance.file) as stored:
            assert stored.read() == sent[instance.sha256]


def store_contents(tmp_path) -> list[Path]:
    return sorted(path for path in (tmp_path / "dicom").rglob("*") if path.is_file())


def test_files_not_filed_leave_none_of_their_bytes_in_the_store(
    org, location, other_org, carol, tmp_path
):
    # A chunk's files are written to the store as they are read, before the chunk is sorted
    # out: a file refused, or a duplicate whose bytes differ, must not stay there.
    original = ct_series(slices=1)[0]
    upload(org, location, [("original.dcm", to_bytes(original))])
    held_elsewhere = ct_series(slices=1, study_uid="1.2.826.0.1.3680043.8.498.7002")
    other_location = carol.memberships.get().locations.get()
    upload(other_org, other_location, named(held_elsewhere), uploaded_by=carol)
    original.SeriesDescription = "edited elsewhere"
    conflicting = ct_series(slices=1, study_uid="1.2.826.0.1.3680043.8.498.7002", series_number=9)
    new = ct_series(slices=1, series_number=3)

    result = upload(
        org,
        location,
        [
            ("edited.dcm", to_bytes(original)),
            *named(conflicting, prefix="conflicting"),
            *named(new, prefix="new"),
        ],
    )

    assert result.stored == [new[0].SOPInstanceUID]
    assert result.differing_duplicates == [original.SOPInstanceUID]
    assert [rejected.code for rejected in result.rejected] == ["conflict"]
    stored_names = {str(tmp_path / "dicom" / instance.file) for instance in Instance.objects.all()}
    assert {str(path) for path in store_contents(tmp_path)} == stored_names
    assert len(stored_names) == 3


def test_a_batch_cut_short_while_reading_leaves_no_bytes_in_the_store(org, location, tmp_path):
    files = named(ct_series(slices=3))

    def two_files_then_a_dropped_connection():
        for name, data in files[:2]:
            yield name, io.BytesIO(data)
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        ingest_files(
            files=two_files_then_a_dropped_connection(), organization=org, location=location
        )

    assert Instance.objects.count() == 0
    assert store_contents(tmp_path) == []


def test_files_get_their_names_after_their_rows_and_before_the_rows_commit(
    org, location, monkeypatch
):
    storage = storages["dicom"]
    outside = len(connection.atomic_blocks)
    seen = []
    real_put_in_place = ingestion._put_in_place

    def put_in_place(chunk, together):
        names = [chunk[position].stored_as for position in together]
        seen.append(
            (
                len(connection.atomic_blocks) > outside,
                Instance.objects.filter(file__in=names).count(),
                [storage.exists(name) for name in names],
            )
        )
        failed = real_put_in_place(chunk, together)
        seen.append([storage.exists(name) for name in names])
        return failed

    monkeypatch.setattr(ingestion, "_put_in_place", put_in_place)

    result = upload(org, location, named(ct_series(slices=4)))

    assert len(result.stored) == 4
    # In the chunk's transaction, its rows written, the files not yet under their names...
    assert seen[0] == (True, 4, [False] * 4)
    # ...and then all of them.
    assert seen[1] == [True] * 4


def test_the_threads_writing_files_are_started_afresh_in_a_forked_process(org, location):
    upload(org, location, named(ct_series(slices=2)))  # this process's writers are running
    data = b"written from the child"
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status
        try:
            written = ingestion._store_threads.submit(len, data).result(timeout=10)
            os._exit(0 if written == len(data) else 1)
        except BaseException:
            os._exit(2)
    _pid, status = os.waitpid(child, 0)

    assert os.waitstatus_to_exitcode(status) == 0


# --- Names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Müller^Zoë", "muller zoe"),
        ("O'Brien^Seán", "o'brien sean"),
        ("  DE LA CRUZ^José  María ", "de la cruz jose maria"),
        ("Søren^Łukasz", "soren lukasz"),
        ("Straße", "strasse"),
        ("\uff39\uff41\uff4d\uff41\uff44\uff41", "yamada"),  # full-width Latin (Japanese systems)
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", "yamada tarou 山田 太郎 やまだ たろう"),
        ("", ""),
    ],
)
def test_normalize_name(raw, expected):
    assert normalize_name(raw) == expected


def test_ideographic_only_name_is_filed_with_its_parts(org, location):
    ds = ct_series(slices=1)[0]
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "=山田^太郎"

    upload(org, location, [("jp.dcm", to_bytes(ds))])

    patient = Patient.objects.get()
    assert (patient.family_name, patient.given_name) == ("山田", "太郎")
    assert "太郎 山田" in patient.name_search
    assert "山田 太郎" in patient.name_search


# --- Concurrency ------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_of_one_new_study_make_one_study_with_right_counts(
    require_postgres, org, location
):
    """Six workstations send slices of the same new study at once (and the same first slice
    twice): one patient, one study, one series, every slice once, counts exact."""
    import threading

    from django.db import connection

    workers = 6
    datasets = ct_series(slices=workers * 2)
    shared = named(datasets[:1], "shared")
    start = threading.Barrier(workers)
    errors: list[BaseException] = []
    results: list[IngestResult] = []

    def workstation(number: int) -> None:
        try:
            own = named(datasets[1 + number * 2 : 3 + number * 2], f"ws{number}-")
            start.wait(timeout=30)
            results.append(upload(org, location, shared + own))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=workstation, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert sum(len(r.rejected) for r in results) == 0
    assert sum(len(r.stored) for r in results) == len(datasets)
    assert sum(len(r.duplicates) for r in results) == workers - 1
    assert Patient.objects.count() == 1
    study = Study.objects.get()
    assert (study.series_count, study.instance_count) == (1, len(datasets))
    assert Series.objects.get().instance_count == len(datasets)
    assert Entry.objects.filter(study=study).count() == 1
