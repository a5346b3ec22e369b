"""The Shares page: a sender's shares (and an administrator's organization's), each removable
at once; nobody else's."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from audit.models import Action, AuditEvent
from studies.access import user_study_access
from tests.accounts.helpers import HttpsClient, plain_static_storage, sign_in
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db
PAGE = reverse("sharing:shares")


@pytest.fixture(autouse=True)
def _plain_static(settings):
    plain_static_storage(settings)


def logged_in(user) -> HttpsClient:
    client = HttpsClient()
    return sign_in(client, user)


def remove_url(made) -> str:
    return reverse("sharing:remove", args=[made.pk])


def test_the_sender_sees_the_share_and_removes_it_at_once(alice, bob, study):
    made = share(alice, study, ("user", bob.pk), message="Please look")
    client = logged_in(alice)
    page = client.get(PAGE)
    html = page.content.decode()
    assert page.status_code == 200
    assert "Bob Tester" in html and study.description in html and "Running" in html
    assert reverse("sharing:shares") in html  # the navigation link
    # The sender may see the study: its patient is named (issue 11).
    assert "Jane Doe" in html and study.patient.patient_id in html
    assert user_study_access(bob, study) is not None

    removed = client.post(remove_url(made), {"confirm": "yes"})
    assert removed.status_code == 302 and removed.url == PAGE
    assert user_study_access(bob, study) is None
    assert AuditEvent.objects.filter(action=Action.SHARE_REMOVED, actor=alice).count() == 1
    after = client.get(PAGE).content.decode()
    assert "Removed" in after and remove_url(made) not in after
    # A second removal changes nothing and says so.
    again = client.post(remove_url(made), {"confirm": "yes"}, follow=True)
    assert "already been removed" in again.content.decode()
    assert AuditEvent.objects.filter(action=Action.SHARE_REMOVED).count() == 1


def test_an_administrator_of_the_organization_removes_a_colleagues_share(alice, bob, dana, study):
    made = share(alice, study, ("user", bob.pk))
    client = logged_in(dana)
    assert "by Alice Tester" in client.get(PAGE).content.decode()
    assert client.post(remove_url(made), {"confirm": "yes"}).status_code == 302
    assert user_study_access(bob, study) is None


def test_others_neither_see_nor_remove_the_share(alice, bob, carol, study):
    made = share(alice, study, ("user", bob.pk))
    for outsider in (bob, carol):
        client = logged_in(outsider)
        assert remove_url(made) not in client.get(PAGE).content.decode()
        assert client.post(remove_url(made), {"confirm": "yes"}).status_code == 404
        assert client.get(remove_url(made)).status_code == 404
    assert user_study_access(bob, study) is not None
    assert not AuditEvent.objects.filter(action=Action.SHARE_REMOVED).exists()


def test_an_expired_share_shows_as_expired_without_remove(alice, bob, study):
    with time_machine.travel(timezone.now() - timedelta(days=10)):
        made = share(alice, study, ("user", bob.pk), valid_until=timezone.localdate())
    html = logged_in(alice).get(PAGE).content.decode()
    assert "Expired" in html and remove_url(made) not in html


def test_older_shares_are_on_the_next_page(alice, bob, study, monkeypatch):
    monkeypatch.setattr("sharing.views.sent.PAGE_SIZE", 2)
    made = [share(alice, study, ("user", bob.pk)) for _ in range(3)]
    client = logged_in(alice)
    first = client.get(PAGE).content.decode()
    assert remove_url(made[2]) in first and remove_url(made[1]) in first
    assert remove_url(made[0]) not in first
    second = client.get(PAGE, {"before": made[1].pk}).content.decode()
    assert remove_url(made[0]) in second and remove_url(made[1]) not in second
