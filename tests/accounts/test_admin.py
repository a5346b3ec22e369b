"""The Django admin: only staff verified by a one-time code get in, through the portal's login;
and the editors for users, organizations, roles, memberships and API tokens."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group as AuthGroup
from django.urls import reverse

from accounts.admin import MembershipForm, UserChangeForm
from accounts.models import ApiToken, Location, Membership, Role, User
from accounts.permissions import Perm
from audit.models import Action, AuditEvent
from tests.accounts.helpers import PASSWORD, code_for, make_device, verified_login
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

ADMIN = reverse("admin:index")


@pytest.fixture
def root(db):
    return make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def root_client(client, root):
    verified_login(client, root, make_device(root))
    return client


# --- Getting in -----------------------------------------------------------------------------


def test_staff_with_a_device_logs_in_through_the_portal_and_reaches_the_admin(
    client, dana, dana_device
):
    response = client.get(ADMIN, follow=True)
    assert response.redirect_chain[-1][0] == f"{reverse('accounts:login')}?next={ADMIN}"

    client.post(
        reverse("accounts:login"), {"username": "dana", "password": PASSWORD, "next": ADMIN}
    )
    response = client.post(
        reverse("accounts:two_factor_verify"), {"otp_token": code_for(dana_device)}
    )
    assert response.url == ADMIN

    index = client.get(ADMIN)
    assert index.status_code == 200
    assert "Site administration" in index.text or "administration" in index.text
    assert AuditEvent.objects.get(action=Action.LOGIN).details == {"two_factor": True}


def test_staff_logged_in_without_a_code_does_not_reach_the_admin(client, dana, dana_device):
    client.force_login(dana)  # a session that never passed the code step

    response = client.get(ADMIN, follow=True)

    assert response.redirect_chain[-1][0] == (
        f"{reverse('accounts:two_factor_verify')}?next=%2Fadmin%2F"
    )
    assert "Enter your code" in response.text

    response = client.post(
        reverse("accounts:two_factor_verify"), {"otp_token": code_for(dana_device), "next": ADMIN}
    )
    assert response.url == ADMIN
    assert client.get(ADMIN).status_code == 200
    event = AuditEvent.objects.get(action=Action.LOGIN)
    assert event.details == {"two_factor": True, "step": "session verification"}


def test_staff_without_a_device_is_sent_to_set_one_up_and_told_why(client, dana):
    client.force_login(dana)

    response = client.get(ADMIN, follow=True)

    assert response.redirect_chain[-1][0] == f"{reverse('accounts:two_factor')}?next=%2Fadmin%2F"
    assert "requires two-factor authentication" in response.text
    assert client.get(ADMIN).status_code == 302


def test_staff_who_sets_up_a_device_goes_on_to_the_admin(client, dana):
    client.force_login(dana)
    client.get(ADMIN, follow=True)
    key = client.session["accounts_totp_enrolment"]

    response = client.post(
        reverse("accounts:two_factor"), {"otp_token": code_for(key), "next": ADMIN}
    )

    assert response.url == ADMIN
    assert client.get(ADMIN).status_code == 200


def test_a_clinician_is_not_allowed_in_the_admin(client, alice, alice_device):
    verified_login(client, alice, alice_device)

    response = client.get(ADMIN, follow=True)

    assert response.status_code == 403
    assert "Not allowed" in response.text


def test_admin_logout_is_a_post_that_goes_through_the_portal(root_client, root):
    assert root_client.get(reverse("admin:logout")).status_code == 405

    response = root_client.post(reverse("admin:logout"))

    assert response.url == reverse("accounts:login")
    assert root_client.get(ADMIN).status_code == 302
    assert AuditEvent.objects.get(action=Action.LOGOUT).actor == root


def test_djangos_own_groups_are_not_in_the_admin(db):
    assert not admin.site.is_registered(AuthGroup)
    assert admin.site.is_registered(User)


# --- Users ----------------------------------------------------------------------------------


def user_form_data(user, **changes):
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "mobile": "",
        "physician_number": user.physician_number,
        "language": user.language,
        "is_active": "on",
        "date_joined": "2025-01-06 09:00:00",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("0470 12 34 56", "+32470123456"), ("+31 6 12345678", "+31612345678")],
)
def test_user_form_stores_mobile_numbers_in_e164(alice, typed, stored):
    form = UserChangeForm(data=user_form_data(alice, mobile=typed), instance=alice)

    assert form.is_valid(), form.errors
    form.save()
    assert User.objects.get(pk=alice.pk).mobile == stored


def test_user_form_refuses_a_number_that_is_not_one(alice):
    form = UserChangeForm(data=user_form_data(alice, mobile="12"), instance=alice)

    assert not form.is_valid()
    assert "mobile" in form.errors


def test_user_admin_edits_our_fields_and_memberships(root_client, alice):
    page = root_client.get(reverse("admin:accounts_user_change", args=[alice.pk]))

    assert page.status_code == 200
    for field in ("mobile", "physician_number", "language", "mobile_public", "email_public"):
        assert f'name="{field}"' in page.text
    assert 'name="memberships-0-organization"' in page.text
    assert admin.site._registry[User].form is UserChangeForm


def test_user_list_shows_who_has_two_factor(root_client, alice, alice_device, bob):
    page = root_client.get(reverse("admin:accounts_user_changelist"))

    assert page.status_code == 200
    assert "two-factor" in page.text.lower()


def test_an_administrator_creates_a_user_with_a_membership(
    root_client, org, clinician_role, location
):
    response = root_client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "erin",
            "first_name": "Erin",
            "last_name": "Example",
            "email": "erin@example.org",
            "usable_password": "true",
            "password1": "Saffron-lantern-77",
            "password2": "Saffron-lantern-77",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-organization": org.pk,
            "memberships-0-role": clinician_role.pk,
            "memberships-0-locations": [location.pk],
            "memberships-0-is_active": "on",
        },
    )

    assert response.status_code == 302
    erin = User.objects.get(username="erin")
    assert erin.check_password("Saffron-lantern-77")
    membership = erin.memberships.get()
    assert (membership.organization, membership.role) == (org, clinician_role)
    assert list(membership.locations.all()) == [location]


# --- Organizations, roles, memberships ------------------------------------------------------


def test_organization_page_groups_the_sharing_policy(root_client, org):
    page = root_client.get(reverse("admin:accounts_organization_change", args=[org.pk]))

    assert page.status_code == 200
    for heading in ("Share options", "Link options", "Validity"):
        assert heading in page.text
    assert 'name="allow_link_birth_date_password"' in page.text
    assert 'name="max_share_validity_days"' in page.text


def test_role_editor_shows_each_permission_by_its_label(root_client):
    page = root_client.get(reverse("admin:accounts_role_add"))

    assert page.status_code == 200
    for perm in Perm:
        assert str(perm.label) in page.text
        assert f'value="{perm.value}"' in page.text
    assert page.text.count('type="checkbox" name="permissions"') == len(Perm)


def test_role_editor_stores_the_codes_in_a_stable_order(root_client):
    response = root_client.post(
        reverse("admin:accounts_role_add"),
        {
            "name": "Reader",
            "organization": "",
            "permissions": [Perm.SHARE_STUDY.value, Perm.VIEW_STUDIES.value],
        },
    )

    assert response.status_code == 302
    role = Role.objects.get(name="Reader")
    assert role.permissions == [Perm.VIEW_STUDIES.value, Perm.SHARE_STUDY.value]


def test_role_editor_refuses_an_unknown_permission(root_client):
    response = root_client.post(
        reverse("admin:accounts_role_add"),
        {"name": "Sneaky", "organization": "", "permissions": ["everything"]},
    )

    assert response.status_code == 200
    assert not Role.objects.filter(name="Sneaky").exists()


def test_membership_offers_only_its_organizations_locations(alice, carol, location):
    membership = Membership.objects.get(user=alice)

    form = MembershipForm(instance=membership)

    assert list(form.fields["locations"].queryset) == [location]


def test_membership_refuses_a_location_of_another_organization(alice, other_org, clinician_role):
    membership = Membership.objects.get(user=alice)
    elsewhere = Location.objects.create(organization=other_org, name="Elsewhere")

    form = MembershipForm(
        data={
            "organization": membership.organization_id,
            "role": clinician_role.pk,
            "locations": [elsewhere.pk],
            "is_active": "on",
        },
        instance=membership,
    )

    assert not form.is_valid()
    assert "locations" in form.errors


def test_membership_admin_page_works(root_client, alice):
    membership = Membership.objects.get(user=alice)

    page = root_client.get(reverse("admin:accounts_membership_change", args=[membership.pk]))

    assert page.status_code == 200
    assert 'name="locations"' in page.text and 'name="groups"' in page.text


# --- API tokens -----------------------------------------------------------------------------


@pytest.fixture
def alice_token(alice):
    return ApiToken.objects.create(user=alice, digest="d" * 64, prefix="AbCdEfGh")


def test_api_tokens_are_listed_without_any_secret(root_client, alice_token):
    listing = root_client.get(reverse("admin:accounts_apitoken_changelist"))
    detail = root_client.get(reverse("admin:accounts_apitoken_change", args=[alice_token.pk]))

    assert listing.status_code == detail.status_code == 200
    assert "AbCdEfGh…" in listing.text
    assert "d" * 64 not in listing.text and "d" * 64 not in detail.text
    assert 'name="digest"' not in detail.text and 'name="prefix"' not in detail.text


def test_api_tokens_cannot_be_made_or_edited_in_the_admin(root_client, alice_token):
    assert root_client.get(reverse("admin:accounts_apitoken_add")).status_code == 403

    root_client.post(
        reverse("admin:accounts_apitoken_change", args=[alice_token.pk]), {"prefix": "x"}
    )

    alice_token.refresh_from_db()
    assert alice_token.prefix == "AbCdEfGh"


def test_an_administrator_deletes_a_token(root_client, alice_token):
    response = root_client.post(
        reverse("admin:accounts_apitoken_delete", args=[alice_token.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not ApiToken.objects.filter(pk=alice_token.pk).exists()


# --- An organization's administrator --------------------------------------------------------


@pytest.fixture
def dana_client(client, dana, dana_device):
    verified_login(client, dana, dana_device)
    return client


def policy_form(org, **changes):
    """The change form as an organization's administrator posts it (name and kind are
    read-only for them)."""
    data = {}
    for field in org._meta.concrete_fields:
        value = getattr(org, field.name)
        if field.name in ("id", "name", "kind") or value is False or value is None:
            continue  # unchecked boxes and empty fields are simply not posted
        data[field.name] = "on" if value is True else str(value)
    for prefix in ("locations", "groups"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    data.update(changes)
    return data


def test_dana_sets_her_organizations_sharing_policy(dana_client, org):
    url = reverse("admin:accounts_organization_change", args=[org.pk])
    page = dana_client.get(url)
    assert page.status_code == 200
    assert 'name="name"' not in page.text, "an organization may not rename itself"

    data = policy_form(org, max_share_validity_days="90")
    del data["allow_link_birth_date_password"]
    response = dana_client.post(url, data)

    assert response.status_code == 302
    org.refresh_from_db()
    assert org.max_share_validity_days == 90
    assert org.allow_link_birth_date_password is False
    assert org.name == "St. Elsewhere Hospital"


def test_dana_sees_only_her_own_organization(dana_client, org, other_org):
    listing = dana_client.get(reverse("admin:accounts_organization_changelist"))
    other = dana_client.get(reverse("admin:accounts_organization_change", args=[other_org.pk]))

    assert "St. Elsewhere Hospital" in listing.text
    assert "Riverside Clinic" not in listing.text
    assert other.status_code == 302  # the admin's "no such object" answer
    assert dana_client.get(reverse("admin:accounts_organization_add")).status_code == 403
    # Her organization's users and roles are hers to manage (tests/accounts/test_org_admin.py).


def test_a_clinician_made_staff_does_not_get_the_policy(client, alice, alice_device, org):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    verified_login(client, alice, alice_device)

    response = client.get(reverse("admin:accounts_organization_change", args=[org.pk]))

    assert response.status_code == 403


def test_an_administrator_setting_a_password_is_audited(root_client, root, alice):
    response = root_client.post(
        reverse("admin:auth_user_password_change", args=[alice.pk]),
        {
            "usable_password": "true",
            "password1": "Quiet-harbour-81",
            "password2": "Quiet-harbour-81",
        },
    )

    assert response.status_code == 302
    assert User.objects.get(pk=alice.pk).check_password("Quiet-harbour-81")
    event = AuditEvent.objects.get(action=Action.PASSWORD_CHANGED)
    assert (event.actor, event.target_type, event.target_id) == (root, "user", str(alice.pk))


def test_the_admins_own_password_page_is_the_portals(root_client):
    response = root_client.get(reverse("admin:password_change"))

    assert response.status_code == 302
    assert response.url == reverse("accounts:password_change")


def test_a_policy_change_is_in_the_audit_trail_with_its_new_values(dana_client, dana, org):
    url = reverse("admin:accounts_organization_change", args=[org.pk])
    data = policy_form(org, max_share_validity_days="90")
    del data["allow_link_password"]

    dana_client.post(url, data)

    event = AuditEvent.objects.get(action=Action.POLICY_CHANGED)
    assert event.actor == dana
    assert event.organization_id == org.pk
    assert event.event_type_code == "110129"
    assert {"field": "max_share_validity_days", "value": 90} in event.details["changes"]
    assert {"field": "allow_link_password", "value": False} in event.details["changes"]


def test_saving_an_unchanged_policy_records_nothing(dana_client, org):
    dana_client.post(reverse("admin:accounts_organization_change", args=[org.pk]), policy_form(org))

    assert not AuditEvent.objects.filter(action=Action.POLICY_CHANGED).exists()


def test_deleting_a_token_in_the_admin_is_an_audited_revocation(root_client, root, alice_token):
    root_client.post(
        reverse("admin:accounts_apitoken_delete", args=[alice_token.pk]), {"post": "yes"}
    )

    event = AuditEvent.objects.get(action=Action.TOKEN_REVOKED)
    assert event.actor == root
    assert event.details == {"owner": "alice", "prefix": alice_token.prefix}
    assert not ApiToken.objects.filter(pk=alice_token.pk).exists()
