"""The pages a clinician and a guest go through, read in Dutch and in French, carry no English
sentence, and every date on them is written as that language writes dates: dd/mm/yyyy, never
ISO, and in English with the month spelled (issue 12). The texts that scripts add to these pages
are read in the browser test of the same walk."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from tests.accounts.helpers import HttpsClient, plain_static_storage, sign_in
from tests.factories import make_study
from tests.guestlinks.conftest import link_path, make_link  # noqa: F401 - a fixture
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db

STUDY_DATE = date(2024, 5, 17)
BIRTH_DATE = date(1970, 1, 31)
# Words that English has and Dutch and French do not: one in a line of the page's text is an
# untranslated sentence or label.
ENGLISH = re.compile(
    r"\b(the|and|your|you|this|with|will|from|are|has|have|not|which|that|please|share|shared|"
    r"shares|study|studies|select|cancel|close|search|expires|until|valid|never|selected)\b",
    re.IGNORECASE,
)
_HIDDEN = re.compile(r"(?s)<(script|style)\b[^>]*>.*?</\1>")
_READ_ALOUD = re.compile(
    r'\s(?:title|aria-label|placeholder|alt|data-[a-z-]+-text)="([^"]+)"', re.IGNORECASE
)
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
SLASHED_DATE = re.compile(r"\b\d{1,2}/\d{1,2}/\d{4}\b")


def readable_lines(html: str) -> list[str]:
    """What a reader sees or hears of a page: its text and the attributes read aloud, without
    the portal's name and the data of the study (names and descriptions stay as recorded)."""
    html = _HIDDEN.sub(" ", html)
    lines = re.sub(r"(?s)<[^>]+>", "\n", html).split("\n") + _READ_ALOUD.findall(html)
    data = (settings.SITE_NAME, "Jane", "Doe", "CT Chest", "Alice Tester", "Bob Tester")
    return without_data(lines, data)


def without_data(texts, data) -> list[str]:
    """The non-blank ``texts``, stripped, with every value of ``data`` (names, descriptions, the
    portal's name: not the page's language) taken out."""
    cleaned = []
    for text in texts:
        for value in data:
            text = text.replace(value, " ")
        if text.strip():
            cleaned.append(text.strip())
    return cleaned


def english_lines(html: str) -> list[str]:
    return [line for line in readable_lines(html) if ENGLISH.search(line)]


@pytest.fixture
def walk(settings, alice, bob, org, location, make_link):  # noqa: F811 - the fixture
    """The pages of the walk, as alice (a clinician) and as a guest of one of her links."""
    plain_static_storage(settings)
    study = make_study(org, location=location, study_date=STUDY_DATE, birth_date=BIRTH_DATE)
    valid_until = timezone.localdate() + timedelta(days=30)
    share(alice, study, ("user", bob.pk), valid_until=valid_until)
    _link, token = make_link(study)
    fragment = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
    return {
        "study": study,
        "valid_until": valid_until,
        "pages": {
            "directory": (reverse("studies:directory"), {}),
            "viewer": (reverse("studies:study", args=[study.study_uid]), {}),
            "Send Link": (f"{reverse('guestlinks:dialog')}?study={study.study_uid}", fragment),
            "Share": (f"{reverse('sharing:dialog')}?study={study.study_uid}", fragment),
            "Shares": (reverse("sharing:shares"), {}),
        },
        "guest": link_path(token),
    }


def pages_in(language: str, walk, alice) -> dict[str, str]:
    alice.language = language
    alice.save(update_fields=["language"])
    clinician = sign_in(HttpsClient(), alice)
    pages = {}
    for name, (path, headers) in walk["pages"].items():
        response = clinician.get(path, **headers)
        assert response.status_code == 200, (name, response.status_code)
        pages[name] = response.content.decode()
    guest = HttpsClient()
    guest.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = guest.get(walk["guest"])
    assert response.status_code == 200
    pages["guest landing"] = response.content.decode()
    return pages


@pytest.mark.parametrize("language", ["nl", "fr"])
def test_the_walk_has_no_english_and_writes_dates_as_the_language_does(walk, alice, language):
    pages = pages_in(language, walk, alice)

    for name, html in pages.items():
        assert f'<html lang="{language}">' in html or name in ("Send Link", "Share"), name
        assert english_lines(html) == [], f"English on the {name} page in {language}"
        text = "\n".join(readable_lines(html))
        assert not ISO_DATE.search(text), f"an ISO date on the {name} page: {ISO_DATE.search(text)}"
    directory = "\n".join(readable_lines(pages["directory"]))
    assert STUDY_DATE.strftime("%d/%m/%Y") in directory
    assert BIRTH_DATE.strftime("%d/%m/%Y") in directory
    assert walk["valid_until"].strftime("%d/%m/%Y") in pages["Shares"]


def test_in_english_the_month_is_spelled_so_no_date_reads_two_ways(walk, alice):
    pages = pages_in("en", walk, alice)

    for name, html in pages.items():
        text = "\n".join(readable_lines(html))
        assert not SLASHED_DATE.search(text), f"{name}: {SLASHED_DATE.search(text)}"
        assert not ISO_DATE.search(text), f"{name}: {ISO_DATE.search(text)}"
    directory = "\n".join(readable_lines(pages["directory"]))
    assert "17 May 2024" in directory and "31 Jan 1970" in directory
    assert f"{walk['valid_until']:%-d %b %Y}" in pages["Shares"]


def test_the_detector_finds_an_english_sentence():
    """The check above can fail: an English sentence or label is found, a Dutch one is not."""
    assert english_lines("<p>Select the studies you want to share.</p>")
    assert english_lines('<button aria-label="Close">x</button>')
    assert not english_lines("<p>Selecteer de onderzoeken die u wilt delen.</p>")
    assert not english_lines("<p>Sélectionnez les examens que vous voulez partager.</p>")
