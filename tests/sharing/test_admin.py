"""Shares in the Django admin: dana (St. Elsewhere's administrator, two-factor verified) lists the
shares her organization sent, reads their terms (never editable), removes shares and unblocks
recipients blocked after five wrong SMS codes, all through the services, which audit."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, User
from audit.models import Action, AuditEvent
from sharing.models import Share, ShareRecipient
from studies.models import Entry
from tests.accounts.helpers import HttpsClient, make_device, plain_static_storage, verified_login
from tests.conftest import make_user
from tests.factories import make_study
from tests.sharing.conftest import share
from tests.sharing.test_two_factor import MOBILE, block

pytestmark = pytest.mark.django_db

SHARES = reverse("admin:sharing_share_changelist")
RECIPIENTS = reverse("admin:sharing_sharerecipient_changelist")


def share_page(made) -> str:
    return reverse("admin:sharing_share_change", args=[made.pk])


def recipient_page(recipient) -> str:
    return reverse("admin:sharing_sharerecipient_change", args=[recipient.pk])


def unblock_button(recipient) -> str:
    return reverse("admin:sharing_sharerecipient_unblock", args=[recipient.pk])


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def verified(settings):
    plain_static_storage(settings)

    def login(user) -> HttpsClient:
        client = HttpsClient()
        verified_login(client, user, make_device(user))
        return client

    return login


@pytest.fixture
def blocked(alice, bob, study):
    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    recipient = share(alice, study, ("user", bob.pk), two_factor=True).recipients.get()
    return block(recipient, bob)


@pytest.fixture
def riverside_share(carol, other_org):
    imaging = carol.memberships.get().locations.get()
    study = make_study(other_org, location=imaging, patient_id="R-1")
    made = share(carol, study, ("location", imaging.pk), two_factor=True)
    ShareRecipient.objects.filter(share=made).update(blocked_at=timezone.now(), code_failures=5)
    return made


@pytest.fixture
def riverside_admin(other_org, admin_role):
    user = make_user("rita", is_staff=True)
    Membership.objects.create(user=user, organization=other_org, role=admin_role)
    return user


# --- Reading -------------------------------------------------------------------------------------


def test_dana_lists_her_organizations_shares_only(dana, blocked, riverside_share, verified):
    response = verified(dana).get(SHARES)
    assert response.status_code == 200
    assert [s.pk for s in response.context["cl"].result_list] == [blocked.share_id]
    html = response.content.decode()
    assert "Alice Tester" in html and "St. Elsewhere Hospital" in html
    assert "Remove the selected shares" in html
    assert not re.search(r"\b(Doe|Jane)\b", html)  # the list never names the patient


def test_the_share_page_is_read_only_and_shows_the_blocked_recipient(dana, blocked, verified):
    client = verified(dana)
    page = client.get(share_page(blocked.share))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Second opinion" in html  # the reason, registered for administrators
    assert "User · Bob Tester" in html
    assert page.context["has_change_permission"] is False
    assert 'name="_save"' not in html
    # Nothing can be changed or added through the admin.
    assert client.post(share_page(blocked.share), {"reason": "Edited"}).status_code == 403
    assert client.get(reverse("admin:sharing_share_add")).status_code == 403
    assert Share.objects.get().reason == "Second opinion"

    recipient = client.get(recipient_page(blocked))
    assert recipient.status_code == 200
    assert unblock_button(blocked) in recipient.content.decode()


def test_the_service_desk_sees_every_share(blocked, riverside_share, verified):
    desk = User.objects.create_superuser("desk", "desk@example.org", "x")
    listed = verified(desk).get(SHARES).context["cl"].result_list
    assert {s.pk for s in listed} == {blocked.share_id, riverside_share.pk}


def test_staff_who_administer_nothing_see_no_shares(alice, blocked, verified):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    client = verified(alice)
    assert client.get(SHARES).status_code == 403
    assert client.get(RECIPIENTS).status_code == 403
    assert client.post(unblock_button(blocked)).status_code == 404  # not theirs: not found
    blocked.refresh_from_db()
    assert blocked.blocked_at is not None


# --- Removing ------------------------------------------------------------------------------------


def test_dana_removes_a_share_through_the_service(dana, blocked, study, verified):
    response = verified(dana).post(
        SHARES,
        {"action": "remove_selected", "_selected_action": [blocked.share_id]},
    )
    assert response.status_code == 302
    assert any("1 share removed" in m for m in messages_of(response))
    made = Share.objects.get()
    assert (made.removed_at is not None, made.removed_by) == (True, dana)
    assert not Entry.objects.filter(origin="share", removed_at__isnull=True).exists()
    event = AuditEvent.objects.get(action=Action.SHARE_REMOVED)
    assert (event.actor, event.study_uid) == (dana, study.study_uid)


def test_another_organizations_admin_cannot_remove_our_share(
    riverside_admin, blocked, riverside_share, verified
):
    client = verified(riverside_admin)
    client.post(SHARES, {"action": "remove_selected", "_selected_action": [blocked.share_id]})
    assert Share.objects.get(pk=blocked.share_id).removed_at is None
    assert client.get(share_page(blocked.share)).status_code != 200


# --- Unblocking ----------------------------------------------------------------------------------


def test_dana_unblocks_with_the_list_action(dana, blocked, study, verified):
    client = verified(dana)
    listed = client.get(f"{RECIPIENTS}?blocked=yes").context["cl"].result_list
    assert [r.pk for r in listed] == [blocked.pk]
    response = client.post(
        RECIPIENTS, {"action": "unblock_selected", "_selected_action": [blocked.pk]}
    )
    assert response.status_code == 302
    assert any("1 share recipient unblocked" in m for m in messages_of(response))
    blocked.refresh_from_db()
    assert (blocked.blocked_at, blocked.code_failures) == (None, 0)
    event = AuditEvent.objects.get(action=Action.SHARE_UNBLOCKED)
    assert (event.actor, event.study_uid) == (dana, study.study_uid)


def test_dana_unblocks_with_the_button(dana, blocked, verified):
    client = verified(dana)
    assert client.get(unblock_button(blocked)).status_code == 405
    response = client.post(unblock_button(blocked))
    assert response.status_code == 302 and response.url == recipient_page(blocked)
    blocked.refresh_from_db()
    assert blocked.blocked_at is None
    assert AuditEvent.objects.filter(action=Action.SHARE_UNBLOCKED).count() == 1
    # The button is gone once there is nothing to unblock.
    assert unblock_button(blocked) not in client.get(recipient_page(blocked)).content.decode()


def test_another_organizations_admin_cannot_unblock_ours(
    riverside_admin, blocked, riverside_share, verified
):
    client = verified(riverside_admin)
    listed = client.get(RECIPIENTS).context["cl"].result_list
    assert [r.share_id for r in listed] == [riverside_share.pk]
    client.post(RECIPIENTS, {"action": "unblock_selected", "_selected_action": [blocked.pk]})
    assert client.post(unblock_button(blocked)).status_code == 404
    blocked.refresh_from_db()
    assert blocked.blocked_at is not None
    assert not AuditEvent.objects.filter(action=Action.SHARE_UNBLOCKED).exists()
