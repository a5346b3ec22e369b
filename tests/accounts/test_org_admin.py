"""An organization's administrator (dana) manages her own organization's users, memberships,
roles, locations and groups in the admin, and nothing of another organization: not in the
lists, not on an object's page, not in the choices, not by a crafted POST. Each change is
audited. An installation's superuser keeps seeing everything."""

import pytest
from django.urls import reverse

from accounts.models import Group, Location, Membership, Role, User
from audit.models import Action, AuditEvent
from tests.accounts.helpers import make_device, verified_login
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "Saffron-lantern-77"


@pytest.fixture
def dana_client(client, dana, dana_device):
    verified_login(client, dana, dana_device)
    return client


@pytest.fixture
def outsider(db):
    """A recipient who registered from an invitation: no organization at all."""
    return make_user("olga")


@pytest.fixture
def both(org, other_org, clinician_role):
    """A radiologist working for both organizations."""
    user = make_user("boris")
    Membership.objects.create(user=user, organization=org, role=clinician_role)
    Membership.objects.create(user=user, organization=other_org, role=clinician_role)
    return user


def add_colleague(client, organization, role, username="erin"):
    return client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": username,
            "first_name": "Erin",
            "last_name": "Example",
            "email": f"{username}@example.org",
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "organization": organization.pk,
            "role": role.pk,
        },
    )


def user_change_data(user, **changes):
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "mobile": "",
        "physician_number": user.physician_number,
        "language": user.language,
        "is_active": "on",
        "date_joined_0": "2025-01-06",
        "date_joined_1": "09:00:00",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    data.update(changes)
    return data


def test_the_user_list_holds_her_organizations_members_only(
    dana_client, alice, bob, carol, outsider, both
):
    page = dana_client.get(reverse("admin:accounts_user_changelist"))
    assert page.status_code == 200
    for name in ("alice", "bob", "boris"):
        assert f">{name}<" in page.text
    for name in ("carol", "olga"):
        assert f">{name}<" not in page.text
    # Another organization's member, or an outsider, is "no such object" to her.
    for user in (carol, outsider):
        response = dana_client.get(reverse("admin:accounts_user_change", args=[user.pk]))
        assert response.status_code == 302


def test_she_adds_a_colleague_with_a_role(dana_client, dana, org, clinician_role):
    form = dana_client.get(reverse("admin:accounts_user_add"))
    assert form.status_code == 200
    assert 'name="organization"' in form.text and 'name="role"' in form.text
    assert "Riverside Clinic" not in form.text

    response = add_colleague(dana_client, org, clinician_role)

    assert response.status_code == 302
    erin = User.objects.get(username="erin")
    assert erin.check_password(PASSWORD) and not erin.is_superuser
    membership = erin.memberships.get()
    assert (membership.organization, membership.role) == (org, clinician_role)
    event = AuditEvent.objects.get(action=Action.ACCOUNTS_CHANGED, target_type="user")
    assert (event.actor, event.organization_id, event.target_id) == (dana, org.pk, str(erin.pk))
    assert event.details["change"] == "added"
    # She goes on to the colleague's page, which she may edit.
    assert dana_client.get(response["Location"]).status_code == 200


def test_she_cannot_add_anyone_to_another_organization(dana_client, other_org, org):
    foreign_role = Role.objects.create(name="Riverside reader", organization=other_org)
    response = add_colleague(dana_client, other_org, foreign_role)
    assert response.status_code == 200  # the form again, with errors
    assert not User.objects.filter(username="erin").exists()
    response = add_colleague(dana_client, org, foreign_role)
    assert not User.objects.filter(username="erin").exists()


def test_she_edits_her_colleagues_but_not_superuser_status(dana_client, alice):
    page = dana_client.get(reverse("admin:accounts_user_change", args=[alice.pk]))
    assert page.status_code == 200
    assert 'name="is_superuser"' not in page.text
    assert 'name="user_permissions"' not in page.text
    response = dana_client.post(
        reverse("admin:accounts_user_change", args=[alice.pk]),
        user_change_data(alice, first_name="Alicia", is_superuser="on", is_staff="on"),
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.first_name == "Alicia" and alice.is_staff
    assert not alice.is_superuser
    assert AuditEvent.objects.filter(
        action=Action.ACCOUNTS_CHANGED, target_id=str(alice.pk), details__change="changed"
    ).exists()


def test_someone_who_also_belongs_elsewhere_is_seen_not_changed(dana_client, both):
    url = reverse("admin:accounts_user_change", args=[both.pk])
    assert dana_client.get(url).status_code == 200
    response = dana_client.post(url, user_change_data(both, email="taken@example.org"))
    assert response.status_code == 403
    password = dana_client.get(reverse("admin:auth_user_password_change", args=[both.pk]))
    assert password.status_code == 403
    both.refresh_from_db()
    assert both.email == "boris@example.org"


def test_she_never_changes_a_superuser(dana_client, org, clinician_role):
    root = make_user("root", is_superuser=True, is_staff=True)
    Membership.objects.create(user=root, organization=org, role=clinician_role)
    response = dana_client.post(
        reverse("admin:accounts_user_change", args=[root.pk]),
        user_change_data(root, email="mine@example.org"),
    )
    assert response.status_code == 403


def test_memberships_stay_in_her_organization(
    dana_client, alice, carol, org, other_org, admin_role, clinician_role
):
    listing = dana_client.get(reverse("admin:accounts_membership_changelist"))
    assert "Alice Tester" in listing.text and "Carol Tester" not in listing.text
    membership = alice.memberships.get()
    response = dana_client.post(
        reverse("admin:accounts_membership_change", args=[membership.pk]),
        {
            "user": alice.pk,
            "organization": org.pk,
            "role": admin_role.pk,
            "locations": [loc.pk for loc in membership.locations.all()],
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == admin_role
    # A crafted POST adding another organization's member (or moving one there) fails.
    for data in (
        {"user": carol.pk, "organization": org.pk, "role": clinician_role.pk},
        {"user": alice.pk, "organization": other_org.pk, "role": clinician_role.pk},
    ):
        response = dana_client.post(
            reverse("admin:accounts_membership_add"), {**data, "is_active": "on"}
        )
        assert response.status_code == 200  # the form again
    assert Membership.objects.filter(user=carol).count() == 1
    assert not Membership.objects.filter(user=alice, organization=other_org).exists()
    foreign = carol.memberships.get()
    assert (
        dana_client.get(reverse("admin:accounts_membership_change", args=[foreign.pk])).status_code
        == 302
    )


def test_roles_her_own_and_the_shared_ones(dana_client, org, other_org, clinician_role):
    own = Role.objects.create(name="Registrar", organization=org, permissions=["studies.view"])
    foreign = Role.objects.create(name="Riverside reader", organization=other_org)
    listing = dana_client.get(reverse("admin:accounts_role_changelist"))
    assert "Registrar" in listing.text and "Clinician" in listing.text
    assert "Riverside reader" not in listing.text

    # The shared role is read, not changed; another organization's is not there.
    shared_url = reverse("admin:accounts_role_change", args=[clinician_role.pk])
    assert dana_client.get(shared_url).status_code == 200
    assert dana_client.post(shared_url, {"name": "Mine", "permissions": []}).status_code == 403
    foreign_url = reverse("admin:accounts_role_change", args=[foreign.pk])
    assert dana_client.get(foreign_url).status_code == 302

    created = dana_client.post(
        reverse("admin:accounts_role_add"),
        {"name": "Secretary", "organization": org.pk, "permissions": ["studies.view"]},
    )
    assert created.status_code == 302
    assert Role.objects.get(name="Secretary").organization == org
    # A role for every organization, or for another one, is not hers to make.
    for organization in ("", other_org.pk):
        refused = dana_client.post(
            reverse("admin:accounts_role_add"),
            {"name": "Everyone", "organization": organization, "permissions": []},
        )
        assert refused.status_code == 200
    assert not Role.objects.filter(name="Everyone").exists()
    own.refresh_from_db()


def test_locations_and_groups_of_her_organization(dana_client, org, other_org, location):
    Location.objects.create(organization=other_org, name="Imaging")
    listing = dana_client.get(reverse("admin:accounts_location_changelist"))
    assert "Radiology" in listing.text and "Imaging" not in listing.text
    response = dana_client.post(
        reverse("admin:accounts_group_add"), {"name": "Tumour board", "organization": org.pk}
    )
    assert response.status_code == 302
    refused = dana_client.post(
        reverse("admin:accounts_group_add"), {"name": "Elsewhere", "organization": other_org.pk}
    )
    assert refused.status_code == 200
    assert list(Group.objects.filter(name__in=["Tumour board", "Elsewhere"])) == [
        Group.objects.get(name="Tumour board")
    ]
    # Deleting a location (and its worklist) stays with the installation's superusers.
    delete = dana_client.get(reverse("admin:accounts_location_delete", args=[location.pk]))
    assert delete.status_code == 403


def test_a_clinician_made_staff_manages_nothing(client, alice, carol):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    verified_login(client, alice, make_device(alice))
    for name in ("user", "membership", "role", "location", "group"):
        assert client.get(reverse(f"admin:accounts_{name}_changelist")).status_code == 403


def test_a_superuser_still_sees_everyone(client, alice, carol, outsider):
    root = make_user("root", is_superuser=True, is_staff=True)
    verified_login(client, root, make_device(root))
    page = client.get(reverse("admin:accounts_user_changelist"))
    for name in ("alice", "carol", "olga"):
        assert f">{name}<" in page.text
    assert (
        'name="is_superuser"'
        in client.get(reverse("admin:accounts_user_change", args=[alice.pk])).text
    )
