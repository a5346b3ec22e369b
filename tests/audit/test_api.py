"""``GET /api/v1/audit/``: an organization's administrators read its trail through the API, page
by page, filtered; nobody else does; and every read leaves its own trace."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator

from audit.models import Action, AuditEvent, Outcome
from audit.services import record
from tests.factories import make_study

pytestmark = pytest.mark.django_db

URL = reverse("api-audit")
FIELDS = {
    "at",
    "actor",
    "action",
    "target",
    "ip",
    "details",
    "outcome",
    "event_code",
    "study_uid",
    "patient_id",
}


def read(client, user, **params):
    client.force_authenticate(user)
    return client.get(URL, params)


def reads_by(user) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(action=Action.AUDIT_READ, actor_id=user.pk).order_by("id")
    )


# --- Who sees what ---------------------------------------------------------------------------


def test_administrator_sees_their_organizations_events_and_not_others(trail, dana, api_client):
    response = read(api_client, dana)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"results", "next"}
    assert body["next"] is None
    seen = [(e["actor"], e["action"]) for e in body["results"]]
    # Newest first; the failed login of an unknown user and carol's Riverside login are not
    # St. Elsewhere's.
    assert seen == [
        ("alice", "logout"),
        ("dana", "report_changed"),
        ("alice", "study_downloaded"),
        ("alice", "study_viewed"),
        ("alice", "login"),
    ]


def test_event_fields(trail, dana, api_client):
    downloaded = read(api_client, dana, action="study_downloaded").json()["results"][0]

    assert set(downloaded) == FIELDS
    assert downloaded["target"] == {"type": "study", "id": trail[2].study_uid}
    assert downloaded["study_uid"] == trail[2].study_uid
    assert downloaded["patient_id"] == "P-0001"
    assert downloaded["details"] == {"files": 3}
    assert downloaded["outcome"] == Outcome.SUCCESS
    assert downloaded["event_code"] == "110106"
    assert datetime.fromisoformat(downloaded["at"]) == trail[2].at


def test_administrator_also_sees_their_own_actions_elsewhere(trail, dana, other_org, api_client):
    """dana logged in at Riverside, where she administers nothing: her own action is hers to
    see, carol's login there is not."""
    elsewhere = record(action=Action.LOGIN, actor=dana, organization_id=other_org.pk)

    results = read(api_client, dana, action="login").json()["results"]

    assert [(e["actor"], datetime.fromisoformat(e["at"])) for e in results] == [
        ("dana", elsewhere.at),
        ("alice", trail[0].at),
    ]


def test_clinician_without_administer_permission_gets_403_and_the_attempt_is_recorded(
    trail, alice, api_client
):
    response = read(api_client, alice)

    assert response.status_code == 403
    assert response.json() == {
        "detail": "Only organization administrators may read the audit trail."
    }
    denied = AuditEvent.objects.filter(action=Action.ACCESS_DENIED, actor_id=alice.pk).get()
    assert denied.outcome == Outcome.MINOR_FAILURE
    assert denied.target_type == "audit_trail"
    assert not reads_by(alice)


def test_anonymous_caller_is_refused(trail, api_client):
    response = api_client.get(URL)
    assert response.status_code in (401, 403)
    assert not AuditEvent.objects.filter(action=Action.AUDIT_READ).exists()


# --- Filters ---------------------------------------------------------------------------------


def test_filter_by_study_actor_and_action(trail, dana, org, api_client):
    other_study = make_study(org, patient_id="P-0002")
    record(action=Action.STUDY_VIEWED, actor=dana, study=other_study)
    study_uid = trail[1].study_uid

    by_study = read(api_client, dana, study=study_uid).json()["results"]
    assert {e["study_uid"] for e in by_study} == {study_uid}
    assert len(by_study) == 3

    by_actor = read(api_client, dana, actor="alice").json()["results"]
    assert {e["actor"] for e in by_actor} == {"alice"}
    assert len(by_actor) == 4

    combined = read(api_client, dana, actor="alice", action="study_viewed").json()["results"]
    assert [(e["actor"], e["action"], e["study_uid"]) for e in combined] == [
        ("alice", "study_viewed", study_uid)
    ]


def test_since_and_until_take_dates_and_datetimes(dana, org, api_client):
    for day in (14, 15, 16, 17):
        with time_machine.travel(datetime(2024, 5, day, 12, 0, tzinfo=UTC), tick=False):
            record(action=Action.LOGIN, actor=dana, organization_id=org.pk, details={"day": day})

    def days(**params):
        response = read(api_client, dana, action="login", **params)
        assert response.status_code == 200, response.json()
        return sorted(e["details"]["day"] for e in response.json()["results"])

    assert days(since="2024-05-15") == [15, 16, 17]
    # A date as "until" includes that whole day.
    assert days(until="2024-05-15") == [14, 15]
    assert days(since="2024-05-15", until="2024-05-16") == [15, 16]
    assert days(since="2024-05-16T12:00:00Z") == [16, 17]
    assert days(until="2024-05-16T14:00:00+02:00") == [14, 15]  # 12:00 UTC is not before itself
    assert days(since="2024-05-15T13:00:00+00:00", until="2024-05-17T11:59:59Z") == [16]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"since": "yesterday"}, "since", "Enter an ISO 8601 date"),
        ({"since": "2024-02-30"}, "since", "Enter an ISO 8601 date"),
        # An unencoded "+" arrives as a space; the message says how to write it.
        ({"since": "2024-05-01T10:00:00 02:00"}, "since", "%2B"),
        ({"until": "9999-12-31"}, "until", "out of range"),
        ({"since": "2024-05-17", "until": "2024-05-01"}, "until", "must be after"),
        ({"action": "steal"}, "action", "not a valid choice"),
        ({"cursor": "not-a-cursor"}, "cursor", "Invalid cursor"),
    ],
)
def test_bad_filters_get_400_naming_the_field(trail, dana, api_client, params, field, message):
    response = read(api_client, dana, **params)

    assert response.status_code == 400
    body = response.json()
    assert list(body) == [field]
    assert message in body[field][0]
    assert not reads_by(dana)


# --- Pages -----------------------------------------------------------------------------------


def test_pages_of_100_cover_everything_once_newest_first(dana, org, other_org, api_client):
    for n in range(230):
        record(
            action=Action.FRAMES_RENDERED,
            actor_label="alice",
            organization_id=org.pk,
            details={"n": n},
        )
        if n % 10 == 0:
            record(
                action=Action.FRAMES_RENDERED,
                actor_label="carol",
                organization_id=other_org.pk,
                details={"n": n},
            )

    api_client.force_authenticate(dana)
    seen, sizes, url = [], [], URL + "?action=frames_rendered"
    while url:
        response = api_client.get(url)
        assert response.status_code == 200
        body = response.json()
        sizes.append(len(body["results"]))
        seen += [e["details"]["n"] for e in body["results"]]
        assert all(e["actor"] == "alice" for e in body["results"])
        url = body["next"]
        if url:
            assert "action=frames_rendered" in url  # the filters carry over

    assert sizes == [100, 100, 30]
    assert seen == list(range(229, -1, -1))


def test_events_arriving_between_pages_do_not_shift_the_next_page(dana, org, api_client):
    for n in range(150):
        record(
            action=Action.FRAMES_RENDERED,
            actor_label="alice",
            organization_id=org.pk,
            details={"n": n},
        )
    api_client.force_authenticate(dana)
    first = api_client.get(URL, {"action": "frames_rendered"}).json()
    record(
        action=Action.FRAMES_RENDERED,
        actor_label="alice",
        organization_id=org.pk,
        details={"n": 150},
    )

    second = api_client.get(first["next"]).json()

    assert [e["details"]["n"] for e in second["results"]] == list(range(49, -1, -1))
    assert second["next"] is None


# --- The read is audited ---------------------------------------------------------------------


def test_every_read_is_recorded_with_its_filters(trail, dana, org, api_client):
    study_uid = trail[1].study_uid
    read(api_client, dana, study=study_uid, action="study_viewed", since="2024-01-01")
    read(api_client, dana)

    first, second = reads_by(dana)
    assert first.event_code == "110101"
    assert first.organization_id == org.pk
    assert first.target_type == "audit_trail"
    assert first.details == {
        "via": "api",
        "filters": {"study": study_uid, "action": "study_viewed", "since": "2024-01-01"},
        "page": "first",
        "returned": 1,
    }
    assert second.details["filters"] == {}
    # The second read lists the first one: administrators see who read their trail.
    results = read(api_client, dana, action="audit_read").json()["results"]
    assert len(results) == 2


# --- Schema ----------------------------------------------------------------------------------


def test_schema_documents_the_filters_and_the_page():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/audit/"]["get"]

    names = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert names == {"study", "actor", "action", "since", "until", "cursor"}
    page = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    component = schema["components"]["schemas"][page.rsplit("/", 1)[1]]
    assert set(component["properties"]) == {"results", "next"}
    assert "403" in operation["responses"]
