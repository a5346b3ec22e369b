"""Issue 11: a share's label "can be set for the user or a group" (PACSonWEB). The sender chooses
who sees it: the whole group (everyone the share reaches, the default and what labels always
did) or only the recipient user (the users it is shared with personally; a group's or
location's worklist holds the study without the label). The choice is stored on the share and
on each of its entries, honoured in the directory's rows, and offered in the dialog and the
REST API."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.models import Membership
from audit.models import Action, AuditEvent
from sharing.models import Share
from sharing.services.entries import grant_entries
from studies.models import Entry, LabelScope
from studies.selectors import study_rows
from studies.services.worklists import personal_worklist
from tests.accounts.helpers import HttpsAPIClient, HttpsClient, plain_static_storage
from tests.conftest import make_user
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db

DIRECTORY = reverse("studies:directory")
DIALOG = reverse("sharing:dialog")
FRAGMENT = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
API = "/api/v1/shares/"
LABEL = "Tumour board"
LABEL_BADGE = re.compile(r'<span class="badge label">([^<]*)</span>')


@pytest.fixture(autouse=True)
def _plain_static(settings):
    plain_static_storage(settings)


@pytest.fixture
def erin(org, clinician_role, group):
    """Another member of bob's Neuroradiology group, whom nothing is shared with personally."""
    user = make_user("erin")
    Membership.objects.create(user=user, organization=org, role=clinician_role).groups.add(group)
    return user


def client_for(user) -> HttpsClient:
    client = HttpsClient()
    client.force_login(user)
    return client


def labels_seen(user, study) -> list[str]:
    return study_rows(user, [study])[0].labels


def directory_labels(user) -> list[str]:
    html = client_for(user).get(DIRECTORY).content.decode()
    return [unescape(label) for label in LABEL_BADGE.findall(html)]


# --- The service and the directory -------------------------------------------------------------


def test_a_label_for_the_whole_group_shows_to_every_member(alice, bob, erin, group, study):
    created = share(alice, study, ("group", group.pk), label=LABEL, label_scope="group")
    assert created.label_scope == LabelScope.GROUP
    assert Entry.objects.get(worklist__group=group).label_scope == LabelScope.GROUP
    assert labels_seen(bob, study) == [LABEL]
    assert labels_seen(erin, study) == [LABEL]
    assert directory_labels(erin) == [LABEL]


def test_the_whole_group_is_the_default_as_labels_always_were(alice, erin, group, study):
    created = share(alice, study, ("group", group.pk), label=LABEL)
    assert created.label_scope == LabelScope.GROUP
    assert labels_seen(erin, study) == [LABEL]


def test_a_label_only_for_the_recipient_user_stays_out_of_the_groups_worklist(
    alice, bob, erin, group, study
):
    created = share(
        alice, study, ("user", bob.pk), ("group", group.pk), label=LABEL, label_scope="user"
    )
    assert created.label_scope == LabelScope.USER
    entries = Entry.objects.filter(study=study, origin="share")
    assert {(e.worklist.kind, e.label, e.label_scope) for e in entries} == {
        ("personal", LABEL, "user"),
        ("group", LABEL, "user"),
    }
    event = AuditEvent.objects.get(action=Action.SHARE_CREATED)
    assert event.details["label_scope"] == "user"
    # bob holds it personally (and through the group): he sees the label once.
    assert labels_seen(bob, study) == [LABEL]
    assert directory_labels(bob) == [LABEL]
    # erin holds it through the group only: the study without the label.
    assert labels_seen(erin, study) == []
    assert directory_labels(erin) == []


def test_a_location_share_honours_the_scope_too(alice, bob, location, study):
    share(
        alice, study, ("user", bob.pk), ("location", location.pk), label=LABEL, label_scope="user"
    )
    # alice works from the Radiology location's worklist.
    assert labels_seen(alice, study) == []
    assert labels_seen(bob, study) == [LABEL]


def test_only_for_the_recipient_user_needs_a_user_among_the_recipients(
    alice, group, location, study
):
    with pytest.raises(ValidationError) as excinfo:
        share(
            alice,
            study,
            ("group", group.pk),
            ("location", location.pk),
            label=LABEL,
            label_scope="user",
        )
    assert "label_scope" in excinfo.value.message_dict
    assert not Share.objects.exists()
    assert not Entry.objects.filter(origin="share").exists()


def test_an_email_recipient_counts_as_a_recipient_user(alice, group, study):
    created = share(
        alice,
        study,
        ("email", "gp@example.net"),
        ("group", group.pk),
        label=LABEL,
        label_scope="user",
    )
    assert created.label_scope == LabelScope.USER


def test_entries_made_when_an_email_recipient_registers_keep_the_scope(alice, group, study):
    created = share(
        alice,
        study,
        ("email", "gp@example.net"),
        ("group", group.pk),
        label=LABEL,
        label_scope="user",
    )
    # What activating the invitation does once the address has an account.
    recipient = created.recipients.get(kind="email")
    gp = make_user("gp", email="gp@example.net")
    recipient.user, recipient.worklist = gp, personal_worklist(gp)
    recipient.save(update_fields=["user", "worklist"])
    (entry,) = grant_entries(recipient, [study])
    assert (entry.label, entry.label_scope) == (LABEL, LabelScope.USER)
    assert labels_seen(gp, study) == [LABEL]


def test_without_a_label_the_scope_is_moot(alice, group, study):
    created = share(alice, study, ("group", group.pk), label="  ", label_scope="user")
    assert (created.label, created.label_scope) == ("", LabelScope.GROUP)


def test_an_unknown_scope_is_refused(alice, bob, study):
    with pytest.raises(ValidationError) as excinfo:
        share(alice, study, ("user", bob.pk), label=LABEL, label_scope="everyone")
    assert "label_scope" in excinfo.value.message_dict


# --- The dialog --------------------------------------------------------------------------------


def dialog_body(study, recipients, **extra) -> dict:
    body = {
        "study": [study.study_uid],
        "access": "report_read",
        "reason": "Tumour board on Thursday",
        "patient_agreed": "on",
        "intent": "share",
        "label": LABEL,
    }
    for index, (kind, pk) in enumerate(recipients):
        body[f"recipient-{index}-kind"] = kind
        body[f"recipient-{index}-target"] = str(pk)
    body.update(extra)
    return body


def test_the_dialog_offers_the_choice_with_the_whole_group_chosen(alice, study):
    response = client_for(alice).get(DIALOG, {"study": study.study_uid}, **FRAGMENT)
    html = unescape(response.content.decode())
    assert "Label shown" in html
    assert re.search(r'<input type="radio" name="label_scope" value="group"[^>]*checked', html)
    assert re.search(r'<input type="radio" name="label_scope" value="user"', html)
    assert "For the whole group" in html and "Only for the recipient user" in html


def test_the_dialog_stores_the_choice(alice, bob, group, study):
    body = dialog_body(study, [("user", bob.pk), ("group", group.pk)], label_scope="user")
    response = client_for(alice).post(DIALOG, body, **FRAGMENT)
    assert response.status_code == 200
    assert Share.objects.get().label_scope == LabelScope.USER
    assert set(Entry.objects.values_list("label_scope", flat=True).filter(origin="share")) == {
        "user"
    }


def test_the_dialog_says_why_only_for_the_user_is_refused_for_a_group(alice, group, study):
    body = dialog_body(study, [("group", group.pk)], label_scope="user")
    response = client_for(alice).post(DIALOG, body, **FRAGMENT)
    assert response.status_code == 400
    html = unescape(response.content.decode())
    errors = re.search(r'<ul class="errors" id="share-label_scope_error">(.*?)</ul>', html)
    assert errors and "needs a user among the recipients" in errors.group(1)
    # The choice is kept for the sender to change.
    assert re.search(r'<input type="radio" name="label_scope" value="user"[^>]*checked', html)
    assert not Share.objects.exists()


# --- The REST API ------------------------------------------------------------------------------


def api_for(user) -> HttpsAPIClient:
    client = HttpsAPIClient()
    client.force_authenticate(user)
    return client


def api_body(study, recipients, **extra) -> dict:
    return {
        "studies": [study.study_uid],
        "recipients": recipients,
        "access": "report_read",
        "reason": "Tumour board",
        "patient_agreed": True,
        "label": LABEL,
        **extra,
    }


def test_the_api_takes_and_answers_the_scope(alice, bob, erin, group, study):
    client = api_for(alice)
    body = api_body(study, [{"user": bob.pk}, {"group": group.pk}], label_scope="user")
    response = client.post(API, body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["label"], data["label_scope"]) == (LABEL, "user")
    assert labels_seen(erin, study) == []
    listed = client.get(API, {"direction": "sent"}).json()
    assert listed[0]["label_scope"] == "user"
    received = api_for(bob).get(API, {"direction": "received"}).json()
    assert received[0]["label_scope"] == "user"


def test_the_api_defaults_to_the_whole_group(alice, group, study):
    response = api_for(alice).post(API, api_body(study, [{"group": group.pk}]), format="json")
    assert response.status_code == 201
    assert response.json()["label_scope"] == "group"


def test_the_api_names_the_field_when_the_scope_is_refused(alice, group, study):
    client = api_for(alice)
    response = client.post(
        API, api_body(study, [{"group": group.pk}], label_scope="user"), format="json"
    )
    assert response.status_code == 400
    assert "label_scope" in response.json()
    response = client.post(
        API, api_body(study, [{"group": group.pk}], label_scope="everyone"), format="json"
    )
    assert response.status_code == 400
    assert "label_scope" in response.json()
    assert not Share.objects.exists()


def test_the_schema_describes_the_scope(alice):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    create = components["ShareCreate"]["properties"]["label_scope"]
    answer = components["Share"]["properties"]["label_scope"]
    for prop in (create, answer):
        ref = prop.get("$ref") or prop["allOf"][0]["$ref"]
        enum = components[ref.rsplit("/", 1)[-1]]["enum"]
        assert set(enum) == {"group", "user"}
    assert "label_scope" in components["Share"]["required"]


def test_the_viewer_shows_a_user_only_label_to_the_user_not_to_the_group(alice, bob, group):
    """The study page follows the same rule as the directory row (``Entry.shown_label``)."""
    from django.urls import reverse

    from studies.models import Entry, LabelScope
    from studies.services.worklists import group_worklist, personal_worklist
    from tests.accounts.helpers import sign_in
    from tests.factories import make_study

    study = make_study(alice.memberships.get().organization)
    for worklist, label in ((personal_worklist(bob), "For Bob"), (group_worklist(group), "Hidden")):
        Entry.objects.create(
            worklist=worklist,
            study=study,
            origin="share",
            label=label,
            label_scope=LabelScope.USER,
        )
    page = sign_in(HttpsClient(), bob).get(reverse("studies:study", args=[study.study_uid]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "For Bob" in text and "Hidden" not in text
