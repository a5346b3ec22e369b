"""The scripts' texts come from Django's JavaScript catalog, in the language of the page that
loads them (issue 12): a guest page may speak its link's language, not its visitor's."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings
from django.urls import reverse

from tests.accounts.helpers import HttpsClient, make_device, plain_static_storage, sign_in
from tests.factories import make_study
from tests.guestlinks.conftest import link_path, make_link  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db


def catalog_url(language: str) -> str:
    return reverse("javascript_catalog", args=[language])


def texts_of(script: str) -> dict:
    """The translations the catalog script hands to django.gettext."""
    return json.loads(re.search(r"const newcatalog = (\{.*?\n  \});", script, re.S).group(1))


@pytest.mark.parametrize(
    ("language", "loading", "selected"),
    [
        ("nl", "Laden…", "%(count)s onderzoeken geselecteerd"),
        ("fr", "Chargement…", "%(count)s examens sélectionnés"),
        ("de", "Wird geladen…", "%(count)s Untersuchungen ausgewählt"),
    ],
)
def test_the_catalog_holds_the_scripts_texts_in_the_language_asked(language, loading, selected):
    response = HttpsClient().get(catalog_url(language), HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    texts = texts_of(response.content.decode())
    assert texts["Loading…"] == loading
    assert texts["%(count)s study selected"][1] == selected
    # The scripts' texts only: not Django's admin's, which no page of ours loads.
    assert all(text in scripts_texts() for text in texts)


def scripts_texts() -> str:
    """The portal's scripts, read from the project wherever the tests run from."""
    return "".join(path.read_text() for path in (settings.BASE_DIR / "static/js").glob("*.js"))


def test_a_browser_asks_again_and_gets_not_modified_while_the_catalog_is_unchanged():
    client = HttpsClient()
    first = client.get(catalog_url("nl"))
    again = client.get(catalog_url("nl"), HTTP_IF_NONE_MATCH=first["ETag"])
    french = client.get(catalog_url("fr"), HTTP_IF_NONE_MATCH=first["ETag"])

    assert "no-cache" in first["Cache-Control"] and "no-store" not in first["Cache-Control"]
    assert again.status_code == 304
    assert french.status_code == 200 and french["ETag"] != first["ETag"]


def test_an_unknown_language_is_not_found():
    assert HttpsClient().get(catalog_url("xx")).status_code == 404


def test_a_page_loads_the_catalog_of_its_own_language_before_its_scripts(settings, alice):
    plain_static_storage(settings)
    alice.language = "fr"
    alice.save(update_fields=["language"])
    page = sign_in(HttpsClient(), alice).get(reverse("studies:directory")).content.decode()

    catalog = page.index(f'<script src="{catalog_url("fr")}"></script>')
    assert catalog < page.index('<script type="module"')


def test_the_guest_pages_run_no_script_not_even_the_catalog(settings, org, make_link):  # noqa: F811
    plain_static_storage(settings)
    _link, token = make_link(make_study(org))
    page = HttpsClient().get(link_path(token)).content.decode()

    assert "<script" not in page


def test_a_session_that_owes_its_code_still_gets_the_texts(alice):
    """The code page's scripts need their texts before the code is given; the catalog is the
    same for everyone and tells nothing about the account."""
    make_device(alice)
    client = HttpsClient()
    client.force_login(alice)

    response = client.get(catalog_url("nl"))

    assert response.status_code == 200
    assert not list(response.wsgi_request._messages)  # no "enter your code" left for later
    assert client.get(reverse("studies:directory")).status_code == 302  # held for the code
