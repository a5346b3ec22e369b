"""The guest-link endpoints of the REST API (API.md, "Guest links"), called by alice's scripts
with a session or an API token."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from django.urls import reverse

from audit.models import Action, AuditEvent
from guestlinks.models import GuestLink, LinkState, TargetKind
from guestlinks.passwords import check_link_password
from notifications.models import Channel, Message
from studies.models import Folder
from studies.services.worklists import location_worklist
from tests.accounts.helpers import HttpsAPIClient

pytestmark = pytest.mark.django_db

CREATE = "/api/v1/guest-links/"


def api_for(user) -> HttpsAPIClient:
    client = HttpsAPIClient()
    client.force_authenticate(user)
    return client


def create(client, study, **body):
    return client.post(
        CREATE, {"target": {"study": study.study_uid}, "acknowledged": True, **body}, format="json"
    )


def links_url(study) -> str:
    return f"/api/v1/studies/{study.study_uid}/guest-links/"


# --- Creating ------------------------------------------------------------------------------------


def test_create_answers_the_contracts_shape(alice, study):
    response = create(
        api_for(alice),
        study,
        email="gp@example.org",
        max_uses=2,
        expires_in_hours=12,
        password="Tulip-4711",
        max_password_attempts=3,
        login_required=True,
        include_priors=True,
        message="Left lower lobe",
        language="fr",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {
        "id",
        "url",
        "mailto",
        "qr_svg",
        "expires_at",
        "uses_left",
        "state",
        "options",
    }
    link = GuestLink.objects.get()
    assert body["id"] == link.pk
    assert body["url"].startswith("http://127.0.0.1:8000/l/")
    assert body["state"] == "active"
    assert body["uses_left"] == 2
    assert body["target"] == {"kind": "study", "study": study.study_uid}
    assert body["options"] == {
        "email": "gp@example.org",
        "mobile": "",
        "max_uses": 2,
        "expires_at": body["expires_at"],
        "login_required": True,
        "password_required": True,
        "password_is_birth_date": False,
        "max_password_attempts": 3,
        "require_email_confirmation": False,
        "sms_code": False,
        "include_priors": True,
        "message": "Left lower lobe",
        "language": "fr",
    }
    assert body["qr_svg"].startswith("<svg ") and "style=" not in body["qr_svg"]
    mailto = urlsplit(body["mailto"])
    assert unquote(mailto.path) == "gp@example.org"
    assert body["url"] in parse_qs(mailto.query)["body"][0]
    # The password appears nowhere but as a hash.
    assert "Tulip-4711" not in response.content.decode()
    assert check_link_password("Tulip-4711", link.password_hash)
    message = Message.objects.get()
    assert message.channel == Channel.EMAIL and body["url"] in message.body_text
    assert message.language == "fr"


def test_create_with_an_api_token(alice, study):
    token_response = HttpsAPIClient().post(
        "/api/v1/auth/token/",
        {"username": "alice", "password": "correct-horse-battery"},
        format="json",
    )
    assert token_response.status_code == 200, token_response.content
    client = HttpsAPIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_response.json()['token']}")
    response = create(client, study)
    assert response.status_code == 201
    assert response.json()["qr_svg"] is None
    assert response.json()["mailto"].startswith("mailto:?subject=")


def test_missing_acknowledgement_is_a_400_naming_the_field(alice, study):
    response = api_for(alice).post(
        CREATE, {"target": {"study": study.study_uid}, "email": "gp@example.org"}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["acknowledged"]
    assert not GuestLink.objects.exists() and not Message.objects.exists()


@pytest.mark.parametrize(
    ("flag", "body", "field"),
    [
        ("allow_link_email", {"email": "gp@example.org"}, "email"),
        ("allow_link_sms", {"mobile": "+32470123456"}, "mobile"),
        ("allow_link_max_uses", {"max_uses": 2}, "max_uses"),
        ("allow_link_expiry", {"expires_in_hours": 3}, "expires_in_hours"),
        ("allow_link_login_required", {"login_required": True}, "login_required"),
        ("allow_link_password", {"password": "Tulip-4711"}, "password"),
        (
            "allow_link_birth_date_password",
            {"password_is_birth_date": True},
            "password_is_birth_date",
        ),
        (
            "allow_link_email_confirmation",
            {"email": "gp@example.org", "require_email_confirmation": True},
            "require_email_confirmation",
        ),
        ("allow_link_priors", {"include_priors": True}, "include_priors"),
    ],
)
def test_an_option_the_policy_disables_is_a_400(alice, study, org, flag, body, field):
    setattr(org, flag, False)
    org.save()
    response = create(api_for(alice), study, **body)
    assert response.status_code == 400
    assert field in response.json()
    assert "policy does not allow" in response.json()[field][0]
    assert not GuestLink.objects.exists()


def test_invalid_email_and_phone_are_400s(alice, study):
    response = create(api_for(alice), study, email="gp@@example", mobile="12")
    assert response.status_code == 400
    assert response.json() == {
        "email": ["“gp@@example” is not a valid email address."],
        "mobile": ["“12” is not a valid phone number."],
    }
    assert not GuestLink.objects.exists()


def test_bounds_and_types_are_400s(alice, study):
    client = api_for(alice)
    assert list(create(client, study, max_uses=0).json()) == ["max_uses"]
    assert list(create(client, study, expires_in_days=91).json()) == ["expires_in_days"]
    assert list(create(client, study, max_uses="many").json()) == ["max_uses"]
    assert list(create(client, study, language="xx").json()) == ["language"]
    response = client.post(CREATE, {"target": {}, "acknowledged": True}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["target"]
    response = client.post(
        CREATE,
        {"target": {"study": study.study_uid, "worklist": 1}, "acknowledged": True},
        format="json",
    )
    assert response.status_code == 400 and list(response.json()) == ["target"]
    assert not GuestLink.objects.exists()


def test_date_of_birth_password_through_the_api(alice, study):
    response = create(api_for(alice), study, password_is_birth_date=True)
    assert response.status_code == 201
    assert response.json()["options"]["password_is_birth_date"] is True
    assert check_link_password("19700131", GuestLink.objects.get().password_hash)


def test_worklist_and_folder_targets(alice, study, location):
    worklist = location_worklist(location)
    folder = Folder.objects.create(worklist=worklist, name="Tumour board")
    client = api_for(alice)
    response = client.post(
        CREATE, {"target": {"worklist": worklist.pk}, "acknowledged": True}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["target"] == {"kind": "worklist", "worklist": worklist.pk}
    response = client.post(
        CREATE, {"target": {"folder": folder.pk}, "acknowledged": True}, format="json"
    )
    assert response.status_code == 201
    assert GuestLink.objects.filter(target_kind=TargetKind.FOLDER, folder=folder).exists()


def test_targets_the_caller_cannot_see_answer_404(bob, carol, study):
    for user in (bob, carol):
        assert create(api_for(user), study).status_code == 404
    response = api_for(bob).post(
        CREATE, {"target": {"study": "1.2.3.4"}, "acknowledged": True}, format="json"
    )
    assert response.status_code == 404
    assert not GuestLink.objects.exists()


def test_a_role_without_create_links_gets_403(viewer_only, study):
    assert create(api_for(viewer_only), study).status_code == 403


def test_anonymous_callers_are_refused(study):
    assert create(HttpsAPIClient(), study).status_code in (401, 403)


# --- Listing -------------------------------------------------------------------------------------


def test_the_studys_links(alice, viewer_only, study):
    client = api_for(alice)
    first = create(client, study, max_uses=2, email="gp@example.org").json()
    second = create(client, study, password="Tulip-4711").json()
    client.delete(f"/api/v1/guest-links/{first['id']}/")

    response = api_for(viewer_only).get(links_url(study))
    assert response.status_code == 200
    rows = response.json()
    assert [row["id"] for row in rows] == [second["id"], first["id"]]
    assert rows[0]["url"] == second["url"] and rows[0]["state"] == "active"
    assert rows[1]["url"] is None and rows[1]["state"] == "deleted"
    assert rows[1]["uses_left"] == 2 and rows[1]["options"]["email"] == "gp@example.org"
    assert rows[0]["options"]["password_required"] is True
    assert rows[0]["created_by"] == "Alice Tester"
    assert [row["can_delete"] for row in rows] == [False, False]
    assert "Tulip-4711" not in response.content.decode()
    assert "password_hash" not in json.dumps(rows)


def test_listing_needs_access_and_the_view_permission(alice, bob, no_links, study):
    assert api_for(bob).get(links_url(study)).status_code == 404
    assert api_for(alice).get("/api/v1/studies/1.2.3.4/guest-links/").status_code == 404
    assert api_for(no_links).get(links_url(study)).status_code == 403


def test_the_study_route_still_answers_the_study(alice, study):
    # studies/<uid>/ and studies/<uid>/guest-links/ live side by side.
    response = api_for(alice).get(f"/api/v1/studies/{study.study_uid}/")
    assert response.status_code == 200 and response.json()["study_uid"] == study.study_uid
    assert reverse("api-study-guest-links", args=[study.study_uid]) == links_url(study)


# --- Deleting ------------------------------------------------------------------------------------


def test_delete_stops_the_link_at_once(alice, study, guest):
    created = create(api_for(alice), study).json()
    token_path = urlsplit(created["url"]).path
    assert guest.get(token_path).status_code == 200

    response = api_for(alice).delete(f"/api/v1/guest-links/{created['id']}/")
    assert response.status_code == 204
    assert GuestLink.objects.get().state == LinkState.DELETED
    assert AuditEvent.objects.filter(action=Action.LINK_DELETED).count() == 1
    assert guest.get(token_path).status_code == 404
    # Deleting again is harmless.
    assert api_for(alice).delete(f"/api/v1/guest-links/{created['id']}/").status_code == 204


def test_delete_permissions(alice, bob, viewer_only, study):
    created = create(api_for(alice), study).json()
    url = f"/api/v1/guest-links/{created['id']}/"
    assert api_for(bob).delete(url).status_code == 404
    assert api_for(viewer_only).delete(url).status_code == 403
    assert api_for(alice).delete("/api/v1/guest-links/987654/").status_code == 404
    assert GuestLink.objects.get().state == LinkState.ACTIVE


def test_the_schema_documents_the_guest_link_endpoints(alice):
    client = api_for(alice)
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    assert "post" in paths["/api/v1/guest-links/"]
    assert "delete" in paths["/api/v1/guest-links/{id}/"]
    assert "get" in paths["/api/v1/studies/{study_uid}/guest-links/"]
