"""Changing one's password: the current one is checked (behind the throttle), this session
stays, the others end."""

import pytest
from django.urls import reverse

from accounts.models import User
from audit.models import Action, AuditEvent
from tests.accounts.helpers import PASSWORD, HttpsClient

pytestmark = pytest.mark.django_db

CHANGE = reverse("accounts:password_change")
NEW = "Tulips-in-the-rain-2025"


def change(client, old=PASSWORD, new=NEW, again=None):
    return client.post(
        CHANGE, {"old_password": old, "new_password1": new, "new_password2": again or new}
    )


def test_alice_changes_her_password_and_stays_logged_in(client, alice):
    client.post(reverse("accounts:login"), {"username": "alice", "password": PASSWORD})
    elsewhere = HttpsClient()
    elsewhere.post(reverse("accounts:login"), {"username": "alice", "password": PASSWORD})

    response = change(client)

    assert response.status_code == 302
    assert response.url == reverse("accounts:password_change_done")
    alice.refresh_from_db()
    assert alice.check_password(NEW)
    assert client.get(response.url).status_code == 200
    assert client.get(CHANGE).status_code == 200, "this session stays logged in"
    assert elsewhere.get(CHANGE).status_code == 302, "other sessions end"
    event = AuditEvent.objects.get(action=Action.PASSWORD_CHANGED)
    assert event.actor == alice
    assert NEW not in str(event.details) and PASSWORD not in str(event.details)


def test_a_wrong_current_password_changes_nothing_and_counts_as_a_guess(client, alice):
    client.force_login(alice)

    response = change(client, old="not-her-password")

    assert response.status_code == 200
    assert "Your current password is not right." in response.text
    assert User.objects.get(pk=alice.pk).check_password(PASSWORD)
    failed = AuditEvent.objects.get(action=Action.LOGIN_FAILED)
    assert failed.details == {"username": "alice", "step": "password change"}
    assert not AuditEvent.objects.filter(action=Action.PASSWORD_CHANGED).exists()


def test_a_hijacked_session_cannot_guess_the_password_for_long(client, alice):
    client.force_login(alice)
    for n in range(5):
        change(client, old=f"guess-{n}")

    response = change(client)

    assert response.status_code == 429
    assert User.objects.get(pk=alice.pk).check_password(PASSWORD)


@pytest.mark.parametrize(
    ("new", "again", "message"),
    [
        ("short", "short", "too short"),
        ("password123", "password123", "too common"),
        (NEW, NEW + "x", "The two new passwords differ."),
        (PASSWORD, PASSWORD, "must differ from the current one"),
    ],
)
def test_a_weak_or_mistyped_new_password_is_refused(client, alice, new, again, message):
    client.force_login(alice)

    response = change(client, new=new, again=again)

    assert response.status_code == 200
    assert message in response.text
    assert User.objects.get(pk=alice.pk).check_password(PASSWORD)
    assert not AuditEvent.objects.filter(action=Action.PASSWORD_CHANGED).exists()


def test_anonymous_visitors_are_sent_to_login(client, db):
    response = client.get(CHANGE)

    assert response.status_code == 302
    assert response.url == f"{reverse('accounts:login')}?next={CHANGE}"
