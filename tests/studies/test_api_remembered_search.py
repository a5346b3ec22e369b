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

from accounts.authentication import token_decision_key
from audit.models import Action, AuditEvent
from portal import decisions
from sharing.services.shares import remove_share
from tests.accounts.helpers import HttpsClient
from tests.dicomweb.conftest import api_token
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


# --- One round trip to the cache ---------------------------------------------------------------


def test_a_tokens_next_search_asks_the_cache_once(alice, study, counting_cache):
    """Who the token is and the remembered page come back in one round trip: the token's earlier
    request told this process whom it stands for."""
    client = token_client(alice)
    assert found(client, q="Peeters") == [study.study_uid]
    assert found(client, modality="CT") == [study.study_uid]

    for params in ({"q": "Peeters"}, {"modality": "CT"}):
        counting_cache.asked = 0
        assert found(client, **params) == [study.study_uid]
        assert counting_cache.asked == 1, params


def test_a_query_refused_after_asking_ahead_is_still_refused(alice, study, counting_cache):
    client = token_client(alice)
    assert found(client, q="Peeters") == [study.study_uid]

    response = client.get(LIST, {"date_from": "2024-02-01", "date_to": "2024-01-01"})

    assert response.status_code == 400
    assert "date_to" in response.json()


def test_a_wrong_guess_at_whom_a_token_stands_for_finds_nothing(alice, carol, study):
    """Should the token stand for someone else than last time, the page asked ahead is that
    other caller's and answers nothing."""
    assert found(token_client(alice), q="Peeters") == [study.study_uid]  # alice's, remembered
    secret = api_token(carol)  # carol reaches nothing of the study
    key = token_decision_key(secret)
    decisions.note_stood_for(key, f"user:{alice.pk}")

    carols = HttpsClient(HTTP_AUTHORIZATION=f"Token {secret}")

    assert found(carols, q="Peeters") == []
    assert decisions.stood_for(key) == decisions.StoodFor(f"user:{carol.pk}")


def test_a_query_is_validated_once_and_a_refusal_worded_each_time(alice, study, monkeypatch):
    from studies.api import studies as api

    validated = []
    real_is_valid = api.StudyQuerySerializer.is_valid

    def counting_is_valid(serializer, *args, **kwargs):
        validated.append(dict(serializer.initial_data))
        return real_is_valid(serializer, *args, **kwargs)

    monkeypatch.setattr(api.StudyQuerySerializer, "is_valid", counting_is_valid)
    api._valid_params.cache_clear()
    client = token_client(alice)
    for _ in range(3):
        assert found(client, q="Peeters", sort="name") == [study.study_uid]
    assert len(validated) == 1

    refused = {"date_from": "2024-02-01", "date_to": "2024-01-01"}
    answers = {
        language: client.get(LIST, refused, HTTP_ACCEPT_LANGUAGE=language)
        for language in ("nl", "en")
    }
    assert {answer.status_code for answer in answers.values()} == {400}
    assert answers["nl"].json()["date_to"] == ["De einddatum ligt vóór de begindatum."]
    assert answers["en"].json()["date_to"] == ["The end date is before the start date."]
    # Found refused once; its errors found again for each refusal, in the caller's language.
    assert len(validated) == 1 + 1 + 2
