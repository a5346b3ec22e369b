"""Finding recipients (``sharing.selectors`` and GET /api/v1/recipients/): by first name, last
name and physician number, by mobile and email only where the user made them public, and only
among the users, groups and locations the sender could share with."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Group, Location, Membership, Organization
from accounts.permissions import Perm
from sharing.selectors import RecipientQuery, recipient_by_id, search_recipients
from tests.accounts.helpers import HttpsAPIClient, HttpsClient
from tests.conftest import make_user
from tests.sharing.conftest import member

pytestmark = pytest.mark.django_db

URL = "/api/v1/recipients/"


def found(sender, text="", **criteria):
    return [
        (result.kind, result.id)
        for result in search_recipients(sender, RecipientQuery(text=text, **criteria))
    ]


def users_found(sender, text="", **criteria):
    return [pk for kind, pk in found(sender, text, **criteria) if kind == "user"]


@pytest.fixture
def searchable_org(clinician_role):
    """Another hospital, open to other organizations' searches."""
    other = Organization.objects.create(name="Ghent University Hospital", searchable=True)
    radiology = Location.objects.create(organization=other, name="Radiology Ghent")
    Group.objects.create(organization=other, name="Thoracic radiology")
    Group.objects.create(organization=other, name="Internal board", searchable=False)
    doctor = make_user(
        "gert",
        first_name="Gert",
        last_name="Peeters",
        physician_number="RIZIV-7001",
        mobile="+32470123456",
        email="gert@ghent.example",
    )
    membership = Membership.objects.create(user=doctor, organization=other, role=clinician_role)
    membership.locations.add(radiology)
    return other


@pytest.fixture
def closed_org(clinician_role):
    """A clinic that keeps to itself: not searchable by other organizations."""
    closed = Organization.objects.create(name="Private Clinic", searchable=False)
    Location.objects.create(organization=closed, name="Private imaging")
    Group.objects.create(organization=closed, name="Private group")
    hidden = make_user("hilde", first_name="Hilde", last_name="Peeters", physician_number="P-9")
    Membership.objects.create(user=hidden, organization=closed, role=clinician_role)
    return closed


def test_users_are_found_by_first_name_last_name_and_physician_number(alice, bob, dana):
    assert users_found(alice, "bob") == [bob.pk]
    assert users_found(alice, "TESTER") == [bob.pk, dana.pk]
    assert users_found(alice, "riziv-1002") == [bob.pk]
    assert users_found(alice, "1002") == [bob.pk]
    assert users_found(alice, "bob tester") == [bob.pk]
    assert users_found(alice, "bob nobody") == []


def test_the_sender_is_not_their_own_recipient(alice, bob):
    assert alice.pk not in users_found(alice, "tester")


def test_mobile_and_email_find_a_user_only_where_public(alice, bob):
    bob.mobile = "+32470999888"
    bob.save()
    for text in ("+32470999888", "0470 99 98 88", "bob@example.org", "example.org"):
        assert users_found(alice, text) == [], text

    bob.mobile_public = True
    bob.save()
    assert users_found(alice, "+32 470 99 98 88") == [bob.pk]
    assert users_found(alice, "0470/999.888") == [bob.pk]
    assert users_found(alice, "bob@example.org") == []  # the email is still private

    bob.email_public = True
    bob.save()
    assert users_found(alice, "bob@example.org") == [bob.pk]


def test_results_never_carry_a_private_mobile_or_email(alice, bob):
    bob.mobile = "+32470999888"
    bob.save()
    (result,) = search_recipients(alice, RecipientQuery(text="bob"))
    assert (result.email, result.mobile) == ("", "")
    assert set(result.as_api()) == {"kind", "id", "name", "organization", "physician_number"}

    bob.mobile_public = bob.email_public = True
    bob.save()
    (result,) = search_recipients(alice, RecipientQuery(text="bob"))
    assert result.as_api()["mobile"] == "+32470999888"
    assert result.as_api()["email"] == "bob@example.org"


def test_only_reachable_users_groups_and_locations(alice, searchable_org, closed_org, carol):
    # Users of the sender's own and of searchable organizations; never of a closed one.
    assert [kind for kind, _pk in found(alice, "peeters")] == ["user"]
    (gert,) = search_recipients(alice, RecipientQuery(text="peeters"))
    assert gert.name == "Gert Peeters" and gert.organization == "Ghent University Hospital"
    assert found(alice, "hilde") == []
    assert found(alice, "P-9") == []
    # Groups: searchable ones of searchable organizations.
    groups = search_recipients(alice, RecipientQuery(kind="group", text="radiology"))
    assert [r.name for r in groups] == ["Thoracic radiology"]
    assert found(alice, "internal board") == []
    assert found(alice, "private") == []
    # Locations ("radiology departments") of searchable organizations.
    locations = search_recipients(alice, RecipientQuery(kind="location", text="radiology"))
    assert {r.name for r in locations} == {"Radiology", "Radiology Ghent"}
    # Riverside Clinic (carol's) is searchable by default: she is found.
    assert users_found(alice, "carol") == [carol.pk]


def test_a_non_searchable_group_of_the_senders_own_organization_is_found(alice, org):
    Group.objects.create(organization=org, name="Quiet team", searchable=False)
    assert [r.name for r in search_recipients(alice, RecipientQuery(text="quiet"))] == [
        "Quiet team"
    ]


def test_a_user_in_a_closed_and_an_open_organization_is_named_only_by_the_open_one(
    alice, closed_org, searchable_org, clinician_role
):
    hilde = closed_org.memberships.get().user
    Membership.objects.create(user=hilde, organization=searchable_org, role=clinician_role)
    (result,) = search_recipients(alice, RecipientQuery(text="hilde"))
    assert result.organization == "Ghent University Hospital"
    assert "Private" not in result.organization


def test_a_closed_organization_finds_its_own_members(closed_org, clinician_role):
    colleague = make_user("ilse", first_name="Ilse", last_name="Peeters")
    Membership.objects.create(user=colleague, organization=closed_org, role=clinician_role)
    assert users_found(colleague, "hilde") == [closed_org.memberships.first().user_id]
    assert [r.name for r in search_recipients(colleague, RecipientQuery(text="private"))] == [
        "Private group",
        "Private imaging",
    ]


def test_inactive_users_and_memberships_are_not_found(alice, bob, dana):
    bob.is_active = False
    bob.save()
    Membership.objects.filter(user=dana).update(is_active=False)
    assert users_found(alice, "tester") == []


def test_each_kind_needs_its_permission_and_sharing_at_all(org, location, group, bob):
    users_only = member(
        "uma", org, location, [Perm.VIEW_STUDIES, Perm.SHARE_STUDY, Perm.SHARE_USERS]
    )
    assert [kind for kind, _pk in found(users_only, "neuro")] == []
    assert [kind for kind, _pk in found(users_only, "bob")] == ["user"]
    no_share = member("nina", org, location, [Perm.VIEW_STUDIES, Perm.SHARE_USERS])
    assert found(no_share, "bob") == []


def test_detailed_search_by_kind_and_criteria(alice, bob, group, searchable_org):
    assert users_found(alice, physician_number="7001") != []
    assert found(alice, kind="user", physician_number="1002") == [("user", bob.pk)]
    assert found(alice, kind="user", name="bob", organization="st. elsewhere") == [("user", bob.pk)]
    assert found(alice, kind="user", name="bob", organization="ghent") == []
    assert found(alice, kind="group", organization="elsewhere") == [("group", group.pk)]
    groups = search_recipients(alice, RecipientQuery(kind="group", organization="ghent"))
    assert [r.name for r in groups] == ["Thoracic radiology"]
    locations = search_recipients(alice, RecipientQuery(kind="location", name="radiology"))
    assert {r.organization for r in locations} == {
        "St. Elsewhere Hospital",
        "Ghent University Hospital",
    }
    # A physician number names users only.
    assert found(alice, kind="group", physician_number="1002") == []


def test_too_short_a_query_finds_nothing(alice, bob):
    assert found(alice, "b") == []
    assert found(alice, "") == []


def test_recipient_by_id_answers_none_for_unreachable_and_unknown(alice, bob, closed_org):
    hilde = closed_org.memberships.get().user
    assert recipient_by_id(alice, "user", bob.pk).name == "Bob Tester"
    assert recipient_by_id(alice, "user", hilde.pk) is None
    assert recipient_by_id(alice, "user", 999_999) is None
    private_group = Group.objects.get(name="Private group")
    assert recipient_by_id(alice, "group", private_group.pk) is None


# --- The API -----------------------------------------------------------------------------------


def api_for(user) -> HttpsAPIClient:
    client = HttpsAPIClient()
    client.force_authenticate(user)
    return client


def test_api_answers_the_contract_shape(alice, bob, group, location):
    response = api_for(alice).get(URL, {"q": "RIZIV-1002"})
    assert response.status_code == 200
    assert response.json() == [
        {
            "kind": "user",
            "id": bob.pk,
            "name": "Bob Tester",
            "organization": "St. Elsewhere Hospital",
            "physician_number": "RIZIV-1002",
        }
    ]
    response = api_for(alice).get(URL, {"q": "neuro", "kind": "group"})
    assert response.json() == [
        {
            "kind": "group",
            "id": group.pk,
            "name": "Neuroradiology",
            "organization": "St. Elsewhere Hospital",
        }
    ]
    response = api_for(alice).get(URL, {"q": "radiology", "kind": "location"})
    assert [(r["kind"], r["id"]) for r in response.json()] == [("location", location.pk)]


def test_api_detailed_search(alice, bob):
    response = api_for(alice).get(URL, {"kind": "user", "physician_number": "1002"})
    assert [r["id"] for r in response.json()] == [bob.pk]


def test_api_refuses_bad_queries_naming_the_field(alice):
    assert "q" in api_for(alice).get(URL, {"q": "b"}).json()
    assert api_for(alice).get(URL, {"q": "b"}).status_code == 400
    assert "kind" in api_for(alice).get(URL, {"q": "bob", "kind": "share_code"}).json()


def test_api_hides_private_fields_and_closed_organizations(alice, bob, closed_org):
    bob.mobile = "+32470999888"
    bob.save()
    assert api_for(alice).get(URL, {"q": "0470999888"}).json() == []
    assert api_for(alice).get(URL, {"q": "hilde"}).json() == []
    body = api_for(alice).get(URL, {"q": "bob"}).content.decode()
    assert "+32470999888" not in body and "bob@example.org" not in body


def test_api_needs_a_logged_in_caller():
    assert HttpsAPIClient().get(URL, {"q": "bob"}).status_code in (401, 403)


def test_the_browser_session_reaches_the_api(alice, bob):
    """The dialog's script searches with the session's cookie."""
    client = HttpsClient()
    client.force_login(alice)
    response = client.get(URL, {"q": "bob"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert [r["id"] for r in response.json()] == [bob.pk]


def test_openapi_schema_documents_recipients_and_favorites(alice):
    client = HttpsClient()
    client.force_login(alice)
    schema = client.get(reverse("api-schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = schema.json()["paths"]
    assert {"get"} <= set(paths["/api/v1/recipients/"])
    assert {"get", "post"} <= set(paths["/api/v1/favorites/"])
    assert {"delete"} <= set(paths["/api/v1/favorites/{id}/"])
    parameters = {p["name"] for p in paths["/api/v1/recipients/"]["get"]["parameters"]}
    assert {"q", "kind"} <= parameters
