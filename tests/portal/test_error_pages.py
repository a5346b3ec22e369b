"""Error pages say what happened and what to do, and never show a traceback or internals."""

import html

import pytest
from django.conf import settings
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


@pytest.mark.parametrize(
    ("language", "title", "advice", "back"),
    [
        ("nl", "Niet gevonden", "Deze pagina bestaat niet", "Naar het overzicht"),
        ("fr", "Introuvable", "Cette page n'existe pas", "Aller au répertoire"),
    ],
)
def test_the_error_page_speaks_the_visitors_language(client, language, title, advice, back):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language

    page = client.get("/no-such-page/").content.decode()

    assert f"<h1>{title}</h1>" in page
    assert html.unescape(page).count(advice) == 1 and back in page
    assert "Not found" not in page and "Go to the directory" not in page


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


@pytest.mark.parametrize("path", ["/studies/1.2.3.4.5.6.7.8.9/", "/no-such-page/"])
def test_the_demo_shows_the_portals_own_404_not_djangos_technical_page(client, settings, path):
    """``make run`` runs the demo with DEBUG on: a wrong study address must still be the
    portal's page, styled, within the CSP, telling nothing of the site's URL patterns."""
    from accounts.models import User

    settings.DEBUG = True
    settings.DEMO_MODE = True
    client.force_login(User.objects.create_user("visitor", password="x-Long-enough-9"))

    response = client.get(path)

    assert response.status_code == 404
    assert "This page does not exist or you may not see it." in response.text
    for technical in ("Using the URLconf", "urlpatterns", "Page not found <span>", "<style"):
        assert technical not in response.text
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]


def test_a_developer_without_the_demo_keeps_djangos_technical_404(client, settings):
    settings.DEBUG = True
    settings.DEMO_MODE = False

    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert "Using the URLconf" in response.text
