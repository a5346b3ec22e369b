"""A PACS sends studies to the portal's DICOM listener: what it may send, what is stored, what it
is told, and what the audit trail keeps. The listener runs in this process (``listener``); the
modality is pynetdicom's AE (``scu``) or pynetdicom's own storescu program."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

import pytest
from django.core.files.storage import storages
from django.db import connections, transaction
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from audit.models import Action, AuditEvent
from dimse import listener as dimse_listener
from dimse import services as dimse_services
from dimse.models import DicomNode
from studies.models import Entry, Instance, Study
from studies.services import ingestion
from studies.services.ingestion import FileStatus, ingest_files
from studies.synthetic import to_bytes
from tests.dimse.conftest import (
    PYDICOM_TEST_FILES,
    STUDY_UID,
    Response,
    Scu,
    ct_files,
    data_set_bytes,
    received_events,
)
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def bundled_files() -> list:
    return sorted(path for path in PYDICOM_TEST_FILES.rglob("*") if path.is_file())


_VERDICTS: dict = {}


def upload_verdicts(paths, org, location) -> dict:
    """What the upload makes of the same files on an empty archive ({path: FileOutcome}),
    found in a transaction that is rolled back, so the listener starts from an empty archive
    too. Worked out once for the module: it depends on the files only."""
    key = tuple(paths)
    if key not in _VERDICTS:
        with transaction.atomic():
            handles = [path.open("rb") for path in paths]
            try:
                result = ingest_files(
                    files=[(str(p), handle) for p, handle in zip(paths, handles, strict=True)],
                    organization=org,
                    location=location,
                )
            finally:
                for handle in handles:
                    handle.close()
            transaction.set_rollback(True)
        _VERDICTS[key] = dict(zip(paths, result.files, strict=True))
    return _VERDICTS[key]


# --- Echo and the bundled files ---------------------------------------------------------------


def test_a_known_node_gets_an_answer_to_c_echo(scu):
    assoc = scu.associate()

    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_every_bundled_file_the_upload_accepts_is_stored_and_every_other_one_fails(
    scu, org, location
):
    paths = bundled_files()
    verdicts = upload_verdicts(paths, org, location)

    responses, _assoc = scu.send(paths)

    stored_by_upload = {o.sop_instance_uid for o in verdicts.values() if o.sop_instance_uid}
    assert len(stored_by_upload) > 40
    mismatched: list = []
    for path in paths:
        verdict, response = verdicts[path], responses[path]
        if response is None:
            # No presentation context for it (a DICOMDIR, a file meta without SOP class):
            # nothing the upload would store either.
            assert verdict.status == FileStatus.REJECTED, path.name
            continue
        if response.status == 0xA900:
            # The C-STORE announces its file meta's SOP instance; a few bundled files carry
            # another one in their data set. Such a data set is refused for what it is.
            mismatched.append(path)
            continue
        if verdict.status == FileStatus.REJECTED:
            assert not response.accepted, f"{path.name} was stored: {verdict.message}"
            assert response.status >> 12 == 0xC, (path.name, hex(response.status))
            assert response.comment and len(response.comment) <= 64
        else:
            assert response.accepted, f"{path.name}: 0x{response.status:04X} {response.comment}"
    assert {path.name for path in mismatched} == {
        "badVR.dcm",
        "rtplan.dcm",
        "rtdose.dcm",
        "rtdose_1frame.dcm",
        "rtdose_expb.dcm",
        "rtdose_expb_1frame.dcm",
    }
    # Everything the upload stored is in the archive now, but for those refused data sets
    # that have no consistent twin among the files.
    received = set(Instance.objects.values_list("sop_instance_uid", flat=True))
    missing = stored_by_upload - received
    assert missing <= {verdicts[path].sop_instance_uid for path in mismatched}
    assert len(missing) <= 1


def test_storescu_sends_pydicoms_folder_and_the_archive_holds_what_an_upload_would(
    scu, listener, org, location, tmp_path
):
    paths = bundled_files()
    verdicts = upload_verdicts(paths, org, location)

    process = subprocess.run(
        [
            sys.executable, "-m", "pynetdicom", "storescu",
            listener.host, str(listener.port), str(PYDICOM_TEST_FILES),
            "-aet", "MODALITY1", "-aec", "PORTAL", "-r", "-cx", "-v",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )  # fmt: skip

    output = process.stdout + process.stderr
    assert process.returncode == 0, output
    statuses = re.findall(r"Received Store Response \(Status: 0x([0-9A-F]{4})", output)
    assert len(statuses) > 100
    assert {"0000", "C000"} <= set(statuses)
    stored_by_upload = {
        o.sop_instance_uid for o in verdicts.values() if o.status == FileStatus.STORED
    }
    received = set(Instance.objects.values_list("sop_instance_uid", flat=True))
    assert stored_by_upload <= received
    # storescu re-encodes what pydicom could read of each file; nothing the upload refuses as
    # unreadable or incomplete becomes a new instance.
    assert received <= stored_by_upload


# --- What is stored, and how ------------------------------------------------------------------


def test_the_stored_file_holds_the_data_set_exactly_as_sent_and_lands_in_the_nodes_worklist(
    scu, node, location, tmp_path
):
    paths = ct_files(tmp_path / "ct")

    responses, _assoc = scu.send(paths)

    assert [r.status for r in responses.values()] == [0, 0, 0]
    study = Study.objects.get(study_uid=STUDY_UID)
    assert (study.organization, study.received_location) == (node.organization, location)
    assert study.instance_count == 3
    assert Entry.objects.filter(study=study, worklist__location=location).exists()
    storage = storages["dicom"]
    for path in paths:
        sent = path.read_bytes()
        instance = Instance.objects.get(
            sop_instance_uid=str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        )
        with storage.open(instance.file) as stored:
            assert data_set_bytes(stored.read()) == data_set_bytes(sent)
        assert instance.transfer_syntax == ExplicitVRLittleEndian


def test_a_retired_storage_sop_class_is_accepted(scu, tmp_path):
    # Ultrasound Image Storage (Retired): pydicom knows it, pynetdicom lists no service for it.
    [path] = ct_files(tmp_path, slices=1)
    dataset = dcmread(path)
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6"
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6"
    path.write_bytes(to_bytes(dataset))

    responses, _assoc = scu.send([path])

    assert responses[path] is not None and responses[path].status == 0
    assert Instance.objects.get().sop_class_uid == "1.2.840.10008.5.1.4.1.1.6"


def test_a_data_set_that_is_not_the_announced_instance_is_refused_with_a900(scu, tmp_path):
    [path] = ct_files(tmp_path, slices=1)
    dataset = dcmread(path)
    # The C-STORE request announces the file meta's instance; the data set is another one.
    dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.9999"
    dataset.save_as(path, enforce_file_format=False)

    responses, _assoc = scu.send([path])

    assert responses[path].status == 0xA900
    assert responses[path].comment == "SOP Class/Instance UID differs from the request"
    assert not Instance.objects.exists()


def test_a_bad_data_set_fails_with_a_reason_and_the_rest_of_the_association_is_stored(
    scu, tmp_path
):
    good = ct_files(tmp_path, slices=3)
    cut = tmp_path / "cut.dcm"
    whole = good[1].read_bytes()
    # Same instance cut short mid-pixels: first in the association, before its whole twin.
    cut.write_bytes(whole[: len(whole) - 500])

    responses, _assoc = scu.send([cut, *good])

    assert responses[cut].status == 0xC000
    assert responses[cut].comment == "Data set incomplete: ends before its pixel data"
    assert [responses[path].status for path in good] == [0, 0, 0]
    assert Study.objects.get(study_uid=STUDY_UID).instance_count == 3
    rejected = AuditEvent.objects.filter(action=Action.UPLOAD_REJECTED)
    assert wait_for_count(rejected, 1)
    event = rejected.get()
    assert event.details["kind"] == "truncated"
    assert event.details["protocol"] == "DIMSE"
    assert "Peeters" not in str(event.details)


def wait_for_count(queryset, count: int) -> bool:
    return wait_until(lambda: queryset.count() >= count, timeout=10, interval=0.05)


def test_a_storage_failure_answers_out_of_resources_and_the_next_instance_is_stored(
    scu, tmp_path, monkeypatch
):
    paths = ct_files(tmp_path, slices=3)
    real_store = ingestion._store_bytes
    calls = []

    def store_once_broken(spool, sha256):
        calls.append(sha256)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_store(spool, sha256)

    monkeypatch.setattr(ingestion, "_store_bytes", store_once_broken)

    responses, _assoc = scu.send(paths)

    assert [responses[path].status for path in paths] == [0, 0xA700, 0]
    assert responses[paths[1]].comment == "Storage failed at the portal; send again later"
    assert Study.objects.get(study_uid=STUDY_UID).instance_count == 2


def test_a_data_set_over_the_size_limit_is_refused_as_out_of_resources(scu, tmp_path, settings):
    settings.UPLOAD_MAX_FILE_SIZE = 1024
    [path] = ct_files(tmp_path, slices=1)

    responses, _assoc = scu.send([path])

    assert responses[path] == Response(0xA700, "Data set larger than the portal's size limit")
    assert not Instance.objects.exists()


def test_re_sending_identical_instances_is_a_harmless_success(scu, tmp_path):
    paths = ct_files(tmp_path, slices=2)
    scu.send(paths)

    responses, _assoc = scu.send(paths)

    assert [responses[path].status for path in paths] == [0, 0]
    assert Instance.objects.count() == 2


def test_a_corrected_image_under_the_same_uid_keeps_the_stored_copy_and_warns(scu, tmp_path):
    [path] = ct_files(tmp_path, slices=1)
    scu.send([path])
    dataset = dcmread(path)
    dataset.SeriesDescription = "Thorax (corrected)"
    path.write_bytes(to_bytes(dataset))

    responses, _assoc = scu.send([path])

    assert responses[path].status == 0xB006
    assert Instance.objects.count() == 1


# --- Audit ------------------------------------------------------------------------------------


def test_each_association_audits_one_transfer_event_per_study_with_the_node(scu, node, tmp_path):
    first = ct_files(tmp_path / "a", study_uid=STUDY_UID, slices=3)
    second = ct_files(
        tmp_path / "b", study_uid="1.2.826.0.1.3680043.8.498.9002", slices=2, patient_id="PAT-9002"
    )

    scu.send([*first, *second])
    events = received_events(2)
    scu.send(first)
    events = received_events(3)

    assert len(events) == 3
    by_study = sorted((e.study_uid, e.details["stored"], e.details["duplicates"]) for e in events)
    assert by_study == [
        (STUDY_UID, 0, 3),
        (STUDY_UID, 3, 0),
        ("1.2.826.0.1.3680043.8.498.9002", 2, 0),
    ]
    for event in events:
        assert event.get_action_display() == "Instances received over DICOM"
        assert event.actor is None and event.actor_label == "DICOM node MODALITY1"
        assert event.organization_id == node.organization_id
        assert event.details["protocol"] == "DIMSE"
        assert event.details["ae_title"] == "MODALITY1"
        assert event.details["node_id"] == node.pk
        assert event.details["peer_address"] == "127.0.0.1"
        assert event.details["location_id"] == node.location_id


# --- Refusals ---------------------------------------------------------------------------------


def refused_events():
    return AuditEvent.objects.filter(action=Action.ASSOCIATION_REFUSED)


def test_an_unknown_calling_ae_title_is_rejected_and_audited(listener, node):
    assoc = Scu(listener, calling_ae="STRANGER").associate()

    assert assoc.is_rejected
    rejection = assoc.acceptor.primitive
    assert (rejection.result, rejection.result_source, rejection.diagnostic) == (0x01, 0x01, 0x03)
    event = refused_events().get()
    assert event.details == {
        "calling_ae": "STRANGER",
        "called_ae": "PORTAL",
        "peer_address": "127.0.0.1",
        "reason": "no active DICOM node has the calling AE title",
    }
    assert event.organization_id is None


def test_a_called_ae_title_that_is_not_the_portals_is_rejected_and_audited(listener, node):
    assoc = Scu(listener, called_ae="ORTHANC").associate()

    assert assoc.is_rejected
    assert assoc.acceptor.primitive.diagnostic == 0x07
    event = refused_events().get()
    assert (event.details["called_ae"], event.details["reason"]) == (
        "ORTHANC",
        "called AE title is not the portal's",
    )


def test_a_node_calling_from_another_address_is_rejected_and_its_organization_sees_it(
    listener, node
):
    node.host = "192.0.2.10"
    node.save(update_fields=["host"])

    assoc = Scu(listener).associate()

    assert assoc.is_rejected
    assert assoc.acceptor.primitive.diagnostic == 0x03
    event = refused_events().get()
    assert event.details["reason"] == "peer address does not match the node's host"
    assert event.details["node_id"] == node.pk
    assert event.organization_id == node.organization_id


def test_a_node_pinned_to_its_address_or_network_is_accepted(listener, node):
    for host in ("127.0.0.1", "127.0.0.0/8", "localhost"):
        node.host = host
        node.save(update_fields=["host"])
        assoc = Scu(listener).associate()
        assert assoc.is_established, host
        assoc.release()
    assert not refused_events().exists()


def test_an_inactive_node_is_rejected(listener, node):
    node.is_active = False
    node.save(update_fields=["is_active"])

    assoc = Scu(listener).associate()

    assert assoc.is_rejected
    assert refused_events().count() == 1


def test_when_the_check_itself_fails_the_association_is_rejected_not_accepted(
    listener, node, monkeypatch
):
    def broken(**kwargs):
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(dimse_listener, "accept_association", broken)

    assoc = Scu(listener).associate()

    assert assoc.is_rejected
    rejection = assoc.acceptor.primitive
    assert (rejection.result, rejection.diagnostic) == (0x02, 0x01)  # transient


# --- Many at once, and restarts ---------------------------------------------------------------


def test_several_associations_at_once_all_land_with_the_right_counts(listener, node, tmp_path):
    # Four modalities send four studies, while two more send halves of one shared study.
    studies = {f"1.2.826.0.1.3680043.8.498.91{n}": 4 for n in range(4)}
    batches = [
        ct_files(tmp_path / str(n), study_uid=uid, slices=4, patient_id=f"PAT-91{n}")
        for n, uid in enumerate(studies)
    ]
    shared_uid = "1.2.826.0.1.3680043.8.498.9200"
    shared = ct_files(tmp_path / "shared", study_uid=shared_uid, slices=6, patient_id="PAT-9200")
    batches += [shared[:3], shared[3:]]
    barrier = threading.Barrier(len(batches))
    results: list = [None] * len(batches)
    errors: list[BaseException] = []

    def modality(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index], _assoc = Scu(listener).send(batches[index])
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=modality, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    assert all(r.status == 0 for result in results for r in result.values())
    counts = dict(Study.objects.values_list("study_uid", "instance_count"))
    assert counts == {**studies, shared_uid: 6}
    assert Study.objects.get(study_uid=shared_uid).series_count == 1
    # One event per study per association: the shared study came over two.
    assert len(received_events(6)) == 6


def test_after_a_restart_everything_acknowledged_is_there_and_a_resend_is_a_duplicate(
    listener, node, tmp_path, settings
):
    paths = ct_files(tmp_path, slices=4)
    # The peer is cut off (abort) after two acknowledged instances.
    responses, assoc = Scu(listener).send(paths[:2], release=False)
    assoc.abort()
    assert [r.status for r in responses.values()] == [0, 0]
    dimse_listener.stop(listener, grace=5)

    with dimse_listener.running("127.0.0.1", listener.port, grace=5) as again:
        assert Study.objects.get(study_uid=STUDY_UID).instance_count == 2
        responses, _assoc = Scu(again).send(paths)

    assert [r.status for r in responses.values()] == [0, 0, 0, 0]
    events = received_events(2)
    assert sorted((e.details["stored"], e.details["duplicates"]) for e in events) == [
        (2, 0),
        (2, 2),
    ]
    assert Study.objects.get(study_uid=STUDY_UID).instance_count == 4


def test_a_listener_bound_but_not_yet_serving_stops_cleanly(database_url):
    server = dimse_listener.make_server("127.0.0.1", 0)
    port = server.port

    dimse_listener.stop(server)

    # The port is free again.
    again = dimse_listener.make_server("127.0.0.1", port)
    dimse_listener.stop(again)


def test_the_listener_accepts_every_storage_class_pydicom_knows_in_the_usual_syntaxes():
    classes = dimse_listener.storage_sop_classes()

    assert CTImageStorage in classes
    assert "1.2.840.10008.5.1.4.1.1.6" in classes  # Ultrasound Image Storage (Retired)
    assert "1.2.840.10008.1.3.10" not in classes  # DICOMDIR: media only
    assert len(classes) == len(set(classes)) > 170
    names = {syntax.name for syntax in dimse_listener.TRANSFER_SYNTAXES}
    for wanted in (
        "Implicit VR Little Endian",
        "Explicit VR Little Endian",
        "Deflated Explicit VR Little Endian",
        "JPEG Baseline (Process 1)",
        "JPEG Extended (Process 2 and 4)",
        "JPEG Lossless, Non-Hierarchical (Process 14)",
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
        "JPEG-LS Lossless Image Compression",
        "JPEG-LS Lossy (Near-Lossless) Image Compression",
        "JPEG 2000 Image Compression (Lossless Only)",
        "JPEG 2000 Image Compression",
        "RLE Lossless",
    ):
        assert wanted in names


def test_every_error_comment_fits_its_64_characters():
    comments = [*dimse_services._COMMENTS.values(), dimse_services._DIFFERENT_CONTENT]
    comments.append(dimse_services.STORAGE_FAILED_COMMENT)
    assert all(0 < len(comment) <= 64 and comment.isascii() for comment in comments)


def test_a_peer_offering_lossy_and_uncompressed_gets_uncompressed(listener, node):
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.4.50", ExplicitVRLittleEndian])
    ae.add_requested_context(Verification)

    assoc = ae.associate(listener.host, listener.port, ae_title="PORTAL")

    [context] = [c for c in assoc.accepted_contexts if c.abstract_syntax == CTImageStorage]
    assert context.transfer_syntax[0] == ExplicitVRLittleEndian
    assoc.release()


def test_each_association_closes_its_threads_database_connection_when_it_ends(
    listener, node, tmp_path, monkeypatch
):
    # Django's connections belong to the thread that opened them: one left open per
    # association would exhaust PostgreSQL's connection slots within a day of a busy PACS.
    closed_by: list[tuple[str, bool]] = []
    close_all = connections.close_all

    def spy() -> None:
        thread = threading.current_thread().name
        closed_by.append((thread, connections["default"].connection is not None))
        close_all()

    monkeypatch.setattr(connections, "close_all", spy)
    paths = ct_files(tmp_path, slices=1)

    Scu(listener).send(paths)  # accepted, stores
    Scu(listener, calling_ae="STRANGER").associate()  # refused (and audited)
    wait_until(lambda: len(closed_by) >= 2, timeout=10, interval=0.05)

    assert len(closed_by) == 2
    assert all(name.startswith("AcceptorThread") and was_open for name, was_open in closed_by)


def test_another_organizations_node_cannot_add_to_a_study_held_here(
    listener, node, other_org, tmp_path
):
    # Riverside's own node sends a study St. Elsewhere already holds: refused as a conflict,
    # without saying whose it is.
    from accounts.models import Location

    imaging = Location.objects.create(organization=other_org, name="Imaging")
    DicomNode.objects.create(organization=other_org, ae_title="RIVERSIDE", location=imaging)
    paths = ct_files(tmp_path, slices=1)
    Scu(listener).send(paths)

    responses, _assoc = Scu(listener, calling_ae="RIVERSIDE").send(paths)

    [response] = responses.values()
    assert response.status == 0xC000
    assert response.comment == "Study UID conflicts with a study held elsewhere"
    assert Study.objects.get().organization == node.organization
