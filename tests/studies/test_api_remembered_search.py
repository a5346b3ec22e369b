"""The REST search remembers its answers as QIDO-RS does (portal.decisions, issue 13): a client
that asks the same page again gets it without the search or the access rules being read again,
the audit trail still records every search, and any change the answer rests on shows at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.translation import override

from audit.models import Action, AuditEvent
from sharing.services.shares import remove_share
from tests.dicomweb.conftest import token_client as dicomweb_token_client
from tests.factories import make_study, share_entry
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db

LIST = "/api/v1/studies/"


def token_client(user):
    """A client of the REST API with only an API token (its ``Token`` scheme)."""
    return dicomweb_token_client(user, scheme="Token")


def found(client, **params) -> list[str]:
    response = client.get(LIST, params)
    assert response.status_code == 200, response.content
    return [row["study_uid"] for row in response.json()["results"]]


def statements(client, **params) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        found(client, **params)
    return [query["sql"] for query in captured.captured_queries]


@pytest.fixture
def study(org, location):
    return make_study(org, location=location, family_name="Peeters")


def test_the_same_search_again_reads_no_study_and_is_still_audited(alice, study):
    client = token_client(alice)
    assert found(client, q="Peeters") == [study.study_uid]
    listed = AuditEvent.objects.filter(action=Action.STUDIES_QUERIED).count()

    again = statements(client, q="Peeters")

    assert not [sql for sql in again if "studies_study" in sql or "studies_entry" in sql], again
    assert AuditEvent.objects.filter(action=Action.STUDIES_QUERIED).count() == listed + 1
    # Other criteria are another search.
    assert any("studies_study" in sql for sql in statements(client, modality="CT"))


def test_a_new_study_is_found_at_once(alice, study, org, location):
    client = token_client(alice)
    assert found(client) == [study.study_uid]

    added = make_study(org, location=location, patient_id="P-0002")

    assert set(found(client)) == {study.study_uid, added.study_uid}


def test_a_removed_share_and_one_that_ended_are_forgotten_at_once(alice, carol, study):
    made = share(alice, study, ("user", carol.pk))
    client = token_client(carol)
    assert found(client) == found(client) == [study.study_uid]

    assert remove_share(user=alice, share=made) is True
    assert found(client) == []

    until = timezone.now() + timedelta(seconds=30)
    share_entry(carol, study, valid_until=until)
    assert found(client) == found(client) == [study.study_uid]
    with time_machine.travel(until + timedelta(seconds=1)):
        assert found(client) == []


def test_callers_never_share_a_remembered_answer(alice, carol, study):
    assert found(token_client(alice)) == [study.study_uid]
    assert found(token_client(carol)) == []


def test_an_answer_in_one_language_is_not_served_in_another(alice, carol, study):
    """A row withheld behind a share's SMS code names the reason in the caller's language."""
    share_entry(carol, study, two_factor_required=True)
    client = token_client(carol)
    names = {}
    for language in ("en", "nl"):
        with override(language):
            response = client.get(LIST, HTTP_ACCEPT_LANGUAGE=language)
        names[language] = response.json()["results"][0]["patient_name"]

    assert names["en"] == "Protected by SMS code"
    assert names["nl"] != names["en"]
