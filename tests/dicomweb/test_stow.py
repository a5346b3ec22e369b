"""STOW-RS: integrators push instances with multipart/related bodies; what is stored, what is
refused and why, who may store, and the PS3.18 answer a client reads back."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import tracemalloc

import pydicom
import pytest
from django.conf import settings as django_settings
from django.core.files.storage import storages
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pydicom.uid import CTImageStorage, SecondaryCaptureImageStorage

from accounts.models import Location, Membership, Role
from accounts.permissions import Perm
from audit.models import Action, AuditEvent
from dicomweb import stow
from studies.models import Instance, Study
from studies.synthetic import make_series, to_bytes
from tests.accounts.helpers import HttpsClient
from tests.conftest import make_user
from tests.dicomweb.conftest import CT_STUDY_UID, api_token, ct_datasets, token_client
from tests.dicomweb.plain_http import dicomweb_client, live_portal
from tests.dicomweb.test_qido import open_guest_link

BOUNDARY = "portal-test-7c0f"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
STORE_URL = "/dicomweb/studies"

# PS3.18 Table I.2-2 and I.2-1.
CANNOT_UNDERSTAND, DOES_NOT_MATCH, COERCED = 0xC000, 0xA900, 0xB000


def multipart(*parts: bytes, part_type: str = "application/dicom") -> bytes:
    body = b"preamble, ignored\r\n"
    for data in parts:
        body += f"--{BOUNDARY}\r\nContent-Type: {part_type}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def store(client, *parts: bytes, url: str = STORE_URL, **extra):
    return client.post(url, data=multipart(*parts), content_type=CONTENT_TYPE, **extra)


def answer(response) -> pydicom.Dataset:
    """The store response, read as DICOM JSON (as dicomweb-client reads it)."""
    assert response["Content-Type"] == "application/dicom+json"
    return pydicom.Dataset.from_json(json.loads(response.content))


def referenced(response) -> list[str]:
    return [
        item.ReferencedSOPInstanceUID for item in answer(response).get("ReferencedSOPSequence", [])
    ]


def failures(response) -> list[tuple[str, int]]:
    return [
        (item.get("ReferencedSOPInstanceUID", ""), item.FailureReason)
        for item in answer(response).get("FailedSOPSequence", [])
    ]


def study_files(**overrides) -> list[bytes]:
    """Dubois^Marie's study: three CT slices and one MR slice, as Part-10 files."""
    return [to_bytes(ds) for ds in ct_datasets(**overrides)]


def other_study() -> list[bytes]:
    return [
        to_bytes(ds)
        for ds in make_series(
            patient_name="Janssens^Piet",
            patient_id="PAT-7002",
            birth_date="19610101",
            sex="M",
            study_uid="1.2.826.0.1.3680043.8.498.7002",
            study_date="20240602",
            study_description="CT Chest",
            accession="ACC7002",
            modality="CT",
            series_number=1,
            series_description="Chest",
            slices=1,
            rows=32,
            columns=32,
            body_part="CHEST",
        )
    ]


def uid_of(data: bytes) -> str:
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID


@pytest.fixture
def viewer_only(org, location):
    """A secretary who may search studies but not upload them."""
    user = make_user("victor")
    role = Role.objects.create(name="Viewer", permissions=[Perm.VIEW_STUDIES.value])
    Membership.objects.create(user=user, organization=org, role=role).locations.add(location)
    return user


# --- Storing ----------------------------------------------------------------------------------


def test_a_study_is_stored_and_the_answer_references_every_instance(alice, location):
    files = study_files()

    response = store(token_client(alice), *files)

    assert response.status_code == 200
    body = answer(response)
    site = django_settings.SITE_URL
    assert body.RetrieveURL == f"{site}/dicomweb/studies/{CT_STUDY_UID}"
    assert "FailedSOPSequence" not in body
    items = {item.ReferencedSOPInstanceUID: item for item in body.ReferencedSOPSequence}
    assert set(items) == {uid_of(data) for data in files}
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        item = items[ds.SOPInstanceUID]
        assert item.ReferencedSOPClassUID == ds.SOPClassUID
        assert item.RetrieveURL == (
            f"{site}/dicomweb/studies/{CT_STUDY_UID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        assert "WarningReason" not in item
    study = Study.objects.get(study_uid=CT_STUDY_UID)
    assert study.received_location == location
    assert study.instance_count == 4


def test_a_requests_new_instances_are_filed_together(alice):
    """As an upload's files: one INSERT for the request's instances, not one each."""
    files = study_files() + other_study()

    with CaptureQueriesContext(connection) as captured:
        response = store(token_client(alice), *files)

    assert response.status_code == 200
    inserts = [
        query["sql"]
        for query in captured.captured_queries
        if query["sql"].startswith('INSERT INTO "studies_instance"')
    ]
    assert len(inserts) == 1
    assert Instance.objects.count() == 5


def test_the_answer_names_what_was_filed_without_reading_it_back(alice):
    files = study_files()
    client = token_client(alice)
    assert store(client, files[0]).status_code == 200

    with CaptureQueriesContext(connection) as captured:
        response = store(client, *files[1:])

    assert response.status_code == 200
    read = [query["sql"] for query in captured.captured_queries]
    inserted = next(
        n for n, sql in enumerate(read) if sql.startswith('INSERT INTO "studies_instance"')
    )
    assert not [sql for sql in read[inserted:] if 'FROM "studies_instance"' in sql]
    for data, item in zip(files[1:], answer(response).ReferencedSOPSequence, strict=True):
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        assert (item.ReferencedSOPInstanceUID, item.ReferencedSOPClassUID) == (
            ds.SOPInstanceUID,
            ds.SOPClassUID,
        )
        assert item.RetrieveURL.endswith(
            f"/studies/{CT_STUDY_UID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        )


def test_the_upload_location_is_remembered_until_the_membership_changes(alice, location):
    client = token_client(alice)
    files = study_files()
    # The first store also makes the location's worklist, which is an account answer's change.
    assert store(client, files[0]).status_code == 200
    assert store(client, files[1]).status_code == 200
    with CaptureQueriesContext(connection) as captured:
        assert store(client, files[2]).status_code == 200
    assert not [q for q in captured.captured_queries if 'FROM "accounts_location"' in q["sql"]]

    Membership.objects.get(user=alice).locations.remove(location)

    refused = store(client, files[3])
    assert refused.status_code == 400
    assert "works from no location" in refused.json()["detail"]
    assert Instance.objects.count() == 3


def test_a_tokens_next_store_asks_the_cache_once(alice, counting_cache):
    """Who the token is, whether its user may upload and where to: one round trip, asked
    before the token is checked, for whom it stood for last time."""
    client = token_client(alice)
    files = study_files()
    assert store(client, files[0]).status_code == 200
    assert store(client, files[1]).status_code == 200
    counting_cache.asked = 0
    counting_cache.answers_asked = []

    assert store(client, files[2]).status_code == 200

    assert counting_cache.asked == 1
    assert {
        f"decisions:memberships:{alice.pk}",
        f"decisions:upload-locations:{alice.pk}",
    } <= set(counting_cache.answers_asked)


def test_stored_files_are_the_bytes_sent_and_can_be_viewed(alice):
    files = study_files()
    store(token_client(alice), *files)

    for data in files:
        instance = Instance.objects.get(sop_instance_uid=uid_of(data))
        with storages["dicom"].open(instance.file, "rb") as stored:
            assert stored.read() == data
    first = Instance.objects.filter(series__modality="CT").order_by("number").first()
    frame = reverse(
        "dicomweb:rendered_frame",
        args=[CT_STUDY_UID, first.series.series_uid, first.sop_instance_uid, 1],
    )
    assert token_client(alice).get(frame).status_code == 200


def test_a_store_is_audited_per_study_as_instances_received_over_stow(alice, location):
    store(token_client(alice), *study_files(), *other_study())

    events = AuditEvent.objects.filter(action=Action.INSTANCES_RECEIVED).order_by("pk")
    assert [event.study_uid for event in events] == [
        CT_STUDY_UID,
        "1.2.826.0.1.3680043.8.498.7002",
    ]
    first = events[0]
    assert first.actor == alice
    assert first.details["protocol"] == "STOW-RS"
    assert first.details["stored"] == 4
    assert first.details["location_id"] == location.pk
    assert "Dubois" not in json.dumps(first.details)


def test_several_studies_in_one_request_have_no_single_retrieve_url(alice):
    response = store(token_client(alice), *study_files(), *other_study())

    body = answer(response)
    assert response.status_code == 200
    assert len(body.ReferencedSOPSequence) == 5
    assert body["RetrieveURL"].VR == "UR" and body["RetrieveURL"].value in (None, "", [])


def test_good_and_bad_parts_store_the_good_ones_and_name_the_bad_ones(alice):
    good = study_files()
    cut = good[0][: len(good[0]) // 2]  # its header is whole, its pixel data is not

    response = store(token_client(alice), good[1], b"not a DICOM file", cut, good[3])

    assert response.status_code == 202
    assert set(referenced(response)) == {uid_of(good[1]), uid_of(good[3])}
    assert failures(response) == [("", CANNOT_UNDERSTAND), (uid_of(good[0]), CANNOT_UNDERSTAND)]
    assert Instance.objects.count() == 2
    assert "part 2: " in response["Warning"] and "part 3: " in response["Warning"]
    rejected = AuditEvent.objects.filter(action=Action.UPLOAD_REJECTED)
    assert sorted(event.details["file"] for event in rejected) == ["part 2", "part 3"]
    assert {event.details["protocol"] for event in rejected} == {"STOW-RS"}


def test_nothing_storable_is_409_with_every_failure(alice):
    response = store(token_client(alice), b"one", b"two")

    assert response.status_code == 409
    assert failures(response) == [("", CANNOT_UNDERSTAND), ("", CANNOT_UNDERSTAND)]
    assert "ReferencedSOPSequence" not in answer(response)
    assert not Instance.objects.exists()
    assert not AuditEvent.objects.filter(action=Action.INSTANCES_RECEIVED).exists()


def test_storing_into_a_study_refuses_parts_of_another_study(alice):
    files = study_files()
    stranger = other_study()[0]

    response = store(
        token_client(alice), files[0], stranger, files[1], url=f"{STORE_URL}/{CT_STUDY_UID}"
    )

    assert response.status_code == 202
    assert answer(response).RetrieveURL.endswith(f"/dicomweb/studies/{CT_STUDY_UID}")
    assert set(referenced(response)) == {uid_of(files[0]), uid_of(files[1])}
    assert failures(response) == [(uid_of(stranger), DOES_NOT_MATCH)]
    assert not Study.objects.filter(study_uid="1.2.826.0.1.3680043.8.498.7002").exists()
    event = AuditEvent.objects.get(action=Action.UPLOAD_REJECTED)
    assert event.details["kind"] == "study_mismatch"
    assert event.details["file"] == "part 2"


def test_only_parts_of_another_study_are_409(alice):
    response = store(token_client(alice), *other_study(), url=f"{STORE_URL}/{CT_STUDY_UID}")

    assert response.status_code == 409
    assert failures(response) == [(uid_of(other_study()[0]), DOES_NOT_MATCH)]


def test_storing_again_is_harmless_and_changed_bytes_keep_the_stored_copy(alice):
    client = token_client(alice)
    files = study_files()
    first = store(client, *files)

    again = store(client, *files)
    changed = ct_datasets()[0]
    changed.ImageComments = "re-sent with other bytes"
    changed.SOPClassUID = changed.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    different = store(client, to_bytes(changed))

    assert first.status_code == again.status_code == 200
    assert sorted(referenced(again)) == sorted(referenced(first))
    assert Instance.objects.count() == 4
    assert different.status_code == 202
    [item] = answer(different).ReferencedSOPSequence
    assert item.WarningReason == COERCED
    # Named as the copy kept, not as the bytes sent.
    assert item.ReferencedSOPClassUID == CTImageStorage
    assert "different content" in different["Warning"]
    instance = Instance.objects.get(sop_instance_uid=changed.SOPInstanceUID)
    with storages["dicom"].open(instance.file, "rb") as stored:
        assert stored.read() == files[0]


# --- The request's form -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/dicom",
        f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}',
        f"multipart/related; boundary={BOUNDARY}",
        f"multipart/form-data; boundary={BOUNDARY}",
    ],
)
def test_other_media_types_are_415(alice, content_type):
    response = token_client(alice).post(
        STORE_URL, data=multipart(*study_files()), content_type=content_type
    )

    assert response.status_code == 415
    assert "multipart/related" in response.json()["detail"]
    assert not Instance.objects.exists()


def test_an_unquoted_type_parameter_is_accepted(alice):
    content_type = f"multipart/related; type=application/dicom; boundary={BOUNDARY}"

    response = token_client(alice).post(
        STORE_URL, data=multipart(*study_files()), content_type=content_type
    )

    assert response.status_code == 200


def test_a_part_that_is_not_dicom_is_415_and_nothing_is_stored(alice):
    body = multipart(study_files()[0]).replace(f"--{BOUNDARY}--\r\n".encode(), b"")
    body += f"--{BOUNDARY}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{BOUNDARY}--".encode()

    response = token_client(alice).post(STORE_URL, data=body, content_type=CONTENT_TYPE)

    assert response.status_code == 415
    assert "Part 2 is application/json" in response.json()["detail"]
    assert not Instance.objects.exists()


@pytest.fixture(params=["held in memory", "streamed five bytes a read"])
def body_reading(request, monkeypatch):
    """Both ways a body is read: in one go and held in memory (a Content-Length of up to
    8 MB), or as a stream into a spooled file (larger or chunked), here five bytes a read so
    that every boundary falls across two reads."""
    if request.param == "streamed five bytes a read":
        monkeypatch.setattr("dicomweb.stow._MEMORY_BODY", -1)
        monkeypatch.setattr("dicomweb.stow._CHUNK", 5)
    return request.param


class InterleavingSpool:
    """A spooled body on which a reader that has sought waits (briefly) for another to seek too
    before it reads: the interleaving that parts read from several threads at once could meet."""

    def __init__(self, data: bytes):
        self._file = io.BytesIO(data)
        self._both_sought = threading.Barrier(2, timeout=0.5)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position = self._file.seek(offset, whence)
        with contextlib.suppress(threading.BrokenBarrierError):  # the other could not seek
            self._both_sought.wait()
        return position

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)


def test_parts_of_one_spooled_body_read_by_two_threads_at_once_are_each_their_own_bytes():
    # Ingestion stores a request's parts from several threads; the parts share the spool.
    first, second = b"1" * 1000, b"2" * 1000
    spool = InterleavingSpool(first + second)
    parts = [stow._Part(1, 0, 1000), stow._Part(2, 1000, 2000)]
    lock = threading.Lock()
    read_back = {}

    def read(part):
        read_back[part.number] = stow._part_file(spool, part, lock).read(1000)

    readers = [threading.Thread(target=read, args=(part,)) for part in parts]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()

    assert read_back == {1: first, 2: second}


def test_delimiters_are_found_wherever_the_reads_split_the_body():
    delimiter = b"\r\n--b0undary"
    body = (
        b"--b0undary\r\nA\r\n--b0und\r\n--b0undary\r\n--b0undary\r\r\n--b0undary"
        b"\r\n--\r\n--b0undar\r\n--b0undary--\r\n\r\n--b0undary"
    )
    framed, expected, position = b"\r\n" + body, [], 0
    while (index := framed.find(delimiter, position)) != -1:
        expected.append(index - 2)
        position = index + len(delimiter)
    assert len(expected) == 6

    for size in (1, 2, 3, 5, 11, len(delimiter) - 1, len(delimiter), len(delimiter) + 1, 64):
        found, carry = [], b"\r\n"
        for start in range(0, len(body), size):
            more, carry = stow._delimiters(carry, body[start : start + size], delimiter, base=start)
            found += more
        assert found == expected, size


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "no part"),
        (b"no boundary in here", "no part"),
        (f"--{BOUNDARY}\r\n\r\nDICM\r\n".encode(), "cut short"),
        (f"--{BOUNDARY}--\r\n".encode(), "no instance"),
        (f"--{BOUNDARY}junk\r\n\r\nDICM\r\n--{BOUNDARY}--".encode(), "CRLF"),
        (
            f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n--{BOUNDARY}--".encode(),
            "empty line",
        ),
    ],
)
def test_a_malformed_body_is_400_and_nothing_is_stored(alice, body, reason, body_reading):
    # The test client leaves out the Content-Type of an empty body unless told.
    response = token_client(alice).post(
        STORE_URL, data=body, content_type=CONTENT_TYPE, CONTENT_TYPE=CONTENT_TYPE
    )

    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert not Instance.objects.exists()


def test_a_cut_body_stores_nothing_of_what_came_before(alice, body_reading):
    body = multipart(*study_files())[:-20]

    response = token_client(alice).post(STORE_URL, data=body, content_type=CONTENT_TYPE)

    assert response.status_code == 400
    assert not Instance.objects.exists()


def test_the_parts_are_stored_as_sent_whichever_way_the_body_is_read(alice, body_reading):
    files = study_files()

    response = store(token_client(alice), *files)

    assert response.status_code == 200
    assert sorted(referenced(response)) == sorted(uid_of(data) for data in files)
    for data in files:
        instance = Instance.objects.get(sop_instance_uid=uid_of(data))
        with storages["dicom"].open(instance.file, "rb") as stored:
            assert stored.read() == data


def test_a_large_body_is_stored_with_bounded_memory(alice):
    big = ct_datasets()[0]
    big.Rows = big.Columns = 4096
    big.PixelData = bytes(4096 * 4096 * 2)
    data = to_bytes(big)
    body = io.BytesIO(multipart(data))
    size = len(body.getbuffer())
    request = RequestFactory().generic(
        "POST",
        STORE_URL,
        secure=True,
        CONTENT_TYPE=CONTENT_TYPE,
        CONTENT_LENGTH=str(size),
        HTTP_AUTHORIZATION=f"Bearer {api_token(alice)}",
        **{"wsgi.input": body},
    )

    tracemalloc.start()
    try:
        response = stow.store(request)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert response.status_code == 200, response.content
    assert size > 32 * 1024 * 1024
    assert peak < 24 * 1024 * 1024, f"{peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB body"
    assert Instance.objects.get(sop_instance_uid=big.SOPInstanceUID).size == len(data)


def test_the_answer_is_dicom_json_and_other_accepts_are_406(alice):
    client = token_client(alice)
    files = study_files()

    for accept in ("application/dicom+json", "application/json", "*/*", "application/*"):
        assert store(client, files[0], HTTP_ACCEPT=accept).status_code == 200, accept
    refused = store(client, files[1], HTTP_ACCEPT="application/dicom+xml")

    assert refused.status_code == 406
    assert not Instance.objects.filter(sop_instance_uid=uid_of(files[1])).exists()


def test_a_chunked_body_is_read_where_the_server_decoded_it(alice):
    body = multipart(*study_files())
    chunked = {
        "CONTENT_TYPE": CONTENT_TYPE,
        "CONTENT_LENGTH": "",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
    }

    decoded = token_client(alice).post(
        STORE_URL, data=b"", content_type=CONTENT_TYPE, **chunked, **{"wsgi.input_terminated": True}
    )
    chunked["wsgi.input"] = io.BytesIO(body)
    undecoded = token_client(alice).post(STORE_URL, data=b"", content_type=CONTENT_TYPE, **chunked)

    assert decoded.status_code == 200
    assert len(referenced(decoded)) == 4
    assert undecoded.status_code == 400
    assert "Content-Length" in undecoded.json()["detail"]


# --- Who may store, and where -----------------------------------------------------------------


def test_no_upload_permission_is_403(viewer_only):
    response = store(token_client(viewer_only), *study_files())

    assert response.status_code == 403
    assert "may not upload" in response.json()["detail"]
    assert not Instance.objects.exists()


def test_a_guest_with_a_links_grant_may_not_store(ct_study):
    guest = open_guest_link(Study.objects.get(study_uid=CT_STUDY_UID))
    stored_before = Instance.objects.count()

    response = store(guest, *other_study())

    assert response.status_code == 403
    assert "may not upload" in response.json()["detail"]
    assert Instance.objects.count() == stored_before


def test_anonymous_store_is_401(db):
    response = store(HttpsClient(), *study_files())

    assert response.status_code == 401
    assert "Bearer" in response["WWW-Authenticate"]
    assert not Instance.objects.exists()


def test_the_location_is_chosen_by_a_query_parameter(org, alice, location, carol):
    second = Location.objects.create(organization=org, name="Emergency")
    alice.memberships.get().locations.add(second)
    client = token_client(alice)
    files = study_files()

    unchosen = store(client, files[0])
    chosen = store(client, files[0], url=f"{STORE_URL}?location={second.pk}")
    foreign = Location.objects.get(organization=carol.memberships.get().organization)
    elsewhere = store(client, files[1], url=f"{STORE_URL}?location={foreign.pk}")

    assert unchosen.status_code == 400
    assert "Choose the location" in unchosen.json()["detail"]
    assert chosen.status_code == 200
    assert Study.objects.get(study_uid=CT_STUDY_UID).received_location == second
    assert elsewhere.status_code == 403
    assert Instance.objects.count() == 1


def test_a_session_store_needs_the_csrf_token_and_a_token_store_does_not(alice):
    browser = HttpsClient(enforce_csrf_checks=True, HTTP_ORIGIN="https://testserver")
    browser.force_login(alice)
    files = study_files()

    without = store(browser, files[0])
    browser.cookies[django_settings.CSRF_COOKIE_NAME] = "a" * 32
    with_token = store(browser, files[0], HTTP_X_CSRFTOKEN="a" * 32)
    api = HttpsClient(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {api_token(alice)}")

    assert without.status_code == 403
    assert "CSRF" in without.json()["detail"]
    assert with_token.status_code == 200
    assert store(api, files[1]).status_code == 200


# --- A real DICOMweb client -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_stores_a_study(settings, alice, location):
    # Read back from Part-10 bytes, as a client reads the files it sends.
    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in study_files()]
    stranger = pydicom.dcmread(io.BytesIO(other_study()[0]))
    with live_portal(settings) as url:
        client = dicomweb_client(url, api_token(alice))
        stored = client.store_instances(datasets)
        into_study = client.store_instances(
            [datasets[0], stranger], study_instance_uid=CT_STUDY_UID
        )

    assert stored.RetrieveURL == f"{url}/dicomweb/studies/{CT_STUDY_UID}"
    assert {item.ReferencedSOPInstanceUID for item in stored.ReferencedSOPSequence} == {
        ds.SOPInstanceUID for ds in datasets
    }
    assert [item.ReferencedSOPInstanceUID for item in into_study.ReferencedSOPSequence] == [
        datasets[0].SOPInstanceUID
    ]
    [failed] = into_study.FailedSOPSequence
    assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (
        stranger.SOPInstanceUID,
        DOES_NOT_MATCH,
    )
    assert Instance.objects.filter(series__study__study_uid=CT_STUDY_UID).count() == 4
    event = AuditEvent.objects.filter(action=Action.INSTANCES_RECEIVED).first()
    assert event.actor == alice and event.details["protocol"] == "STOW-RS"
