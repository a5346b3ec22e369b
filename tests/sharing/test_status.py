"""The organization administrators' "Blocked shares" page: dana (St. Elsewhere's administrator)
sees the shares her organization sent whose recipient was blocked after five wrong SMS codes,
and unblocks them; clinicians and the administrators of other organizations cannot."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership
from audit.models import Action, AuditEvent
from sharing.models import ShareRecipient
from tests.accounts.helpers import HttpsClient, plain_static_storage, sign_in
from tests.conftest import make_user
from tests.factories import make_study
from tests.sharing.conftest import share
from tests.sharing.test_two_factor import MOBILE, block

pytestmark = pytest.mark.django_db

PAGE = reverse("sharing:blocked_shares")


def unblock_url(recipient) -> str:
    return reverse("sharing:unblock", args=[recipient.pk])


@pytest.fixture(autouse=True)
def _plain_static(settings):
    plain_static_storage(settings)


def logged_in(user, **kwargs) -> HttpsClient:
    client = HttpsClient(**kwargs)
    return sign_in(client, user)


@pytest.fixture
def blocked(alice, bob, study):
    """alice's two-factor share with bob, blocked after five wrong codes."""
    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    recipient = share(alice, study, ("user", bob.pk), two_factor=True).recipients.get()
    return block(recipient, bob)


@pytest.fixture
def riverside_blocked(carol, other_org):
    """A blocked share sent by Riverside Clinic (carol's organization)."""
    imaging = carol.memberships.get().locations.get()
    study = make_study(other_org, location=imaging, patient_id="R-1", family_name="Muller")
    recipient = share(carol, study, ("location", imaging.pk), two_factor=True).recipients.get()
    ShareRecipient.objects.filter(pk=recipient.pk).update(
        blocked_at=timezone.now(), code_failures=5
    )
    return recipient


@pytest.fixture
def riverside_admin(other_org, admin_role):
    user = make_user("rita")
    Membership.objects.create(user=user, organization=other_org, role=admin_role)
    return user


def test_dana_sees_the_blocked_shares_her_organization_sent(
    dana, blocked, riverside_blocked, alice, bob, study
):
    dana.mobile = MOBILE
    dana.save(update_fields=["mobile"])
    unblocked = share(alice, study, ("user", dana.pk), two_factor=True).recipients.get()
    response = logged_in(dana).get(PAGE)

    assert response.status_code == 200
    listed = [row["recipient"].pk for row in response.context["rows"]]
    assert listed == [blocked.pk]
    assert unblocked.pk not in listed and riverside_blocked.pk not in listed
    html = response.content.decode()
    assert "Bob Tester" in html and "Alice Tester" in html
    assert "CT Chest · 17 May 2024" in html
    # Never the patient (words only: a CSRF token may hold any letters).
    assert not re.search(r"\b(Doe|Jane|P-0001)\b", html)
    assert unblock_url(blocked) in html


def test_dana_unblocks_and_it_is_audited(dana, blocked, study):
    client = logged_in(dana)
    response = client.post(unblock_url(blocked))

    assert response.status_code == 302 and response.url == PAGE
    assert any("unblocked for Bob Tester" in str(m) for m in get_messages(response.wsgi_request))
    blocked.refresh_from_db()
    assert (blocked.blocked_at, blocked.code_failures) == (None, 0)
    event = AuditEvent.objects.get(action=Action.SHARE_UNBLOCKED)
    assert (event.actor, event.study_uid, event.details["recipient"]) == (
        dana,
        study.study_uid,
        blocked.pk,
    )
    assert client.get(PAGE).context["rows"] == []
    # Twice is harmless: nothing more happens, nothing more is audited.
    again = client.post(unblock_url(blocked))
    assert again.status_code == 302
    assert AuditEvent.objects.filter(action=Action.SHARE_UNBLOCKED).count() == 1


def test_a_clinician_may_not_use_the_page(alice, bob, blocked):
    for user in (alice, bob):
        client = logged_in(user)
        assert client.get(PAGE).status_code == 403
        assert client.post(unblock_url(blocked)).status_code == 404
    blocked.refresh_from_db()
    assert blocked.blocked_at is not None
    assert not AuditEvent.objects.filter(action=Action.SHARE_UNBLOCKED).exists()


def test_another_organizations_administrator_cannot_unblock_ours(
    riverside_admin, blocked, riverside_blocked
):
    client = logged_in(riverside_admin)
    page = client.get(PAGE)
    assert [row["recipient"].pk for row in page.context["rows"]] == [riverside_blocked.pk]
    assert client.post(unblock_url(blocked)).status_code == 404
    blocked.refresh_from_db()
    assert blocked.blocked_at is not None
    assert not AuditEvent.objects.filter(action=Action.SHARE_UNBLOCKED).exists()


def test_unblocking_is_a_post_with_csrf(dana, blocked):
    assert logged_in(dana).get(unblock_url(blocked)).status_code == 405
    strict = logged_in(dana, enforce_csrf_checks=True)
    assert strict.post(unblock_url(blocked)).status_code == 403
    blocked.refresh_from_db()
    assert blocked.blocked_at is not None


def test_logged_out_visitors_go_to_the_login_page(blocked):
    response = HttpsClient().get(PAGE)
    assert response.status_code == 302 and reverse("accounts:login") in response.url


def test_the_navigation_links_the_page_for_administrators_only(dana, alice):
    directory = reverse("studies:directory")
    assert PAGE in logged_in(dana).get(directory).content.decode()
    assert PAGE not in logged_in(alice).get(directory).content.decode()
