"""A real peer: Orthanc 1.10 with its DICOMweb plugin pulls a study from the portal through its
DICOMweb client, and sends one to the portal's listener with C-STORE.

Orthanc runs in a private network namespace (it listens on every interface); the portal's web
server and listener bind their sockets inside that namespace and serve them from this
process's threads (``tests.interop.servers``). Orthanc authenticates to the portal the way an
integrator configures it: an API token sent by its ``DicomWeb.Servers`` ``HttpHeaders``.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from django.core.files.storage import storages

from audit.models import Action, AuditEvent
from dimse.models import DicomNode
from studies.models import Entry, Instance, Study
from studies.synthetic import to_bytes
from tests.accounts.helpers import api_token
from tests.dicomweb.conftest import CT_STUDY_UID, ct_datasets
from tests.integration.helpers import wait_until
from tests.interop.servers import live_portal, running_listener

pytestmark = [pytest.mark.orthanc, pytest.mark.django_db(transaction=True)]

SENT_STUDY_UID = "1.2.826.0.1.3680043.8.498.7101"


def _pixels(part10: bytes) -> tuple[bytes, object]:
    """The raw Pixel Data and the decoded array of a DICOM file."""
    dataset = pydicom.dcmread(io.BytesIO(part10))
    return dataset.PixelData, dataset.pixel_array


def _assert_same_pixels(received: bytes, original: bytes, what: str) -> None:
    received_raw, received_array = _pixels(received)
    original_raw, original_array = _pixels(original)
    assert received_array.shape == original_array.shape, what
    assert (received_array == original_array).all(), what
    assert received_raw == original_raw, what


def _orthanc_instance(peer, sop_instance_uid: str) -> str:
    """Orthanc's identifier of the instance with this SOP Instance UID."""
    found = [
        hit
        for hit in peer.post_json("/tools/lookup", sop_instance_uid)
        if hit["Type"] == "Instance"
    ]
    assert len(found) == 1, f"Orthanc holds {len(found)} instance(s) {sop_instance_uid}"
    return found[0]["ID"]


def _portal_server(url: str, token: str) -> dict:
    # As an integrator configures the portal in Orthanc: its /dicomweb/ root and an API token.
    return {"Url": f"{url}/dicomweb/", "HttpHeaders": {"Authorization": f"Bearer {token}"}}


def test_orthanc_pulls_a_study_through_its_dicomweb_client(
    database_url, settings, namespace, orthanc, ct_study, alice
):
    token = api_token(alice)
    with live_portal(settings, namespace) as url:
        peer = orthanc(dicomweb_servers={"portal": _portal_server(url, token)})

        # Orthanc's DICOMweb client finds the study (QIDO-RS) ...
        found = peer.post_json(
            "/dicom-web/servers/portal/get",
            {
                "Uri": "/studies",
                "Arguments": {"PatientName": "dub*", "00080061": "CT"},
                "HttpHeaders": {"Accept": "application/dicom+json"},
            },
        )
        assert [study["0020000D"]["Value"] for study in found] == [[CT_STUDY_UID]]

        # ... and retrieves it (WADO-RS) into its own store.
        peer.post_json(
            "/dicom-web/servers/portal/retrieve", {"Resources": [{"Study": CT_STUDY_UID}]}
        )

        assert sorted(peer.get_json("/instances")) == sorted(
            _orthanc_instance(peer, uid) for uid in ct_study.files
        )
    for sop_instance_uid, original in ct_study.files.items():
        received = peer.instance_file(_orthanc_instance(peer, sop_instance_uid))
        _assert_same_pixels(received, original, sop_instance_uid)
        header = pydicom.dcmread(io.BytesIO(received), stop_before_pixels=True)
        assert header.StudyInstanceUID == CT_STUDY_UID
        assert str(header.PatientName) == "Dubois^Marie"
    retrieved = AuditEvent.objects.filter(action=Action.INSTANCES_RETRIEVED, actor=alice)
    assert retrieved.exists()
    assert AuditEvent.objects.filter(action=Action.STUDIES_QUERIED, actor=alice).exists()


def test_orthanc_with_an_outsiders_token_finds_nothing_and_pulls_nothing(
    database_url, settings, namespace, orthanc, ct_study, carol
):
    token = api_token(carol)
    with live_portal(settings, namespace) as url:
        peer = orthanc(dicomweb_servers={"portal": _portal_server(url, token)})

        found = peer.post_json(
            "/dicom-web/servers/portal/get",
            {"Uri": "/studies", "HttpHeaders": {"Accept": "application/dicom+json"}},
        )
        # Orthanc reports the portal's 404 as a failed retrieve; what matters is what it holds.
        peer.request(
            "POST", "/dicom-web/servers/portal/retrieve", {"Resources": [{"Study": CT_STUDY_UID}]}
        )

        assert found == []
        assert peer.get_json("/instances") == []
    assert not AuditEvent.objects.filter(action=Action.INSTANCES_RETRIEVED).exists()


def test_orthanc_sends_a_study_to_the_listener_which_files_it_into_the_nodes_location(
    database_url, settings, namespace, orthanc, org, location
):
    settings.DICOM_AE_TITLE = "PORTAL"
    node = DicomNode.objects.create(organization=org, ae_title="ORTHANC1", location=location)
    sent = {
        ds.SOPInstanceUID: to_bytes(ds)
        for ds in ct_datasets(study_uid=SENT_STUDY_UID, patient_id="PAT-7101")
    }
    with running_listener(namespace) as listener:
        peer = orthanc(
            aet="ORTHANC1", modalities={"portal": ("PORTAL", "127.0.0.1", listener.port)}
        )
        for data in sent.values():
            peer.upload(data)
        [study] = [hit for hit in peer.post_json("/tools/lookup", SENT_STUDY_UID)]

        assert peer.post_json("/modalities/portal/echo", {}) == {}
        answer = peer.post_json(
            "/modalities/portal/store", {"Resources": [study["ID"]], "Synchronous": True}
        )

        assert answer["FailedInstancesCount"] == 0
        assert answer["InstancesCount"] == len(sent)
        # The listener audits the association when it ends, in the association's thread.
        [event] = wait_until(
            lambda: list(AuditEvent.objects.filter(action=Action.INSTANCES_RECEIVED)),
            timeout=10,
            what="the INSTANCES_RECEIVED event",
        )
    stored = Study.objects.get(study_uid=SENT_STUDY_UID)
    assert (stored.organization, stored.received_location) == (org, location)
    assert Entry.objects.filter(study=stored, worklist__location=location).exists()
    assert stored.instance_count == len(sent)
    storage = storages["dicom"]
    for sop_instance_uid, original in sent.items():
        instance = Instance.objects.get(sop_instance_uid=sop_instance_uid)
        with storage.open(instance.file) as handle:
            _assert_same_pixels(handle.read(), original, sop_instance_uid)
    assert event.details["protocol"] == "DIMSE"
    assert (event.details["ae_title"], event.details["node_id"]) == ("ORTHANC1", node.pk)


def test_an_orthanc_the_portal_does_not_know_is_refused_and_audited(
    database_url, settings, namespace, orthanc, org, location
):
    settings.DICOM_AE_TITLE = "PORTAL"
    DicomNode.objects.create(organization=org, ae_title="ORTHANC1", location=location)
    with running_listener(namespace) as listener:
        peer = orthanc(
            aet="STRANGER", modalities={"portal": ("PORTAL", "127.0.0.1", listener.port)}
        )
        for data in [to_bytes(ds) for ds in ct_datasets(study_uid=SENT_STUDY_UID)][:1]:
            peer.upload(data)
        [study] = peer.post_json("/tools/lookup", SENT_STUDY_UID)

        echo = peer.request("POST", "/modalities/portal/echo", {})
        store = peer.request(
            "POST", "/modalities/portal/store", {"Resources": [study["ID"]], "Synchronous": True}
        )

        assert echo.status >= 400
        assert store.status >= 400
    assert not Study.objects.filter(study_uid=SENT_STUDY_UID).exists()
    refused = AuditEvent.objects.filter(action=Action.ASSOCIATION_REFUSED)
    assert refused.count() >= 2
    assert "STRANGER" in str(refused.first().details)
