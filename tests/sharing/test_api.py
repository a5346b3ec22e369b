"""POST/GET/DELETE /api/v1/shares/ (API.md, "Shares")."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from audit.models import Action, AuditEvent
from sharing.models import Share
from studies.access import user_study_access
from studies.models import Entry, EntryOrigin
from tests.accounts.helpers import HttpsAPIClient
from tests.factories import make_study
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db

URL = "/api/v1/shares/"


def client_for(user) -> HttpsAPIClient:
    client = HttpsAPIClient()
    client.force_authenticate(user)
    return client


def body(study, **overrides):
    values = {
        "studies": [study.study_uid],
        "recipients": [{"user": overrides.pop("to")}],
        "access": "report_read",
        "reason": "Second opinion",
        "patient_agreed": True,
    }
    values.update(overrides)
    return values


def test_create_answers_201_with_the_contract_shape(study, alice, bob, group):
    response = client_for(alice).post(
        URL,
        body(
            study,
            to=bob.pk,
            recipients=[{"user": bob.pk}, {"group": group.pk}, {"email": "gp@example.net"}],
            valid_until=None,
        ),
        format="json",
    )
    assert response.status_code == 201, response.json()
    data = response.json()
    assert {"id", "summary", "recipients", "studies", "valid_until"} <= set(data)
    assert data["studies"] == [study.study_uid]
    assert [(r["kind"], r["id"], r["pending"]) for r in data["recipients"]] == [
        ("user", bob.pk, False),
        ("group", group.pk, False),
        ("email", None, True),
    ]
    assert data["valid_until"] == Share.objects.get().valid_until.isoformat()
    assert data["summary"].startswith("1 study shared with 1 user, 1 group, 1 email")
    assert user_study_access(bob, study) is not None
    assert AuditEvent.objects.filter(action=Action.SHARE_CREATED).count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reason": ""}, "reason"),
        ({"patient_agreed": False}, "patient_agreed"),
        ({"access": "images"}, "access"),
        ({"valid_until": "2000-01-01"}, "valid_until"),
        ({"recipients": [{"user": 1, "group": 2}]}, "recipients"),
        ({"recipients": []}, "recipients"),
    ],
)
def test_broken_rules_answer_400_naming_the_field(change, field, study, alice, bob):
    response = client_for(alice).post(URL, body(study, to=bob.pk) | change, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Share.objects.exists()
    assert not Entry.objects.filter(origin=EntryOrigin.SHARE).exists()


def test_policy_refusal_answers_400_on_recipients(org, study, alice, bob):
    org.allow_share_users = False
    org.save()
    response = client_for(alice).post(URL, body(study, to=bob.pk), format="json")
    assert response.status_code == 400 and "recipients" in response.json()


def test_invisible_and_unknown_studies_answer_alike(other_org, alice, bob):
    hidden = make_study(other_org)
    answers = []
    for uid in (hidden.study_uid, "1.2.3.4.5.6.7"):
        response = client_for(alice).post(
            URL, body(hidden, to=bob.pk) | {"studies": [uid]}, format="json"
        )
        assert response.status_code == 400
        answers.append(response.json()["studies"][0].replace(uid, "UID"))
    assert answers[0] == answers[1]
    assert not Share.objects.exists()


def test_list_sent_and_received(study, alice, bob, carol):
    made = share(alice, study, ("user", bob.pk))
    sent = client_for(alice).get(URL, {"direction": "sent"}).json()
    received = client_for(bob).get(URL, {"direction": "received"}).json()
    assert [s["id"] for s in sent] == [made.pk] == [s["id"] for s in received]
    assert client_for(bob).get(URL).json() == []
    assert client_for(carol).get(URL, {"direction": "received"}).json() == []
    assert client_for(alice).get(URL, {"direction": "sideways"}).status_code == 400


def test_an_expired_share_is_no_longer_listed_as_received(study, alice, bob):
    today = timezone.localdate()
    with time_machine.travel(timezone.now() - timedelta(days=5)):
        share(alice, study, ("user", bob.pk), valid_until=today - timedelta(days=1))
    running = share(alice, study, ("user", bob.pk), valid_until=today)
    received = client_for(bob).get(URL, {"direction": "received"}).json()
    assert [s["id"] for s in received] == [running.pk]
    # The sender still sees both among the shares they sent.
    assert len(client_for(alice).get(URL, {"direction": "sent"}).json()) == 2


def test_a_share_blocked_for_its_recipient_is_not_listed_as_received(study, alice, bob):
    """Too many wrong SMS codes block the recipient: the share gives bob nothing until the
    sending organization unblocks it, so it is not among the shares he receives."""
    bob.mobile = "+32470123456"
    bob.save(update_fields=["mobile"])
    blocked = share(alice, study, ("user", bob.pk), two_factor=True)
    running = share(alice, study, ("user", bob.pk))
    blocked.recipients.update(blocked_at=timezone.now())
    received = client_for(bob).get(URL, {"direction": "received"}).json()
    assert [s["id"] for s in received] == [running.pk]


def test_delete_answers_204_and_access_ends(study, alice, bob):
    made = share(alice, study, ("user", bob.pk))
    assert client_for(alice).delete(f"{URL}{made.pk}/").status_code == 204
    assert user_study_access(bob, study) is None
    assert client_for(bob).get(URL, {"direction": "received"}).json() == []


def test_someone_elses_share_answers_404(study, alice, bob, carol):
    made = share(alice, study, ("user", bob.pk))
    assert client_for(carol).delete(f"{URL}{made.pk}/").status_code == 404
    assert client_for(bob).delete(f"{URL}{made.pk}/").status_code == 404
    assert client_for(alice).delete(f"{URL}999999/").status_code == 404
    assert user_study_access(bob, study) is not None


def test_anonymous_caller_is_refused(study):
    assert HttpsAPIClient().post(URL, {}, format="json").status_code in (401, 403)
