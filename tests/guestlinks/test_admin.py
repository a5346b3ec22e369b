"""Guest links in the Django admin: dana (St. Elsewhere's administrator, two-factor verified)
lists her organization's links, reads their options (never the token or the password hash) and
revokes links with a reason, by the list's action or a link's Revoke button."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from accounts.models import Membership, Role, User
from accounts.permissions import Perm
from audit.models import Action, AuditEvent
from guestlinks.models import GuestLink, LinkState
from guestlinks.selectors import LinkTarget
from guestlinks.services.creation import LinkOptions, create_link
from tests.accounts.helpers import HttpsClient, make_device, plain_static_storage, verified_login
from tests.conftest import make_user
from tests.factories import make_study

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:guestlinks_guestlink_changelist")


def change_url(link) -> str:
    return reverse("admin:guestlinks_guestlink_change", args=[link.pk])


def revoke_url(link) -> str:
    return reverse("admin:guestlinks_guestlink_revoke", args=[link.pk])


@pytest.fixture
def verified(settings):
    plain_static_storage(settings)

    def login(user) -> HttpsClient:
        client = HttpsClient()
        verified_login(client, user, make_device(user))
        return client

    return login


def send(user, study, **options):
    return create_link(
        sender=user,
        target=LinkTarget(study=study),
        options=LinkOptions(**options),
        acknowledged=True,
    )


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- The list and the detail ---------------------------------------------------------------------


@pytest.fixture
def riverside_link(carol, other_org):
    location = carol.memberships.get().locations.get()
    study = make_study(other_org, location=location, patient_id="R-1")
    return send(carol, study)


def test_dana_lists_her_organizations_links_only(dana, alice, study, riverside_link, verified):
    ours = send(alice, study, max_uses=2)
    response = verified(dana).get(CHANGELIST)
    assert response.status_code == 200
    listed = {link.pk for link in response.context["cl"].result_list}
    assert listed == {ours.link.pk}
    html = response.content.decode()
    assert "St. Elsewhere Hospital" in html
    assert "0 / 2" in html and "Active" in html
    assert "CT Chest · 17 May 2024" in html
    assert "Doe" not in html  # the list never names the patient
    assert "Revoke selected links" in html
    # Someone else's link is not there at all.
    assert verified(dana).get(change_url(riverside_link.link)).status_code == 302


def test_the_detail_shows_options_but_never_secrets(dana, alice, study, verified):
    created = send(alice, study, email="gp@example.org", password="Tulip-4711", max_uses=2)
    response = verified(dana).get(change_url(created.link))
    assert response.status_code == 200
    html = response.content.decode()
    assert "gp@example.org" in html
    assert "Set by the sender (stored hashed only)" in html
    link = GuestLink.objects.get()
    for secret in (created.token, link.token_digest, link.token_salt, link.password_hash):
        assert secret not in html
    assert "Tulip-4711" not in html
    assert 'name="_save"' not in html  # read-only
    assert revoke_url(link) in html
    title = html.split("<title>", 1)[1].split("</title>", 1)[0]
    assert f"Guest link {link.pk}" in title and "Doe" not in title


def test_nobody_adds_changes_or_deletes_links_here(dana, alice, study, verified):
    created = send(alice, study)
    client = verified(dana)
    assert client.get(reverse("admin:guestlinks_guestlink_add")).status_code == 403
    assert client.post(change_url(created.link), {"max_uses": 99}).status_code == 403
    delete = reverse("admin:guestlinks_guestlink_delete", args=[created.link.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert GuestLink.objects.get().max_uses is None


def test_clinicians_and_unverified_staff_stay_out(alice, dana, study, verified):
    send(alice, study)
    alice.is_staff = True
    alice.save()
    assert verified(alice).get(CHANGELIST).status_code == 403
    unverified = HttpsClient()
    unverified.force_login(dana)
    response = unverified.get(CHANGELIST)
    assert response.status_code == 302  # to the two-factor step, not the list


# --- Revoking ------------------------------------------------------------------------------------


def test_revoke_selected_links_asks_for_a_reason_then_revokes(dana, alice, study, guest, verified):
    first = send(alice, study, max_uses=5)
    second = send(alice, study)
    client = verified(dana)
    selected = {"action": "revoke_selected", "_selected_action": [first.link.pk, second.link.pk]}

    # The action first shows an intermediate page asking for the reason.
    response = client.post(CHANGELIST, {**selected, "index": 0})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Revoke these 2 guest links?" in html
    assert 'name="reason"' in html
    assert GuestLink.objects.filter(state=LinkState.ACTIVE).count() == 2

    # Without a reason nothing happens.
    response = client.post(CHANGELIST, {**selected, "post": "yes", "reason": " "})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert GuestLink.objects.filter(state=LinkState.ACTIVE).count() == 2

    response = client.post(
        CHANGELIST, {**selected, "post": "yes", "reason": "Sent to the wrong practice"}
    )
    assert response.status_code == 302
    assert GuestLink.objects.filter(state=LinkState.REVOKED).count() == 2
    assert any("2 guest links revoked" in message for message in messages_of(response))
    events = AuditEvent.objects.filter(action=Action.LINK_REVOKED)
    assert events.count() == 2
    assert {event.details["reason"] for event in events} == {"Sent to the wrong practice"}
    assert {event.actor_id for event in events} == {dana.pk}
    link = GuestLink.objects.get(pk=first.link.pk)
    assert link.end_reason == "Sent to the wrong practice" and link.ended_by == dana
    # The recipient's next request is refused.
    assert guest.get(reverse("guest:link", args=[first.token])).status_code == 404


def test_revoking_ended_links_again_changes_nothing(dana, alice, study, verified):
    created = send(alice, study)
    client = verified(dana)
    selected = {"action": "revoke_selected", "_selected_action": [created.link.pk]}
    client.post(CHANGELIST, {**selected, "post": "yes", "reason": "Incident 42"})
    response = client.post(CHANGELIST, {**selected, "post": "yes", "reason": "Again"})
    assert any("already ended" in message for message in messages_of(response))
    assert AuditEvent.objects.filter(action=Action.LINK_REVOKED).count() == 1
    assert GuestLink.objects.get().end_reason == "Incident 42"


def test_the_revoke_button_of_a_links_page(dana, alice, study, guest, verified):
    created = send(alice, study)
    client = verified(dana)
    response = client.get(revoke_url(created.link))
    assert response.status_code == 200
    assert "Revoke this guest link?" in response.content.decode()

    response = client.post(revoke_url(created.link), {"reason": ""})
    assert response.status_code == 200
    assert GuestLink.objects.get().state == LinkState.ACTIVE

    response = client.post(revoke_url(created.link), {"reason": "Patient withdrew consent"})
    assert response.status_code == 302 and response.url == change_url(created.link)
    link = GuestLink.objects.get()
    assert link.state == LinkState.REVOKED and link.end_reason == "Patient withdrew consent"
    assert guest.get(reverse("guest:link", args=[created.token])).status_code == 404
    # The page of an ended link offers no Revoke button.
    assert revoke_url(link) not in client.get(change_url(link)).content.decode()
    response = client.get(revoke_url(link))
    assert response.status_code == 302


def test_an_administrator_of_another_organization_cannot_revoke(alice, study, other_org, verified):
    role = Role.objects.create(name="Riverside admin", permissions=[Perm.REVOKE_ANY_LINK.value])
    oscar = make_user("oscar", is_staff=True)
    Membership.objects.create(user=oscar, organization=other_org, role=role)
    created = send(alice, study)
    client = verified(oscar)
    assert client.get(CHANGELIST).context["cl"].result_count == 0
    response = client.post(revoke_url(created.link), {"reason": "Not mine"})
    assert response.status_code in (302, 404)
    selected = {"action": "revoke_selected", "_selected_action": [created.link.pk]}
    client.post(CHANGELIST, {**selected, "post": "yes", "reason": "Not mine"})
    assert GuestLink.objects.get().state == LinkState.ACTIVE


def test_a_superuser_sees_and_revokes_every_link(alice, study, riverside_link, verified):
    root = User.objects.create_superuser("root", "root@example.org", "correct-horse-battery")
    ours = send(alice, study)
    client = verified(root)
    listed = {link.pk for link in client.get(CHANGELIST).context["cl"].result_list}
    assert listed == {ours.link.pk, riverside_link.link.pk}
    client.post(revoke_url(riverside_link.link), {"reason": "Security review"})
    assert GuestLink.objects.get(pk=riverside_link.link.pk).state == LinkState.REVOKED
