"""Uploading in the browser and through the REST API: the same service, the same answers."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts.authentication import TOKEN_PURPOSE
from accounts.models import ApiToken, Membership, Role
from accounts.permissions import Perm
from audit.models import Action, AuditEvent
from portal.digests import secret_digest
from studies.models import Entry, Instance, Study
from studies.synthetic import make_series, to_bytes
from tests.accounts.helpers import HttpsAPIClient as APIClient
from tests.accounts.helpers import HttpsClient as Client
from tests.accounts.helpers import plain_static_storage

STUDY_UID = "1.2.826.0.1.3680043.8.498.9001"
JSON = {"HTTP_ACCEPT": "application/json"}


def slices(count: int = 3, **overrides):
    args = {
        "patient_name": "Janssens^An",
        "patient_id": "PAT-9001",
        "birth_date": "19800202",
        "sex": "F",
        "study_uid": STUDY_UID,
        "study_date": "20240410",
        "study_description": "MR Knee",
        "accession": "ACC9001",
        "modality": "MR",
        "series_number": 1,
        "series_description": "PD sag",
        "slices": count,
        "rows": 32,
        "columns": 32,
        "body_part": "KNEE",
    }
    args.update(overrides)
    return make_series(**args)


def as_files(datasets, prefix="IM"):
    return [
        SimpleUploadedFile(f"{prefix}{i + 1}", to_bytes(ds), "application/dicom")
        for i, ds in enumerate(datasets)
    ]


def text_file(name="notes.txt"):
    return SimpleUploadedFile(name, b"Referral letter, see attached CD.", "text/plain")


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    plain_static_storage(settings)


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def viewer_only(org, location):
    """A secretary who may search studies but not upload them."""
    from tests.conftest import make_user

    user = make_user("victor")
    role = Role.objects.create(name="Viewer", permissions=[Perm.VIEW_STUDIES.value])
    Membership.objects.create(user=user, organization=org, role=role).locations.add(location)
    return user


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


# --- The page ---------------------------------------------------------------------------------


def test_upload_page_offers_the_users_locations_files_and_folders(alice_client, location):
    response = alice_client.get(reverse("studies:upload"))

    assert response.status_code == 200
    html = response.content.decode()
    assert f'<option value="{location.pk}" selected>Radiology (St. Elsewhere Hospital)' in html
    assert re.search(r'<input type="file"[^>]*name="files"[^>]*multiple', html)
    assert re.search(r"<input [^>]*webkitdirectory", html)
    assert "<progress" in html
    assert 'data-batch-size="10"' in html
    assert '<script type="module" src="/static/js/upload.js"></script>' in html
    # The strict CSP holds: no inline script or style.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "style=" not in html and "<style" not in html


def test_user_without_upload_permission_gets_the_generic_403(viewer_only):
    client = Client()
    client.force_login(viewer_only)

    page = client.get(reverse("studies:upload"))
    post = client.post(reverse("studies:upload_files"), {"files": as_files(slices(1))}, **JSON)

    assert page.status_code == 403
    assert "Not allowed" in page.content.decode()
    assert post.status_code == 403
    assert Instance.objects.count() == 0


def test_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get(reverse("studies:upload"))

    assert response.status_code == 302
    assert reverse("accounts:login") in response["Location"]


def test_user_without_a_location_is_told_so(bob):
    client = Client()
    client.force_login(bob)

    page = client.get(reverse("studies:upload"))
    post = client.post(reverse("studies:upload_files"), {"files": as_files(slices(1))}, **JSON)

    assert "works from no location" in page.content.decode()
    assert post.status_code == 400
    assert "works from no location" in post.json()["location"][0]


# --- Posting batches (upload.js) --------------------------------------------------------------


def test_batch_with_a_bad_file_stores_the_good_ones(alice_client, alice, location):
    datasets = slices(3)
    files = [*as_files(datasets), text_file()]

    response = alice_client.post(
        reverse("studies:upload_files"),
        {
            "location": location.pk,
            "files": files,
            "paths": ["CD/IM1", "CD/IM2", "CD/IM3", "CD/notes.txt"],
        },
        **JSON,
    )

    assert response.status_code == 201
    body = response.json()
    assert body["stored"] == [ds.SOPInstanceUID for ds in datasets]
    assert body["duplicates"] == []
    assert body["rejected"] == [
        {
            "name": "CD/notes.txt",
            "reason": body["rejected"][0]["reason"],
            "code": "not_dicom",
        }
    ]
    assert "not a DICOM file" in body["rejected"][0]["reason"]
    assert [(f["name"], f["status"]) for f in body["files"]] == [
        ("CD/IM1", "stored"),
        ("CD/IM2", "stored"),
        ("CD/IM3", "stored"),
        ("CD/notes.txt", "rejected"),
    ]
    study = Study.objects.get(study_uid=STUDY_UID)
    assert study.instance_count == 3
    assert Entry.objects.filter(study=study, worklist__location=location).exists()
    event = AuditEvent.objects.get(action=Action.STUDY_UPLOADED)
    assert event.actor == alice and event.ip == "127.0.0.1"
    assert AuditEvent.objects.get(action=Action.UPLOAD_REJECTED).details["file"] == "CD/notes.txt"


def test_batch_of_duplicates_answers_200_and_all_rejected_answers_400(alice_client, location):
    files = as_files(slices(2))
    alice_client.post(reverse("studies:upload_files"), {"files": files}, **JSON)
    for f in files:
        f.seek(0)

    again = alice_client.post(reverse("studies:upload_files"), {"files": files}, **JSON)
    junk = alice_client.post(
        reverse("studies:upload_files"),
        {"files": [text_file("a.txt"), text_file("b.txt")]},
        **JSON,
    )

    assert again.status_code == 200
    assert again.json()["stored"] == [] and len(again.json()["duplicates"]) == 2
    assert junk.status_code == 400
    assert [r["name"] for r in junk.json()["rejected"]] == ["a.txt", "b.txt"]


def test_outsider_cannot_upload_into_the_organizations_location(carol, location):
    client = Client()
    client.force_login(carol)

    response = client.post(
        reverse("studies:upload_files"),
        {"location": location.pk, "files": as_files(slices(1))},
        **JSON,
    )

    assert response.status_code == 403
    assert Instance.objects.count() == 0


def test_upload_is_csrf_protected(alice, location):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(
        reverse("studies:upload_files"),
        {"location": location.pk, "files": as_files(slices(1))},
        **JSON,
    )

    assert response.status_code == 403
    assert Instance.objects.count() == 0


def test_form_without_javascript_shows_the_results_page(alice_client, location):
    response = alice_client.post(
        reverse("studies:upload_files"),
        {"location": location.pk, "files": [*as_files(slices(2)), text_file()]},
    )

    assert response.status_code == 201
    html = response.content.decode()
    assert "Finished: 2 stored, 0 already stored, 1 not stored." in html
    assert '<td class="file-name">notes.txt</td>' in html
    assert "Janssens" not in html  # results name files, never patients


def test_session_ended_answers_401_json(client, location):
    response = client.post(reverse("studies:upload_files"), {"files": as_files(slices(1))}, **JSON)

    assert response.status_code == 401
    assert "Log in again" in response.json()["detail"]


# --- REST API ---------------------------------------------------------------------------------


def token_client(user) -> APIClient:
    secret = ApiToken.new_secret()
    ApiToken.objects.create(
        user=user, digest=secret_digest(secret, purpose=TOKEN_PURPOSE), prefix=secret[:8]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def test_api_upload_one_or_many_files(alice, location):
    api = token_client(alice)
    datasets = slices(3)
    one, *rest = as_files(datasets)

    first = api.post("/api/v1/studies/upload/", {"files": one}, format="multipart")
    more = api.post(
        "/api/v1/studies/upload/", {"files": rest, "location": location.pk}, format="multipart"
    )

    assert first.status_code == 201
    assert first.json()["stored"] == [datasets[0].SOPInstanceUID]
    assert more.status_code == 201
    assert more.json()["stored"] == [ds.SOPInstanceUID for ds in datasets[1:]]
    assert set(more.json()) >= {"stored", "duplicates", "rejected"}
    assert Study.objects.get().instance_count == 3
    assert AuditEvent.objects.filter(action=Action.STUDY_UPLOADED, actor=alice).count() == 2


def test_api_answers_200_for_duplicates_and_400_when_all_rejected(alice, location):
    api = token_client(alice)
    data = as_files(slices(1))
    api.post("/api/v1/studies/upload/", {"files": data}, format="multipart")
    data[0].seek(0)

    duplicate = api.post("/api/v1/studies/upload/", {"files": data}, format="multipart")
    rejected = api.post("/api/v1/studies/upload/", {"files": [text_file()]}, format="multipart")
    empty = api.post("/api/v1/studies/upload/", {}, format="multipart")

    assert duplicate.status_code == 200
    assert duplicate.json()["duplicates"] == [Instance.objects.get().sop_instance_uid]
    assert rejected.status_code == 400
    assert rejected.json()["stored"] == []
    assert rejected.json()["rejected"][0]["name"] == "notes.txt"
    assert empty.status_code == 400
    assert "files" in empty.json()


def test_api_outsider_gets_403_for_the_organizations_location(carol, location):
    api = token_client(carol)

    response = api.post(
        "/api/v1/studies/upload/",
        {"files": as_files(slices(1)), "location": location.pk},
        format="multipart",
    )

    assert response.status_code == 403
    assert Instance.objects.count() == 0


def test_api_user_without_upload_permission_gets_403(viewer_only):
    response = token_client(viewer_only).post(
        "/api/v1/studies/upload/", {"files": as_files(slices(1))}, format="multipart"
    )

    assert response.status_code == 403
    assert "may not upload" in response.json()["detail"]


def test_api_rejects_an_unknown_location(alice):
    response = token_client(alice).post(
        "/api/v1/studies/upload/",
        {"files": as_files(slices(1)), "location": 987654},
        format="multipart",
    )

    assert response.status_code == 400
    assert "location" in response.json()


def test_api_requires_authentication():
    response = APIClient().post("/api/v1/studies/upload/", {}, format="multipart")

    assert response.status_code in (401, 403)


def test_upload_link_is_shown_only_to_users_who_may_upload(alice, viewer_only):
    upload_url = reverse("studies:upload")

    for user, shown in ((alice, True), (viewer_only, False)):
        client = Client()
        client.force_login(user)
        page = client.get(reverse("studies:directory")).content.decode()
        assert (f'href="{upload_url}"' in page) is shown, user.username


# --- How an upload's bytes travel -------------------------------------------------------------


class _Counted:
    """Counts the instances made of a class, as the class."""

    def __init__(self, cls):
        self.cls, self.made = cls, 0

    def __call__(self, *args, **kwargs):
        self.made += 1
        return self.cls(*args, **kwargs)


@pytest.fixture
def copies(monkeypatch):
    """Where an upload's files were copied: Django's temporary upload files, and ingestion's
    spooled copies."""
    from django.core.files import uploadhandler

    from studies.services import ingestion

    counted = {
        "temporary upload files": _Counted(uploadhandler.TemporaryUploadedFile),
        "spooled copies": _Counted(ingestion.tempfile.SpooledTemporaryFile),
    }
    monkeypatch.setattr(uploadhandler, "TemporaryUploadedFile", counted["temporary upload files"])
    monkeypatch.setattr(ingestion.tempfile, "SpooledTemporaryFile", counted["spooled copies"])
    return counted


def stored_bytes(sop_uids) -> list[bytes]:
    from django.core.files.storage import storages

    dicom = storages["dicom"]
    by_uid = {i.sop_instance_uid: i for i in Instance.objects.filter(sop_instance_uid__in=sop_uids)}
    stored = []
    for uid in sop_uids:
        with dicom.open(by_uid[uid].file) as handle:
            stored.append(handle.read())
    return stored


def test_the_browsers_batch_of_ten_ct_slices_is_read_into_memory_once(alice, location, copies):
    # Ten 512x512 CT slices, 5.2 MB: the batch upload.js sends. Django's parser keeps them in
    # memory, and ingestion hashes and reads each where it is, without a copy on disk or in
    # memory.
    datasets = slices(10, modality="CT", rows=512, columns=512)
    files = as_files(datasets)

    response = token_client(alice).post(
        "/api/v1/studies/upload/", {"files": files}, format="multipart"
    )

    assert response.status_code == 201
    sent = [to_bytes(ds) for ds in datasets]
    assert sum(map(len, sent)) > 5 * 1024 * 1024
    assert {name: count.made for name, count in copies.items()} == {
        "temporary upload files": 0,
        "spooled copies": 0,
    }
    assert stored_bytes([ds.SOPInstanceUID for ds in datasets]) == sent


def test_a_request_larger_than_memory_holds_is_read_in_djangos_temporary_files(
    alice, location, copies, settings
):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100 * 1024
    datasets = slices(4, rows=128, columns=128)  # 4 x 33 kB, over the 100 kB held in memory

    response = token_client(alice).post(
        "/api/v1/studies/upload/", {"files": as_files(datasets)}, format="multipart"
    )

    # Ingestion reads each file in Django's temporary file, without copying it again.
    assert response.status_code == 201
    assert {name: count.made for name, count in copies.items()} == {
        "temporary upload files": 4,
        "spooled copies": 0,
    }
    assert stored_bytes([ds.SOPInstanceUID for ds in datasets]) == [to_bytes(ds) for ds in datasets]


def test_a_forms_body_is_read_in_pieces_of_a_megabyte(alice, location, monkeypatch):
    # Under gunicorn each read of the body copies what the socket gave beyond it: read 64 kB
    # at a time (Django's default), a 5 MB upload copied that remainder some eighty times.
    from django.test.client import FakePayload

    reads: list[int] = []
    read = FakePayload.read

    def recorded(self, size=-1):
        data = read(self, size)
        reads.append(len(data))
        return data

    monkeypatch.setattr(FakePayload, "read", recorded)
    datasets = slices(6, modality="CT", rows=512, columns=512)  # 3.1 MB

    response = token_client(alice).post(
        "/api/v1/studies/upload/", {"files": as_files(datasets)}, format="multipart"
    )

    assert response.status_code == 201
    assert max(reads) == 1024 * 1024
    assert len(reads) <= 5
