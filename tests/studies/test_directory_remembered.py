"""The directory remembers a search's page as the REST API does (``portal.decisions``, issue 13):
the same page again runs no search, a page's menu items ask the user's access to its studies
once, every page is still audited, and any change the page rests on shows at the next request."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import Action, AuditEvent
from sharing.services.shares import remove_share
from studies import access
from studies.models import Patient
from tests.factories import make_study, share_entry
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db

# The search by name itself (reading the patient's name back with a study is not searching).
NAME_SEARCH = re.compile(r'"name_search"\S*\s+LIKE', re.I)


@pytest.fixture
def peeters(org, location):
    study = make_study(org, location=location, family_name="Peeters", description="CT brain")
    Patient.objects.filter(pk=study.patient_id).update(name_search="jan peeters")
    return study


def searched(client, q: str) -> str:
    """The directory's address for a search by name (the criteria stay in the session)."""
    response = client.post(reverse("studies:search"), {"q": q})
    assert response.status_code == 302
    return response.url


def listed(client, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200
    return re.findall(r'data-menu-target="study" data-id="([^"]+)"', response.content.decode())


def test_the_same_page_again_runs_no_search_and_is_still_audited(client, alice, peeters):
    client.force_login(alice)
    url = searched(client, "peeters")
    assert listed(client, url) == [peeters.study_uid]
    audited = AuditEvent.objects.filter(action=Action.STUDIES_QUERIED).count()

    with CaptureQueriesContext(connection) as again:
        assert listed(client, url) == [peeters.study_uid]

    statements = [query["sql"] for query in again.captured_queries]
    assert not [sql for sql in statements if NAME_SEARCH.search(sql)], statements
    assert AuditEvent.objects.filter(action=Action.STUDIES_QUERIED).count() == audited + 1
    # Another search is searched.
    with CaptureQueriesContext(connection) as other:
        assert listed(client, searched(client, "janssens")) == []
    assert [query for query in other.captured_queries if NAME_SEARCH.search(query["sql"])]


def test_a_new_study_shows_at_once(client, alice, peeters, org, location):
    client.force_login(alice)
    directory = reverse("studies:directory")
    assert listed(client, directory) == [peeters.study_uid]

    added = make_study(org, location=location, patient_id="P-0002")

    assert set(listed(client, directory)) == {peeters.study_uid, added.study_uid}


def test_a_removed_share_and_one_that_ended_are_forgotten_at_once(client, alice, carol, peeters):
    made = share(alice, peeters, ("user", carol.pk))
    client.force_login(carol)
    directory = reverse("studies:directory")
    assert listed(client, directory) == listed(client, directory) == [peeters.study_uid]

    assert remove_share(user=alice, share=made) is True
    assert listed(client, directory) == []

    until = timezone.now() + timedelta(seconds=30)
    share_entry(carol, peeters, valid_until=until)
    assert listed(client, directory) == listed(client, directory) == [peeters.study_uid]
    with time_machine.travel(until + timedelta(seconds=1)):
        assert listed(client, directory) == []


def test_users_never_share_a_remembered_page(client, alice, carol, peeters):
    client.force_login(alice)
    assert listed(client, reverse("studies:directory")) == [peeters.study_uid]
    client.force_login(carol)
    assert listed(client, reverse("studies:directory")) == []


def test_the_menu_items_of_a_page_ask_the_users_access_once(
    client, alice, org, location, peeters, monkeypatch
):
    """Share, Send Link and the rows' masking each need the user's access to the page's
    studies; the page works it out once."""
    make_study(org, location=location, patient_id="P-0002")
    worked_out = []
    real = access._user_studies_access

    def counted(user, studies):
        worked_out.append(sorted(study.pk for study in studies))
        return real(user, studies)

    monkeypatch.setattr(access, "_user_studies_access", counted)
    client.force_login(alice)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("studies:directory")).content.decode()

    assert len(worked_out) == 1 and len(worked_out[0]) == 2
    # The rows, the access and Move to folder read the entries that reach the studies once.
    entry_reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('SELECT "studies_entry"."id"')
    ]
    assert len(entry_reads) == 1, entry_reads
    # What the menu offers still rests on that answer: alice may share both and send links.
    allows = re.findall(r'data-menu-target="study"[^>]*data-allows="([^"]*)"', page)
    assert len(allows) == 2 and all({"share", "send_link"} <= set(a.split()) for a in allows)


def test_a_bad_modality_is_named_next_to_its_box(client, alice):
    client.force_login(alice)
    response = client.post(reverse("studies:search"), {"modality": "XX"})
    assert response.status_code == 400
    html = response.content.decode()
    select = re.search(r'<select name="modality"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in select and 'aria-describedby="id_modality_error"' in select
    assert re.search(r'<div class="errors" id="id_modality_error">.*XX', html, re.S)


def test_the_worklist_tree_follows_folders_and_memberships_at_once(client, alice, org, location):
    """The tree's worklists and folders are remembered; a folder made, renamed or deleted and a
    location joined show at the next page."""
    from accounts.models import Location, Membership
    from studies.services import folders
    from studies.services.worklists import location_worklist

    radiology = location_worklist(location)
    client.force_login(alice)

    def tree() -> str:
        page = client.get(reverse("studies:directory")).content.decode()
        return page.split('id="menu-data"')[0]

    assert "Tumour board" not in tree()
    board = folders.create_folder(user=alice, worklist=radiology, name="Tumour board")
    assert "Tumour board" in tree()
    folders.rename_folder(user=alice, folder=board, name="Chest board")
    assert "Chest board" in tree() and "Tumour board" not in tree()
    folders.delete_folder(user=alice, folder=board)
    assert "Chest board" not in tree()

    cardiology = Location.objects.create(organization=org, name="Cardiology")
    location_worklist(cardiology)
    assert "Cardiology" not in tree()
    Membership.objects.get(user=alice, organization=org).locations.add(cardiology)
    assert "Cardiology" in tree()
