"""The stored facts of an instance (``studies.frame_sources``): remembered as it is stored and
shared by every viewer, standing through any change but a deletion, and never a way around the
access decision."""

import io
import pickle

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom.uid import generate_uid

from portal import decisions
from sharing.models import AccessLevel
from studies.frame_sources import FrameSource, frame_source_key
from studies.models import Instance, Series
from studies.services.ingestion import IngestionBatch, ingest_files
from studies.synthetic import to_bytes
from tests.dicomweb.conftest import CT_STUDY_UID, ct_datasets, ingest, token_client
from tests.dicomweb.test_qido import add_structured_report
from tests.dicomweb.test_remembered_access import frame
from tests.dicomweb.test_wado import instance_url
from tests.factories import share_entry

pytestmark = pytest.mark.django_db

ARRIVING_STUDY_UID = "1.2.826.0.1.3680043.8.498.7002"


def read_tables(client, url: str, **headers) -> list[str]:
    """The SQL the request ran, as the tables it read from."""
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, **headers).status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def reads_instances(statements: list[str]) -> bool:
    return any('FROM "studies_instance"' in sql for sql in statements)


def remembered(instance: Instance):
    key = frame_source_key(
        instance.series.study.study_uid, instance.series.series_uid, instance.sop_instance_uid
    )
    return caches["default"].get(f"decisions:{key}")


def test_instances_filed_together_are_remembered_for_their_viewers_as_they_commit(
    org, location, alice, django_capture_on_commit_callbacks
):
    datasets = ct_datasets(study_uid=ARRIVING_STUDY_UID)
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest_files(
            files=[(f"IM{n}", io.BytesIO(to_bytes(ds))) for n, ds in enumerate(datasets)],
            organization=org,
            location=location,
        )
    assert len(result.stored) == 4
    client = token_client(alice)

    for instance in Instance.objects.filter(series__study__study_uid=ARRIVING_STUDY_UID):
        # The viewer opening the study as it arrives decides the access, and reads no instance.
        statements = read_tables(
            client, instance_url(instance, "frames", "1", "rendered"), HTTP_ACCEPT="image/jpeg"
        )
        assert not reads_instances(statements), statements
        _generation, _until, source = remembered(instance)
        assert source == FrameSource.of(instance)


def test_an_instance_received_alone_is_remembered_as_it_commits(
    org, location, alice, django_capture_on_commit_callbacks
):
    """A C-STORE files each instance on its own (``IngestionBatch.add``)."""
    sent = ct_datasets(study_uid=ARRIVING_STUDY_UID)[0]
    with (
        django_capture_on_commit_callbacks(execute=True),
        IngestionBatch(organization=org, location=location, actor_label="CT01") as batch,
    ):
        outcome = batch.add("IM0", io.BytesIO(to_bytes(sent)))
    assert outcome.status == "stored"
    instance = Instance.objects.get(sop_instance_uid=sent.SOPInstanceUID)

    statements = read_tables(token_client(alice), instance_url(instance, "frames", "1"))

    assert not reads_instances(statements), statements


def test_facts_read_for_one_viewer_serve_the_next(ct_study, alice, carol):
    """Stored before the cache was there (or long ago): the first frame asked reads its series'
    facts, and another user's frames of the series read no instance."""
    share_entry(carol, ct_study.study)
    first, second = ct_study.instances[:2]
    assert reads_instances(read_tables(token_client(alice), instance_url(first, "frames", "1")))

    statements = read_tables(token_client(carol), instance_url(second, "frames", "1"))

    assert not reads_instances(statements), statements


def test_remembered_facts_hold_the_plain_values_and_no_patient_data(ct_study, alice):
    first, second = ct_study.instances[:2]
    assert frame(token_client(alice), first).status_code == 200

    _generation, _until, source = remembered(second)

    assert type(source) is FrameSource
    assert (source.sop_instance_uid, source.sha256) == (second.sop_instance_uid, second.sha256)
    stored = pickle.dumps(source)
    patient = ct_study.study.patient
    for value in (patient.patient_id, patient.family_name):
        assert value and value.encode() not in stored


def test_a_study_arriving_or_access_changing_leaves_the_facts_standing(
    ct_study, org, location, alice
):
    client = token_client(alice)
    ct = ct_study.instances[0]
    assert frame(client, ct).status_code == 200

    ingest(org, location, {"other": to_bytes(ct_datasets(study_uid=ARRIVING_STUDY_UID)[0])})
    decisions.changed(scope=decisions.ACCOUNTS)  # a membership changed

    statements = read_tables(client, instance_url(ct, "frames", "1"))
    assert any('FROM "studies_study"' in sql for sql in statements), statements
    assert not reads_instances(statements), statements


def test_a_deleted_instance_is_gone_for_its_viewers_at_once(ct_study, alice):
    client = token_client(alice)
    first, second, third = ct_study.instances[:3]
    assert frame(client, first).status_code == 200
    assert remembered(second) is not None

    second.delete()

    assert frame(client, second).status_code == 404
    # What is still stored is served, its facts read again.
    assert reads_instances(read_tables(client, instance_url(third, "frames", "1")))


def test_a_deleted_series_is_gone_for_its_viewers_at_once(ct_study, alice):
    client = token_client(alice)
    first, second = ct_study.instances[:2]
    assert frame(client, first).status_code == 200
    url = instance_url(second, "frames", "1")

    Series.objects.filter(pk=first.series_id).delete()

    assert client.get(url).status_code == 404


def test_an_instance_asked_under_another_series_finds_nothing(ct_study, alice):
    client = token_client(alice)
    ct, mr = ct_study.instances[0], ct_study.instances[3]
    assert ct.series_id != mr.series_id
    assert frame(client, ct).status_code == 200
    assert frame(client, mr).status_code == 200
    elsewhere = (
        f"/dicomweb/studies/{CT_STUDY_UID}/series/{mr.series.series_uid}"
        f"/instances/{ct.sop_instance_uid}/frames/1"
    )

    assert client.get(elsewhere).status_code == 404


def test_images_only_access_finds_a_report_no_more_than_an_unknown_instance(
    ct_study, org, location, alice, carol
):
    """Facts remembered of a report (an object without pixel data) for a user who may read it
    tell a user with images-only access nothing: not even that it is there."""
    report_uid = add_structured_report(org, location, ct_study.study)
    report = Instance.objects.get(sop_instance_uid=report_uid)
    share_entry(carol, ct_study.study, level=AccessLevel.IMAGES)
    frames = instance_url(report, "frames", "1")
    unknown = frames.replace(report.sop_instance_uid, generate_uid())
    said_to_alice = token_client(alice).get(frames)
    assert said_to_alice.status_code == 404 and b"no frames" in said_to_alice.content
    assert remembered(report) is not None

    said_to_carol = token_client(carol).get(frames)

    assert said_to_carol.status_code == 404
    assert said_to_carol.content == token_client(carol).get(unknown).content


def test_describing_plain_images_again_forgets_the_facts_read_before(ct_study, alice):
    """The upgrade command rewrites ``plain_image`` in bulk, which sends no signal."""
    client = token_client(alice)
    first, second = ct_study.instances[:2]
    assert frame(client, first).status_code == 200
    Instance.objects.filter(pk=second.pk).update(plain_image=None)

    call_command("describe_plain_images", stdout=io.StringIO())

    assert reads_instances(read_tables(client, instance_url(second, "frames", "1")))


def test_without_remembered_decisions_each_frame_reads_its_own_instance_alone(
    org, location, alice, settings, django_capture_on_commit_callbacks
):
    """``make run``'s set-up: no shared cache, nothing remembered, nothing written to a cache."""
    settings.ACCESS_DECISION_SECONDS = 0
    datasets = ct_datasets(study_uid=ARRIVING_STUDY_UID)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(org, location, {f"IM{n}": to_bytes(ds) for n, ds in enumerate(datasets)})
    client = token_client(alice)

    for instance in Instance.objects.filter(series__study__study_uid=ARRIVING_STUDY_UID):
        statements = read_tables(client, instance_url(instance, "frames", "1"))
        read = [sql for sql in statements if 'FROM "studies_instance"' in sql]
        assert len(read) == 1 and instance.sop_instance_uid in read[0], statements
        assert remembered(instance) is None
