"""Issue 11, point 2: the Shares page names patient and study, to those allowed to see them and
as they may see them (an anonymized share shows the pseudonym), and removing a share, which
ends a colleague's clinical access, asks first: a confirmation page that needs no script, and a
server that removes nothing unless the confirmation was posted."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.urls import reverse

from accounts.permissions import Perm
from audit.models import Action, AuditEvent
from sharing.models import Share
from studies.access import user_study_access
from studies.anonymize import pseudonym
from tests.accounts.helpers import HttpsClient, plain_static_storage, sign_in
from tests.sharing.conftest import member, share

pytestmark = pytest.mark.django_db

PAGE = reverse("sharing:shares")


@pytest.fixture(autouse=True)
def _plain_static(settings):
    plain_static_storage(settings)


def client_for(user) -> HttpsClient:
    """As far as the portal lets the user go (administrators past their two-factor code)."""
    return sign_in(HttpsClient(), user)


def text(response) -> str:
    return unescape(response.content.decode())


def remove_url(made) -> str:
    return reverse("sharing:remove", args=[made.pk])


# --- Patient and study -------------------------------------------------------------------------


def test_the_sender_sees_patient_and_study(alice, bob, study):
    share(alice, study, ("user", bob.pk))
    html = text(client_for(alice).get(PAGE))
    assert "Patients and studies" in html
    assert "Jane Doe" in html and "P-0001" in html
    assert "CT Chest · 17 May 2024" in html


def test_an_administrator_who_may_not_open_the_study_sees_no_patient(
    alice, bob, org, location, study
):
    """adam administers the organization but may not view its studies: he can still remove the
    share, and sees what it is by description and date only."""
    adam = member("adam", org, location, [Perm.ADMINISTER])
    made = share(alice, study, ("user", bob.pk))
    assert user_study_access(adam, study) is None
    html = text(client_for(adam).get(PAGE))
    assert remove_url(made) in html and "CT Chest · 17 May 2024" in html
    assert "Patient not shown" in html
    for secret in ("Jane", "Doe", "P-0001"):
        assert secret not in html


def test_a_share_of_an_anonymized_share_shows_the_pseudonym(alice, bob, carol, study):
    """bob holds the study through alice's anonymized share and shares it on: his Shares page
    never names the patient, neither does the confirmation."""
    share(alice, study, ("user", bob.pk), anonymize=True, allow_further_sharing=True)
    onward = share(bob, study, ("user", carol.pk))
    assert onward.anonymize
    client = client_for(bob)
    alias = pseudonym(study)
    for response in (client.get(PAGE), client.get(remove_url(onward))):
        html = text(response)
        assert alias.display_name in html and alias.patient_id in html and "Anonymized" in html
        for secret in ("Jane", "Doe", "P-0001"):
            assert secret not in html
    # alice, who shared it anonymized, sees whose study it is (the recipients do not).
    assert "Jane Doe" in text(client_for(alice).get(PAGE))


# --- Removal asks first --------------------------------------------------------------------------


def test_remove_on_the_list_is_a_link_to_the_question_not_a_form(alice, bob, study):
    made = share(alice, study, ("user", bob.pk))
    html = client_for(alice).get(PAGE).content.decode()
    assert f'<a class="button" href="{remove_url(made)}">' in html
    assert not re.search(rf'<form[^>]*action="{re.escape(remove_url(made))}"', html)


def test_the_question_says_what_ends_for_whom_and_removes_nothing(alice, bob, study):
    made = share(alice, study, ("user", bob.pk))
    page = client_for(alice).get(remove_url(made))
    html = text(page)
    assert page.status_code == 200
    assert "Remove this share?" in html
    assert "lose their access to these studies at once" in html
    assert "Bob Tester" in html and "Jane Doe" in html and "CT Chest" in html
    assert 'name="confirm" value="yes"' in html
    assert f'href="{PAGE}"' in html  # Keep the share
    assert user_study_access(bob, study) is not None
    assert not AuditEvent.objects.filter(action=Action.SHARE_REMOVED).exists()


def test_a_post_without_the_confirmation_removes_nothing(alice, bob, study):
    made = share(alice, study, ("user", bob.pk))
    client = client_for(alice)
    for body in ({}, {"confirm": "no"}, {"confirm": ""}):
        refused = client.post(remove_url(made), body)
        assert refused.status_code == 400
        assert "Remove this share?" in text(refused)
    made.refresh_from_db()
    assert made.removed_at is None
    assert user_study_access(bob, study) is not None
    assert not AuditEvent.objects.filter(action=Action.SHARE_REMOVED).exists()


def test_the_confirmed_post_removes_it_at_once(alice, bob, study):
    made = share(alice, study, ("user", bob.pk))
    client = client_for(alice)
    done = client.post(remove_url(made), {"confirm": "yes"}, follow=True)
    assert done.redirect_chain == [(PAGE, 302)]
    assert f"Share {made.pk} removed" in text(done)
    assert user_study_access(bob, study) is None
    assert Share.objects.get().removed_by == alice
    event = AuditEvent.objects.get(action=Action.SHARE_REMOVED)
    assert event.actor == alice
    # The question is not asked again for a removed share.
    again = client.get(remove_url(made), follow=True)
    assert "already been removed" in text(again)


def test_an_administrator_is_asked_too(alice, bob, dana, study):
    made = share(alice, study, ("user", bob.pk))
    client = client_for(dana)
    html = text(client.get(remove_url(made)))
    assert "by Alice Tester" in html and "Jane Doe" in html
    assert client.post(remove_url(made), {"confirm": "yes"}).status_code == 302
    assert user_study_access(bob, study) is None


# --- Audit ---------------------------------------------------------------------------------------


def test_pages_that_name_patients_are_audited_as_a_query(alice, bob, org, location, study):
    made = share(alice, study, ("user", bob.pk))
    client = client_for(alice)
    client.get(PAGE)
    client.get(remove_url(made))
    events = list(AuditEvent.objects.filter(action=Action.STUDIES_QUERIED).order_by("id"))
    assert [(e.actor, e.details) for e in events] == [
        (alice, {"via": "shares", "level": "studies", "keys": [], "rows": 1}),
        (alice, {"via": "shares", "level": "studies", "keys": [], "rows": 1}),
    ]
    # Nothing named, nothing to audit.
    adam = member("adam", org, location, [Perm.ADMINISTER])
    client_for(adam).get(PAGE)
    assert not AuditEvent.objects.filter(action=Action.STUDIES_QUERIED, actor=adam).exists()
