"""What every DICOMweb route shares (dicomweb.http): who is asking, CORS, and errors in
DICOMweb's style rather than HTML pages."""

from __future__ import annotations

import pytest
from django.urls import get_resolver

from tests.accounts.helpers import HttpsClient, api_token
from tests.dicomweb.conftest import CT_STUDY_UID

VIEWER_ORIGIN = "https://viewer.example.org"


def dicomweb_paths() -> list[str]:
    """Every DICOMweb route with made-up UIDs, so a new route is covered without a list here."""
    values = {
        "study_uid": "1.2.3",
        "series_uid": "1.2.3.4",
        "instance_uid": "1.2.3.4.5",
        "frame": "1",
        "frame_list": "1",
        "tag_path": "7FE00010",
    }
    resolver = get_resolver()
    paths = []
    for pattern in resolver.url_patterns:
        if getattr(pattern, "namespace", None) != "dicomweb":
            continue
        for route in pattern.url_patterns:
            text = str(route.pattern)
            for name, value in values.items():
                for converter in ("str", "int", "path"):
                    text = text.replace(f"<{converter}:{name}>", value)
            paths.append(f"/dicomweb/{text}")
    return paths


@pytest.mark.parametrize("path", dicomweb_paths())
def test_every_route_asks_for_credentials_with_a_challenge(db, path):
    response = HttpsClient().get(path)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="DICOMweb", Token realm="DICOMweb"'
    assert response.json()["detail"]


def test_a_wrong_token_is_401_not_a_page(db):
    response = HttpsClient(HTTP_AUTHORIZATION="Bearer not-a-token").get("/dicomweb/studies")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "Bearer" in response["WWW-Authenticate"]


def test_token_and_bearer_schemes_both_authenticate(ct_study, alice):
    for scheme in ("Token", "Bearer"):
        client = HttpsClient(HTTP_AUTHORIZATION=f"{scheme} {api_token(alice)}")

        response = client.get("/dicomweb/studies", HTTP_ACCEPT="application/dicom+json")

        assert response.status_code == 200, scheme
        assert [study["0020000D"]["Value"][0] for study in response.json()] == [CT_STUDY_UID]


def test_one_path_two_methods_and_405_lists_both(ct_study, alice):
    client = HttpsClient(HTTP_AUTHORIZATION=f"Bearer {api_token(alice)}")

    refused = client.delete("/dicomweb/studies")

    assert refused.status_code == 405
    assert refused["Allow"] == "GET, POST, HEAD, OPTIONS"
    assert refused.json()["detail"] == "DELETE is not supported here."


def test_cors_is_off_unless_the_origin_is_allowed(ct_study, alice, settings):
    client = HttpsClient(HTTP_AUTHORIZATION=f"Bearer {api_token(alice)}", HTTP_ORIGIN=VIEWER_ORIGIN)

    assert "Access-Control-Allow-Origin" not in client.get("/dicomweb/studies")

    settings.DICOMWEB_CORS_ALLOWED_ORIGINS = [VIEWER_ORIGIN]
    allowed = client.get("/dicomweb/studies")
    assert allowed["Access-Control-Allow-Origin"] == VIEWER_ORIGIN
    assert "Warning" in allowed["Access-Control-Expose-Headers"]
    assert "Origin" in allowed["Vary"]
    # Cookies never cross origins: a cross-origin viewer sends its token.
    assert "Access-Control-Allow-Credentials" not in allowed


def test_a_cors_preflight_needs_no_credentials_and_names_the_methods(db, settings):
    settings.DICOMWEB_CORS_ALLOWED_ORIGINS = [VIEWER_ORIGIN]

    preflight = HttpsClient().options(
        "/dicomweb/studies",
        HTTP_ORIGIN=VIEWER_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    elsewhere = HttpsClient().options("/dicomweb/studies", HTTP_ORIGIN="https://evil.example")

    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == VIEWER_ORIGIN
    assert preflight["Access-Control-Allow-Methods"] == "GET, POST, HEAD"
    assert "Authorization" in preflight["Access-Control-Allow-Headers"]
    assert elsewhere.status_code == 204
    assert "Access-Control-Allow-Origin" not in elsewhere


def test_an_unknown_dicomweb_path_answers_json_not_an_html_page(alice, settings):
    settings.DEBUG = False
    client = HttpsClient(HTTP_AUTHORIZATION=f"Bearer {api_token(alice)}")

    # A list of frames is not a rendered resource (one frame at a time).
    response = client.get(
        f"/dicomweb/studies/{CT_STUDY_UID}/series/1/instances/2/frames/1,2/rendered"
    )

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found"}
