"""Many files at once (an upload, an import, STOW-RS): the new instances of a chunk are filed in
one transaction with one INSERT per table (issue 13: ingestion at Orthanc's pace), and whatever
needs a closer look goes through the one-file path, with the same outcome a file alone gets."""

from __future__ import annotations

import io
import itertools

import pydicom
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom.uid import generate_uid

from audit.models import Action, AuditEvent
from studies.models import Entry, EntryOrigin, Instance, Patient, Series, Study
from studies.services import ingestion
from studies.services.ingestion import ingest_files
from studies.synthetic import make_series, to_bytes
from tests.dicomweb.conftest import token_client

pytestmark = pytest.mark.django_db

UID_ROOT = "1.2.826.0.1.3680043.8.498.7700"


def series(number: int, *, slices: int = 3, patient_id: str | None = None, **overrides):
    args = {
        "patient_name": f"Janssens^Study{number}",
        "patient_id": patient_id or f"PAT-77{number:02d}",
        "birth_date": "19800101",
        "sex": "M",
        "study_uid": f"{UID_ROOT}.{number}",
        "study_date": "20240301",
        "study_description": f"CT {number}",
        "accession": f"ACC77{number:02d}",
        "modality": "CT",
        "series_number": 1,
        "series_description": "Axial",
        "slices": slices,
        "rows": 16,
        "columns": 16,
    }
    args.update(overrides)
    return [to_bytes(ds) for ds in make_series(**args)]


def with_new_sop_uid(data: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return to_bytes(ds)


def upload(org, location, files: list[bytes], **kwargs):
    return ingest_files(
        files=[(f"file{n}.dcm", io.BytesIO(data)) for n, data in enumerate(files)],
        organization=org,
        location=location,
        **kwargs,
    )


def inserts(captured, table: str) -> int:
    return sum(
        query["sql"].startswith(f'INSERT INTO "{table}"') for query in captured.captured_queries
    )


def test_new_studies_are_filed_with_one_insert_per_table_whatever_the_file_count(
    org, location, alice
):
    files = [data for number in range(1, 5) for data in series(number)]

    with CaptureQueriesContext(connection) as captured:
        result = upload(org, location, files, uploaded_by=alice)

    assert len(result.stored) == 12 and not result.rejected
    for table in (
        "studies_patient",
        "studies_study",
        "studies_series",
        "studies_instance",
        "studies_entry",
    ):
        assert inserts(captured, table) == 1, table
    assert Patient.objects.count() == 4
    for study in Study.objects.all():
        assert (study.series_count, study.instance_count, study.modalities) == (1, 3, "CT")
        assert study.received_location == location
        assert study.patient_sort_name == "janssens " + study.description.replace("CT ", "study")
        assert Series.objects.get(study=study).instance_count == 3
        assert (
            Entry.objects.filter(
                study=study, worklist__location=location, origin=EntryOrigin.INGESTION
            ).count()
            == 1
        )
    # One event per study, as before.
    assert AuditEvent.objects.filter(action=Action.STUDY_UPLOADED).count() == 4


def test_more_slices_of_a_stored_study_take_the_fewest_statements(org, location):
    """The locked study comes with its patient, whom the chunk's audit event names, and no
    worklist is touched."""
    files = series(1, slices=4)
    upload(org, location, files[:2])

    with CaptureQueriesContext(connection) as captured:
        result = upload(org, location, files[2:])

    assert len(result.stored) == 2
    read = [query["sql"] for query in captured.captured_queries]
    assert not [sql for sql in read if sql.startswith('SELECT "studies_patient"')], read
    event = AuditEvent.objects.filter(action=Action.STUDY_UPLOADED).latest("pk")
    assert event.patient_id == "PAT-7701"
    # No new study to put in a worklist, so no transaction for that: none opened empty (here a
    # savepoint released at once, inside the test's transaction).
    opened_empty = [
        sql
        for sql, after in itertools.pairwise(read)
        if sql.startswith("SAVEPOINT") and after.startswith("RELEASE SAVEPOINT")
    ]
    assert not opened_empty, read


def test_a_chunk_files_what_it_can_together_and_the_rest_as_single_files_would(
    org, location, alice
):
    first = series(1, slices=3)
    upload(org, location, first[:2])  # study 1 holds two slices already
    second = series(2, slices=2)
    other_patient = series(2, slices=3, patient_id="PAT-OTHER")[2]
    stolen_series_uid = Series.objects.get().series_uid
    thief = with_new_sop_uid(series(3, slices=1, series_uid=stolen_series_uid)[0])
    seen = []

    result = upload(
        org,
        location,
        [first[2], first[0], *second, other_patient, thief, second[0], b"not DICOM"],
        uploaded_by=alice,
        on_file=lambda outcome: seen.append(outcome),
    )

    assert [(outcome.status, outcome.code) for outcome in result.files] == [
        ("stored", ""),  # a new slice of a stored study and series
        ("duplicate", ""),  # already stored, same bytes
        ("stored", ""),
        ("stored", ""),  # a new study, two slices
        ("rejected", "patient_mismatch"),  # study 2 under another patient ID
        ("rejected", "series_conflict"),  # study 3 claiming study 1's series
        ("duplicate", ""),  # the chunk's own first slice of study 2, sent twice
        ("rejected", "not_dicom"),
    ]
    assert seen == result.files
    assert [outcome.name for outcome in result.files] == [f"file{n}.dcm" for n in range(8)]
    one, two = (
        Study.objects.get(study_uid=f"{UID_ROOT}.1"),
        Study.objects.get(study_uid=f"{UID_ROOT}.2"),
    )
    assert (one.series_count, one.instance_count) == (1, 3)
    assert (two.series_count, two.instance_count) == (1, 2)
    assert two.patient.patient_id == "PAT-7702"
    assert not Study.objects.filter(study_uid=f"{UID_ROOT}.3").exists()
    assert Instance.objects.count() == 5
    assert Entry.objects.filter(study=two).count() == 1
    assert result.studies == [one.study_uid, two.study_uid]


def test_rows_a_concurrent_upload_wrote_first_file_the_chunk_one_file_at_a_time(
    org, location, monkeypatch
):
    files = series(1, slices=2) + series(2, slices=2)
    written_together = ingestion._write_together
    singles = []
    filed_alone = ingestion._file_one

    def concurrent_upload_first(chunk, **kwargs):
        # Another upload stores the same first slice (its new study, series and instance)
        # after this chunk read what is stored and before it writes.
        monkeypatch.setattr(ingestion, "_write_together", written_together)
        upload(org, location, files[:1])
        return written_together(chunk, **kwargs)

    def file_one(received, **kwargs):
        singles.append(received.name)
        return filed_alone(received, **kwargs)

    monkeypatch.setattr(ingestion, "_write_together", concurrent_upload_first)
    monkeypatch.setattr(ingestion, "_file_one", file_one)

    result = upload(org, location, files)

    # The chunk's insert failed, it wrote nothing, and went one file at a time (the concurrent
    # upload's rows were rolled back with the chunk's transaction, so each file is new again).
    assert singles[-4:] == [f"file{n}.dcm" for n in range(4)]
    assert len(result.stored) == 4 and not result.duplicates
    assert Instance.objects.count() == 4
    assert sorted(Study.objects.values_list("instance_count", flat=True)) == [2, 2]


def test_chunks_end_at_the_file_count_or_the_byte_count(org, location, settings, monkeypatch):
    files = [data for number in range(1, 6) for data in series(number, slices=1)]
    chunks = []
    filed_together = ingestion._file_together

    def together(chunk, **kwargs):
        chunks.append(len(chunk))
        return filed_together(chunk, **kwargs)

    monkeypatch.setattr(ingestion, "_file_together", together)

    settings.INGESTION_CHUNK_FILES = 2
    assert len(upload(org, location, files).stored) == 5
    assert chunks == [2, 2, 1]

    chunks.clear()
    settings.INGESTION_CHUNK_FILES = 100
    settings.INGESTION_CHUNK_BYTES = len(files[0]) * 2  # two files' worth
    more = [data for number in range(11, 14) for data in series(number, slices=1)]
    assert len(upload(org, location, more).stored) == 3
    assert chunks == [2, 1]


def test_studies_filed_together_show_at_once_in_a_remembered_search(org, location, alice):
    client = token_client(alice, scheme="Token")

    def found():
        response = client.get("/api/v1/studies/")
        assert response.status_code == 200
        return sorted(row["study_uid"] for row in response.json()["results"])

    upload(org, location, series(1))
    assert found() == found() == [f"{UID_ROOT}.1"]

    upload(org, location, series(2) + series(3))

    assert found() == [f"{UID_ROOT}.1", f"{UID_ROOT}.2", f"{UID_ROOT}.3"]


def test_more_files_of_a_stored_study_show_at_once_in_a_remembered_search(org, location, alice):
    client = token_client(alice, scheme="Token")

    def counts():
        response = client.get("/api/v1/studies/")
        assert response.status_code == 200
        return [(row["study_uid"], row["instance_count"]) for row in response.json()["results"]]

    files = series(1, slices=4)
    upload(org, location, files[:2])
    assert counts() == counts() == [(f"{UID_ROOT}.1", 2)]

    # The chunk updates the stored study's row without saving it: the answer must still go.
    upload(org, location, files[2:])

    assert counts() == [(f"{UID_ROOT}.1", 4)]
