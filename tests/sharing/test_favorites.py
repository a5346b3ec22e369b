"""Favorites: the recipients a sender starred. A star in the Share dialog takes effect only once
the share is done (in its transaction); the REST API adds and removes them directly, for
recipients the sender could share with only."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from accounts.models import Group, Location, Membership, Organization
from accounts.permissions import Perm
from sharing.models import Favorite, Share
from sharing.selectors import favorites_of
from sharing.services.favorites import add_favorite, remove_favorite
from sharing.services.shares import Recipient, share_studies
from tests.accounts.helpers import HttpsAPIClient
from tests.conftest import make_user
from tests.sharing.conftest import member, options

pytestmark = pytest.mark.django_db

URL = "/api/v1/favorites/"


@pytest.fixture
def closed_org(clinician_role):
    closed = Organization.objects.create(name="Private Clinic", searchable=False)
    hilde = make_user("hilde", first_name="Hilde")
    Membership.objects.create(user=hilde, organization=closed, role=clinician_role)
    Group.objects.create(organization=closed, name="Private group")
    Location.objects.create(organization=closed, name="Private imaging")
    return closed


def starred_share(sender, study, recipients, star, **overrides):
    return share_studies(
        sender=sender,
        studies=[study],
        recipients=[Recipient(kind, value) for kind, value in recipients],
        options=options(**overrides),
        star=[Recipient(kind, value) for kind, value in star],
    )


# --- Stars in a share --------------------------------------------------------------------------


def test_starred_recipients_become_favorites_with_the_share(alice, bob, group, location, study):
    recipients = [("user", bob.pk), ("group", group.pk), ("location", location.pk)]
    starred_share(alice, study, recipients, star=[("user", bob.pk), ("group", group.pk)])
    assert {(f.kind, f.target) for f in Favorite.objects.filter(owner=alice)} == {
        ("user", bob),
        ("group", group),
    }


def test_starring_again_keeps_one_favorite(alice, bob, study):
    for _ in range(2):
        starred_share(alice, study, [("user", bob.pk)], star=[("user", bob.pk)])
    assert Favorite.objects.filter(owner=alice).count() == 1
    assert Share.objects.count() == 2


def test_a_refused_share_stars_nothing(alice, bob, study):
    with pytest.raises(ValidationError):
        starred_share(alice, study, [("user", bob.pk)], star=[("user", bob.pk)], reason="")
    assert not Favorite.objects.exists()


def test_only_recipients_of_the_share_can_be_starred(alice, bob, group, study):
    with pytest.raises(ValidationError) as excinfo:
        starred_share(alice, study, [("user", bob.pk)], star=[("group", group.pk)])
    assert "star" in excinfo.value.message_dict
    with pytest.raises(ValidationError):
        starred_share(
            alice,
            study,
            [("email", "gp@example.net")],
            star=[("email", "gp@example.net")],
        )
    assert not Share.objects.exists() and not Favorite.objects.exists()


# --- The service -------------------------------------------------------------------------------


def test_add_and_remove_a_favorite(alice, bob, group):
    favorite, created = add_favorite(owner=alice, kind="user", target_id=bob.pk)
    assert created and favorite.user == bob
    again, created = add_favorite(owner=alice, kind="user", target_id=bob.pk)
    assert again.pk == favorite.pk and not created
    add_favorite(owner=alice, kind="group", target_id=group.pk)
    assert [item.recipient.name for item in favorites_of(alice)] == ["Bob Tester", "Neuroradiology"]
    remove_favorite(owner=alice, favorite=favorite)
    assert [item.recipient.kind for item in favorites_of(alice)] == ["group"]


def test_only_recipients_the_sender_could_share_with(alice, closed_org):
    hilde = closed_org.memberships.get().user
    for kind, pk in (
        ("user", hilde.pk),
        ("group", closed_org.groups.get().pk),
        ("location", closed_org.locations.get().pk),
        ("user", 999_999),
    ):
        with pytest.raises(ValidationError):
            add_favorite(owner=alice, kind=kind, target_id=pk)
    with pytest.raises(ValidationError):
        add_favorite(owner=alice, kind="email", target_id=1)
    assert not Favorite.objects.exists()


def test_a_kind_the_senders_role_cannot_share_with_is_refused(org, location, group):
    users_only = member(
        "uma", org, location, [Perm.VIEW_STUDIES, Perm.SHARE_STUDY, Perm.SHARE_USERS]
    )
    with pytest.raises(PermissionDenied):
        add_favorite(owner=users_only, kind="group", target_id=group.pk)


def test_someone_elses_favorite_cannot_be_removed(alice, bob, dana):
    favorite, _created = add_favorite(owner=alice, kind="user", target_id=bob.pk)
    with pytest.raises(PermissionDenied):
        remove_favorite(owner=dana, favorite=favorite)
    assert Favorite.objects.filter(pk=favorite.pk).exists()


def test_a_favorite_no_longer_reachable_is_not_listed(alice, carol, other_org):
    add_favorite(owner=alice, kind="user", target_id=carol.pk)
    other_org.searchable = False
    other_org.save()
    assert favorites_of(alice) == []


# --- The API -----------------------------------------------------------------------------------


def api_for(user) -> HttpsAPIClient:
    client = HttpsAPIClient()
    client.force_authenticate(user)
    return client


def test_api_post_list_and_delete(alice, bob, location):
    client = api_for(alice)
    response = client.post(URL, {"user": bob.pk}, format="json")
    assert response.status_code == 201
    data = response.json()
    assert data["kind"] == "user"
    assert data["recipient"] == {
        "kind": "user",
        "id": bob.pk,
        "name": "Bob Tester",
        "organization": "St. Elsewhere Hospital",
        "physician_number": "RIZIV-1002",
    }
    assert client.post(URL, {"user": bob.pk}, format="json").status_code == 200
    assert client.post(URL, {"location": location.pk}, format="json").status_code == 201

    listed = client.get(URL).json()
    assert [(item["kind"], item["recipient"]["id"]) for item in listed] == [
        ("user", bob.pk),
        ("location", location.pk),
    ]

    assert client.delete(f"{URL}{data['id']}/").status_code == 204
    assert [item["kind"] for item in client.get(URL).json()] == ["location"]


def test_api_refuses_bad_bodies_and_unreachable_recipients(alice, bob, group, closed_org):
    client = api_for(alice)
    for body in ({}, {"user": bob.pk, "group": group.pk}, {"email": "x@example.org"}):
        assert client.post(URL, body, format="json").status_code == 400, body
    hilde = closed_org.memberships.get().user
    response = client.post(URL, {"user": hilde.pk}, format="json")
    assert response.status_code == 400
    assert "user" in response.json()
    assert not Favorite.objects.exists()


def test_api_refuses_a_kind_the_role_cannot_share_with(org, location, group):
    users_only = member(
        "uma", org, location, [Perm.VIEW_STUDIES, Perm.SHARE_STUDY, Perm.SHARE_USERS]
    )
    assert api_for(users_only).post(URL, {"group": group.pk}, format="json").status_code == 403


def test_api_someone_elses_favorite_answers_404(alice, bob, dana):
    favorite, _created = add_favorite(owner=alice, kind="user", target_id=bob.pk)
    assert api_for(dana).delete(f"{URL}{favorite.pk}/").status_code == 404
    assert api_for(dana).get(URL).json() == []
    assert api_for(alice).delete(f"{URL}999999/").status_code == 404
    assert Favorite.objects.filter(pk=favorite.pk).exists()


def test_api_needs_a_logged_in_caller():
    assert HttpsAPIClient().get(URL).status_code in (401, 403)
