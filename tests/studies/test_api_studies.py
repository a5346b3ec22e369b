"""REST API v1: studies and worklists (API.md, "Studies")."""

from __future__ import annotations

from datetime import date
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from accounts.authentication import TOKEN_PURPOSE
from accounts.models import ApiToken
from audit.models import Action, AuditEvent
from portal.digests import secret_digest
from studies.dicom_header import normalize_name
from studies.models import AccessLevel, Entry, Folder, Patient, Report
from studies.services.worklists import location_worklist, personal_worklist
from tests.accounts.helpers import HttpsAPIClient
from tests.factories import make_study, share_entry

pytestmark = pytest.mark.django_db

LIST = "/api/v1/studies/"


@pytest.fixture
def api():
    return HttpsAPIClient()


def detail(uid: str) -> str:
    return f"/api/v1/studies/{uid}/"


@pytest.fixture
def muller(org, location):
    study = make_study(
        org,
        location=location,
        family_name="Müller",
        given_name="Hans",
        patient_id="PID-4711",
        accession="ACC-1",
        modality="CT SR",
        description="CT Thorax",
        study_date=date(2024, 3, 1),
    )
    Patient.objects.filter(pk=study.patient_id).update(name_search=normalize_name("Hans Müller"))
    return study


def test_urls_are_the_contract():
    assert reverse("api-studies") == LIST
    assert reverse("api-study", args=["1.2.3"]) == detail("1.2.3")
    assert reverse("api-worklists") == "/api/v1/worklists/"


def test_list_shape(api, alice, location, muller):
    api.force_authenticate(alice)
    response = api.get(LIST)
    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    [row] = body["results"]
    assert row == {
        "study_uid": muller.study_uid,
        "patient_name": "Hans Müller",
        "patient_id": "PID-4711",
        "birth_date": "1970-01-31",
        "sex": "F",
        "anonymized": False,
        "withheld": False,
        "study_date": "2024-03-01",
        "description": "CT Thorax",
        "accession": "ACC-1",
        "modalities": ["CT", "SR"],
        "series_count": 1,
        "instance_count": 1,
        "worklists": [location_worklist(location).pk],
    }
    assert body["previous"] is None


def test_filters(api, alice, org, location, muller):
    other = make_study(
        org,
        location=location,
        patient_id="PID-2",
        modality="MR",
        study_date=date(2022, 1, 1),
        accession="ACC-2",
    )
    api.force_authenticate(alice)

    def found(**params):
        response = api.get(LIST, params)
        assert response.status_code == 200, response.json()
        return {row["study_uid"] for row in response.json()["results"]}

    assert found(q="MULLER") == {muller.study_uid}
    assert found(patient_id="PID-47") == {muller.study_uid}
    assert found(accession="ACC-2") == {other.study_uid}
    assert found(modality="MR") == {other.study_uid}
    assert found(date_from="2023-01-01") == {muller.study_uid}
    assert found(date_to="2022-12-31") == {other.study_uid}
    assert found(worklist=location_worklist(location).pk) == {muller.study_uid, other.study_uid}


def test_folder_filter(api, alice, location, muller):
    worklist = location_worklist(location)
    folder = Folder.objects.create(worklist=worklist, name="Teaching")
    Entry.objects.filter(worklist=worklist, study=muller).update(folder=folder)
    api.force_authenticate(alice)
    rows = api.get(LIST, {"folder": folder.pk}).json()["results"]
    assert [row["study_uid"] for row in rows] == [muller.study_uid]


def test_pagination_walks_every_study_once(api, alice, org, location, settings):
    settings.DIRECTORY_PAGE_SIZE = 4
    studies = [make_study(org, location=location, patient_id=f"PG{i}") for i in range(10)]
    api.force_authenticate(alice)
    seen, url = [], LIST + "?sort=-date"
    while url:
        body = api.get(url).json()
        seen += [row["study_uid"] for row in body["results"]]
        url = body["next"]
        if url:
            assert url.startswith("https://testserver/api/v1/studies/?")
            assert parse_qs(urlsplit(url).query)["sort"] == ["-date"]
    assert sorted(seen) == sorted(s.study_uid for s in studies)
    assert len(seen) == len(set(seen))


def test_default_page_size_is_fifty(api, alice, org, location):
    for i in range(52):
        make_study(org, location=location, patient_id=f"PZ{i}")
    api.force_authenticate(alice)
    body = api.get(LIST).json()
    assert len(body["results"]) == 50
    assert body["next"]


def test_bad_parameters_answer_field_errors(api, alice, muller):
    api.force_authenticate(alice)
    response = api.get(LIST, {"cursor": "garbage"})
    assert response.status_code == 400
    assert "cursor" in response.json()
    response = api.get(LIST, {"date_from": "yesterday"})
    assert response.status_code == 400
    assert "date_from" in response.json()
    response = api.get(LIST, {"date_from": "2024-02-01", "date_to": "2024-01-01"})
    assert response.status_code == 400
    assert "date_to" in response.json()


def test_anonymized_rows_follow_the_callers_access(api, carol, muller):
    share_entry(
        carol,
        muller,
        level=AccessLevel.REPORT_READ,
        anonymized=True,
    )
    api.force_authenticate(carol)
    [row] = api.get(LIST).json()["results"]
    assert row["anonymized"] is True
    assert row["patient_name"].endswith("Anonymous")
    assert row["patient_id"].startswith("ANON-")
    assert row["birth_date"] is None
    assert row["accession"] == ""
    assert "Müller" not in str(row)

    body = api.get(detail(muller.study_uid)).json()
    assert body["patient_name"] == row["patient_name"]
    assert body["accession"] == "" and body["birth_date"] is None
    assert body["access"]["anonymized"] is True
    assert body["report"] is None


def test_detail_shape_and_audit(api, alice, muller):
    Report.objects.create(study=muller, text="Normal.")
    api.force_authenticate(alice)
    response = api.get(detail(muller.study_uid))
    assert response.status_code == 200
    body = response.json()
    assert body["study_uid"] == muller.study_uid
    assert body["patient_name"] == "Hans Müller"
    [series] = body["series"]
    assert series["series_uid"] == f"{muller.study_uid}.1"
    assert series["modality"] == "CT SR"  # the factory gives the series the study's list
    assert series["instances"] == [
        {
            "sop_instance_uid": f"{muller.study_uid}.1.1",
            "number": 1,
            "frames": 0,  # the factory's instance has no pixel data: nothing to render
            "has_pixels": False,
        }
    ]
    assert body["access"] == {
        "level": "report_write",
        "anonymized": False,
        "can_share": True,
        "until": None,
    }
    assert body["report"]["text"] == "Normal."
    event = AuditEvent.objects.get(action=Action.STUDY_VIEWED, study_uid=muller.study_uid)
    assert event.actor == alice


def test_detail_of_an_unseen_study_is_a_plain_404(api, carol, muller):
    api.force_authenticate(carol)
    hidden = api.get(detail(muller.study_uid))
    missing = api.get(detail("1.2.3.999"))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    assert set(hidden.json()) == {"detail"}
    assert not AuditEvent.objects.filter(action=Action.STUDY_VIEWED).exists()


def test_share_level_shows_in_access(api, carol, muller):
    share_entry(
        carol,
        muller,
        level=AccessLevel.IMAGES,
        can_share=False,
    )
    Report.objects.create(study=muller, text="Secret findings.")
    api.force_authenticate(carol)
    body = api.get(detail(muller.study_uid)).json()
    assert body["access"]["level"] == "images"
    assert body["access"]["can_share"] is False
    assert body["report"] is None


def test_token_authentication(api, alice, muller):
    secret = ApiToken.new_secret()
    ApiToken.objects.create(
        user=alice, digest=secret_digest(secret, purpose=TOKEN_PURPOSE), prefix=secret[:8]
    )
    api.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert api.get(LIST).json()["results"][0]["study_uid"] == muller.study_uid


def test_anonymous_callers_are_refused(api, muller):
    for url in (LIST, detail(muller.study_uid), "/api/v1/worklists/"):
        response = api.get(url)
        assert response.status_code in (401, 403)
        assert "detail" in response.json()


def test_worklists(api, alice, location, muller):
    worklist = location_worklist(location)
    parent = Folder.objects.create(worklist=worklist, name="Teaching")
    child = Folder.objects.create(worklist=worklist, name="Chest", parent=parent)
    mine = personal_worklist(alice)
    api.force_authenticate(alice)
    body = api.get("/api/v1/worklists/").json()
    by_id = {w["id"]: w for w in body}
    assert set(by_id) == {worklist.pk, mine.pk}
    assert by_id[worklist.pk]["kind"] == "location"
    assert by_id[worklist.pk]["name"] == "Radiology"
    assert by_id[worklist.pk]["share_code"] == worklist.share_code
    assert by_id[worklist.pk]["folders"] == [
        {"id": child.pk, "name": "Chest", "parent": parent.pk},
        {"id": parent.pk, "name": "Teaching", "parent": None},
    ]
    assert by_id[mine.pk]["kind"] == "personal"


def test_worklists_of_others_are_not_listed(api, carol, location, group):
    from studies.services.worklists import group_worklist

    location_worklist(location)
    group_worklist(group)
    api.force_authenticate(carol)
    names = [w["name"] for w in api.get("/api/v1/worklists/").json()]
    assert "Radiology" not in names and "Neuroradiology" not in names


def test_schema_documents_the_endpoints(api, dana):
    api.force_authenticate(dana)
    response = api.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    text = response.content.decode()
    for path in ("/api/v1/studies/", "/api/v1/studies/{study_uid}/", "/api/v1/worklists/"):
        assert path in text
    assert "instance_count" in text and "share_code" in text


def test_absurd_worklist_id_is_a_field_error(api, alice, muller):
    api.force_authenticate(alice)
    response = api.get(LIST, {"worklist": "9" * 30})
    assert response.status_code == 400
    assert "worklist" in response.json()
