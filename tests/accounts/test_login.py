"""Logging in with a password, logging out, and the demo accounts box."""

import json
from unittest import mock

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.contrib.sessions.models import Session
from django.urls import reverse

from accounts.models import User
from audit.models import Action, AuditEvent, Outcome
from tests.accounts.helpers import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = reverse("accounts:login")


def log_in(client, username, password=PASSWORD, **extra):
    return client.post(LOGIN, {"username": username, "password": password, **extra})


def test_alice_logs_in_and_lands_on_the_directory(client, alice):
    response = log_in(client, "alice")

    assert response.status_code == 302
    assert response.url == reverse("studies:directory")
    assert client.session["_auth_user_id"] == str(alice.pk)
    event = AuditEvent.objects.get(action=Action.LOGIN)
    assert event.actor == alice
    assert event.ip == "127.0.0.1"
    assert event.details == {"two_factor": False}


def test_login_gives_the_session_a_new_key(client, alice):
    # A key planted in the browser before login (session fixation) must be worthless after.
    session = client.session
    session["language_hint"] = "en"
    session.save()
    planted_key = session.session_key

    log_in(client, "alice")

    new_key = client.cookies["sessionid"].value
    assert new_key != planted_key
    assert not Session.objects.filter(session_key=planted_key).exists()
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_wrong_password_is_refused_and_audited_without_the_password(client, alice):
    response = log_in(client, "alice", "not-her-password")

    assert response.status_code == 200
    assert "Wrong username or password." in response.text
    assert "_auth_user_id" not in client.session
    event = AuditEvent.objects.get(action=Action.LOGIN_FAILED)
    assert event.actor == alice
    assert event.outcome == Outcome.MINOR_FAILURE
    assert event.details == {"username": "alice", "step": "password"}
    assert "not-her-password" not in json.dumps(event.details)
    assert not AuditEvent.objects.filter(action=Action.LOGIN).exists()


def test_unknown_username_gets_the_same_answer_after_running_the_hasher(client, alice):
    with mock.patch.object(
        MD5PasswordHasher, "encode", autospec=True, side_effect=MD5PasswordHasher.encode
    ) as hasher:
        unknown = log_in(client, "mallory", "guess-1")
    assert hasher.called, "an unknown username must cost the same hashing as a known one"

    known = log_in(client, "alice", "guess-2")

    assert unknown.status_code == known.status_code == 200
    assert "Wrong username or password." in unknown.text
    assert "Wrong username or password." in known.text
    failed = AuditEvent.objects.filter(action=Action.LOGIN_FAILED).order_by("id")
    assert [(e.actor_id, e.actor_label, e.details["username"]) for e in failed] == [
        (None, "unknown user", "mallory"),
        (alice.pk, "alice", "alice"),
    ]


def test_inactive_user_cannot_log_in_even_with_the_right_password(client, alice):
    User.objects.filter(pk=alice.pk).update(is_active=False)

    response = log_in(client, "alice")

    assert response.status_code == 200
    assert "Wrong username or password." in response.text
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action=Action.LOGIN_FAILED).count() == 1


def test_login_returns_to_the_page_that_asked_for_it(client, alice):
    response = log_in(client, "alice", next="/accounts/password/")

    assert response.status_code == 302
    assert response.url == "/accounts/password/"


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/phish", "//evil.example/", "javascript:alert(1)"]
)
def test_login_ignores_a_next_that_leaves_the_site(client, alice, next_url):
    page = client.get(LOGIN, {"next": next_url})
    assert next_url not in page.text

    response = log_in(client, "alice", next=next_url)

    assert response.url == reverse("studies:directory")


def test_logged_in_user_opening_the_login_page_goes_on(client, alice):
    client.force_login(alice)

    response = client.get(LOGIN, {"next": "/accounts/password/"})

    assert response.status_code == 302
    assert response.url == "/accounts/password/"


def test_login_page_is_a_finished_form(client, db):
    response = client.get(LOGIN)

    assert response.status_code == 200
    assert 'name="username"' in response.text
    assert 'autocomplete="current-password"' in response.text
    assert "csrfmiddlewaretoken" in response.text
    assert "css/accounts.css" in response.text


def test_logout_is_refused_over_get(client, alice):
    client.force_login(alice)

    response = client.get(reverse("accounts:logout"))

    assert response.status_code == 405
    assert client.session["_auth_user_id"] == str(alice.pk)
    assert not AuditEvent.objects.filter(action=Action.LOGOUT).exists()


def test_alice_logs_out_and_the_session_ends(client, alice):
    log_in(client, "alice")
    session_key = client.cookies["sessionid"].value

    response = client.post(reverse("accounts:logout"))

    assert response.status_code == 302
    assert response.url == LOGIN
    assert "_auth_user_id" not in client.session
    assert not Session.objects.filter(session_key=session_key).exists()
    event = AuditEvent.objects.get(action=Action.LOGOUT)
    assert event.actor == alice
    assert client.get(reverse("accounts:password_change")).status_code == 302


def test_logout_needs_a_csrf_token(alice):
    from tests.accounts.helpers import HttpsClient

    browser = HttpsClient(enforce_csrf_checks=True)
    browser.force_login(alice)

    response = browser.post(reverse("accounts:logout"))

    assert response.status_code == 403
    assert browser.session["_auth_user_id"] == str(alice.pk)


def test_demo_mode_lists_the_demo_accounts_and_their_password(client, settings, db):
    settings.DEMO_MODE = True

    response = client.get(LOGIN)

    assert "Demonstration accounts" in response.text
    assert "demo-portal" in response.text
    for username in ("alice", "bob", "dana", "carol"):
        assert f"<code>{username}</code>" in response.text


def test_without_demo_mode_no_account_or_password_is_shown(client, settings, db):
    settings.DEMO_MODE = False

    response = client.get(LOGIN)

    assert "Demonstration accounts" not in response.text
    assert "demo-portal" not in response.text
    assert "<code>alice</code>" not in response.text
