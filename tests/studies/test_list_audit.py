"""Issue 10, finding 8: study lists are audited.

Directory pages, searches and the REST API list show names, IDs and birth dates; each request
writes one PS3.15 "Query" event (110112) with the criteria used and the number of rows shown,
and never the values searched for.
"""

from __future__ import annotations

from django.urls import reverse

from audit.models import Action, AuditEvent
from tests.accounts.helpers import HttpsAPIClient, HttpsClient
from tests.factories import make_study


def query_events():
    return list(AuditEvent.objects.filter(action=Action.STUDIES_QUERIED).order_by("id"))


def test_study_lists_are_audited_as_query_for_the_directory_and_its_search(org, location, alice):
    make_study(org, location=location, family_name="Verbeke", given_name="Sofie")
    make_study(org, location=location, family_name="Maes", given_name="Tom", patient_id="P-2")
    client = HttpsClient()
    client.force_login(alice)

    client.get(reverse("studies:directory"))
    found = client.post(reverse("studies:search"), {"q": "Verbeke"}, follow=True)

    assert found.status_code == 200
    listed, searched = query_events()
    assert listed.event_code == "110112"
    assert listed.actor_id == alice.pk
    assert listed.details == {"via": "directory", "level": "studies", "keys": [], "rows": 2}
    assert searched.details["keys"] == ["name"]
    assert searched.details["rows"] == 1
    assert "verbeke" not in str(searched.details).lower(), "no searched value in the trail"


def test_study_lists_are_audited_as_query_for_the_rest_api(org, location, alice):
    make_study(org, location=location, accession="ACC-SECRET-1")
    api = HttpsAPIClient()
    api.force_authenticate(alice)

    response = api.get("/api/v1/studies/", {"accession": "ACC-SECRET-1", "modality": "CT"})

    assert response.status_code == 200
    [event] = query_events()
    assert event.details == {
        "via": "api",
        "level": "studies",
        "keys": ["accession", "modality"],
        "rows": 1,
    }
    assert "ACC-SECRET-1" not in str(event.details)


def test_a_refused_list_writes_no_query_event(org, location, alice):
    api = HttpsAPIClient()
    api.force_authenticate(alice)

    response = api.get("/api/v1/studies/", {"date_from": "2024-02-01", "date_to": "2024-01-01"})

    assert response.status_code == 400
    assert query_events() == []
