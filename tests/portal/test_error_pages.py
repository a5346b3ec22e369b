"""Error pages say what happened and what to do, and never show a traceback or internals."""

import pytest
from django.test import override_settings

from tests.accounts.helpers import HttpsClient

pytestmark = pytest.mark.django_db


def test_a_missing_page_shows_the_generic_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert "Not found" in response.text
    assert "This page does not exist or you may not see it." in response.text
    assert "Traceback" not in response.text
    assert "urlpatterns" not in response.text and "Using the URLconf" not in response.text


def test_a_missing_api_resource_answers_json(client):
    response = client.get("/api/v1/no-such-endpoint/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found"}


@override_settings(ROOT_URLCONF="tests.portal.error_urls")
def test_a_crash_shows_the_generic_500_without_a_traceback():
    browser = HttpsClient(raise_request_exception=False)

    response = browser.get("/explode/")

    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "The error was logged." in response.text
    for leak in ("Traceback", "kaboom", "secret_module", "P-0001", "RuntimeError"):
        assert leak not in response.text
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]


@override_settings(ROOT_URLCONF="tests.portal.error_urls")
def test_a_crash_in_the_api_answers_json_without_details():
    browser = HttpsClient(raise_request_exception=False)

    response = browser.get("/api/v1/explode/")

    assert response.status_code == 500
    assert response.json() == {"detail": "Something went wrong"}
