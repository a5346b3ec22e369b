"""Issue 11, point 5: a worklist's or folder's guest link hands the guest every study in it, so
the Send Link dialog says how many studies, of how many patients, the link will open, before Get
Link. The numbers come from the service that makes the link's grant
(``guestlinks.services.opening.link_reach`` beside ``granted_studies``), not from the template."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.urls import reverse

from guestlinks.models import GuestLink
from guestlinks.services.opening import granted_studies, link_reach
from studies.models import Entry, EntryOrigin, Folder
from studies.services.worklists import location_worklist
from tests.accounts.helpers import HttpsClient
from tests.factories import make_study
from tests.guestlinks.conftest import link_path

pytestmark = pytest.mark.django_db

DIALOG = reverse("guestlinks:dialog")
FRAGMENT = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}


def client_for(user) -> HttpsClient:
    client = HttpsClient()
    client.force_login(user)
    return client


def reach_text(response) -> str:
    html = response.content.decode()
    match = re.search(r"<div class=\"gl-reach\"[^>]*data-link-reach>(.*?)</div>", html, re.S)
    assert match, "the dialog says nothing about what the link opens"
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


@pytest.fixture
def radiology(org, other_org, location):
    """Radiology's worklist: three studies of two patients, and one study held through an
    anonymized share (a link must never pass that on)."""
    make_study(org, location=location, patient_id="P-1", family_name="Doe", given_name="Jane")
    make_study(org, location=location, patient_id="P-1", family_name="Doe", given_name="Jane")
    make_study(org, location=location, patient_id="P-2", family_name="Roe", given_name="Rick")
    worklist = location_worklist(location)
    Entry.objects.create(
        worklist=worklist,
        study=make_study(other_org, patient_id="P-9", family_name="Poe", given_name="Pia"),
        origin=EntryOrigin.SHARE,
        anonymized=True,
    )
    return worklist


def test_the_worklist_dialog_says_how_many_studies_and_patients_before_get_link(alice, radiology):
    response = client_for(alice).get(DIALOG, {"worklist": radiology.pk}, **FRAGMENT)
    assert response.status_code == 200
    text = reach_text(response)
    assert "This link opens every study in this worklist: 3 studies of 2 patients right now." in (
        text
    )
    assert "anonymized" in text  # what is left out, and why
    html = response.content.decode()
    assert html.index("data-link-reach") < html.index("Get Link")


def test_the_numbers_are_what_the_link_then_opens(alice, radiology, guest):
    client = client_for(alice)
    assert "3 studies of 2 patients" in reach_text(
        client.get(DIALOG, {"worklist": radiology.pk}, **FRAGMENT)
    )
    created = client.post(DIALOG, {"worklist": radiology.pk, "acknowledged": "on"}, **FRAGMENT)
    assert created.status_code == 200
    link = GuestLink.objects.get()
    assert len(granted_studies(link)) == link_reach(worklist=radiology).studies == 3

    token = re.search(r"/l/([A-Za-z0-9_-]{43})", created.content.decode()).group(1)
    opened = guest.post(link_path(token), {"action": "open"})
    assert opened.status_code == 303
    studies_page = guest.get(opened["Location"]).content.decode()
    assert studies_page.count("Jane Doe") == 2 and "Rick Roe" in studies_page
    assert "Pia" not in studies_page


def test_a_folder_counts_its_subfolders(alice, org, location):
    worklist = location_worklist(location)
    folder = Folder.objects.create(worklist=worklist, name="Tumour board")
    sub = Folder.objects.create(worklist=worklist, parent=folder, name="March")
    first = make_study(org, location=location, patient_id="P-1")
    second = make_study(org, location=location, patient_id="P-1")
    make_study(org, location=location, patient_id="P-2")  # in the worklist, in no folder
    Entry.objects.filter(study=first).update(folder=folder)
    Entry.objects.filter(study=second).update(folder=sub)

    response = client_for(alice).get(DIALOG, {"folder": folder.pk}, **FRAGMENT)
    assert (
        "This link opens every study in this folder and its subfolders: 2 studies of 1 patient "
        "right now." in reach_text(response)
    )
    assert link_reach(folder=folder).studies == 2
    assert link_reach(folder=sub).studies == 1


def test_an_empty_worklist_says_it_opens_nothing_yet(alice, location):
    worklist = location_worklist(location)
    text = reach_text(client_for(alice).get(DIALOG, {"worklist": worklist.pk}, **FRAGMENT))
    assert "holds no study a link can open right now" in text


def test_the_form_shown_again_with_errors_still_says_it(alice, radiology):
    response = client_for(alice).post(DIALOG, {"worklist": radiology.pk}, **FRAGMENT)
    assert response.status_code == 400  # no acknowledgement
    assert "3 studies of 2 patients" in reach_text(response)


def test_a_study_link_dialog_has_no_such_notice(alice, org, location):
    study = make_study(org, location=location)
    response = client_for(alice).get(DIALOG, {"study": study.study_uid}, **FRAGMENT)
    assert response.status_code == 200 and "data-link-reach" not in response.content.decode()
