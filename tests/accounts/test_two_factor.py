"""Setting up an authenticator app, logging in with password and code, and removing it."""

from base64 import b32encode
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.services import ENROLMENT_KEY, PENDING_LOGIN_KEY
from audit.models import Action, AuditEvent
from tests.accounts.helpers import PASSWORD, code_for, make_device, wrong_code_for

pytestmark = pytest.mark.django_db

LOGIN = reverse("accounts:login")
VERIFY = reverse("accounts:two_factor_verify")
TWO_FACTOR = reverse("accounts:two_factor")
NOON = datetime(2025, 3, 3, 11, 0, tzinfo=UTC)


# --- Setting up ------------------------------------------------------------------------------


def test_alice_sets_up_her_app_by_scanning_the_code_and_confirming_it(client, alice):
    client.force_login(alice)

    page = client.get(TWO_FACTOR)

    key = client.session[ENROLMENT_KEY]
    secret = b32encode(bytes.fromhex(key)).decode()
    assert page.status_code == 200
    assert "<svg" in page.text and "<path" in page.text
    assert " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)) in page.text
    assert not TOTPDevice.objects.filter(user=alice).exists()

    response = client.post(TWO_FACTOR, {"otp_token": code_for(key)})

    assert response.status_code == 302
    device = TOTPDevice.objects.get(user=alice)
    assert device.confirmed and device.key == key
    assert ENROLMENT_KEY not in client.session
    # Entering the code proved possession: this session counts as verified.
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    event = AuditEvent.objects.get(action=Action.TWO_FACTOR_ENABLED)
    assert (event.actor, event.target_id) == (alice, str(device.pk))
    assert "Two-factor authentication is on." in client.get(TWO_FACTOR).text


def test_reloading_the_setup_page_keeps_the_code_already_scanned(client, alice):
    client.force_login(alice)
    client.get(TWO_FACTOR)
    first_key = client.session[ENROLMENT_KEY]

    client.get(TWO_FACTOR)

    assert client.session[ENROLMENT_KEY] == first_key


def test_a_wrong_confirmation_code_sets_nothing_up(client, alice):
    client.force_login(alice)
    client.get(TWO_FACTOR)
    key = client.session[ENROLMENT_KEY]
    wrong = next(c for c in ("000000", "111111", "222222") if c != code_for(key))

    response = client.post(TWO_FACTOR, {"otp_token": wrong})

    assert response.status_code == 200
    assert "That code is not right." in response.text
    assert not TOTPDevice.objects.filter(user=alice).exists()
    assert not AuditEvent.objects.filter(action=Action.TWO_FACTOR_ENABLED).exists()


def test_the_setup_page_needs_a_logged_in_user(client, db):
    response = client.get(TWO_FACTOR)

    assert response.status_code == 302
    assert response.url.startswith(LOGIN)


# --- Logging in with a code ------------------------------------------------------------------


def test_login_with_a_device_asks_for_the_code_before_logging_in(client, alice, alice_device):
    response = client.post(
        LOGIN, {"username": "alice", "password": PASSWORD, "next": "/accounts/password/"}
    )

    assert response.status_code == 302
    assert response.url == VERIFY
    assert "_auth_user_id" not in client.session, "the password alone must not log in"
    assert client.get("/accounts/password/").status_code == 302
    assert "Enter your code" in client.get(VERIFY).text

    response = client.post(VERIFY, {"otp_token": code_for(alice_device)})

    assert response.status_code == 302
    assert response.url == "/accounts/password/"
    assert client.session["_auth_user_id"] == str(alice.pk)
    assert client.session[DEVICE_ID_SESSION_KEY] == alice_device.persistent_id
    assert PENDING_LOGIN_KEY not in client.session
    login = AuditEvent.objects.get(action=Action.LOGIN)
    assert login.actor == alice
    assert login.details == {"two_factor": True}


def test_the_second_step_gives_the_session_a_new_key(client, alice, alice_device):
    client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    pending_key = client.cookies["sessionid"].value

    client.post(VERIFY, {"otp_token": code_for(alice_device)})

    assert client.cookies["sessionid"].value != pending_key


def test_a_wrong_code_is_refused_and_audited(client, alice, alice_device):
    client.post(LOGIN, {"username": "alice", "password": PASSWORD})

    response = client.post(VERIFY, {"otp_token": wrong_code_for(alice_device)})

    assert response.status_code == 200
    assert "That code is not right." in response.text
    assert "_auth_user_id" not in client.session
    event = AuditEvent.objects.get(action=Action.TWO_FACTOR_FAILED)
    assert event.actor == alice
    assert event.details == {"username": "alice"}
    assert not AuditEvent.objects.filter(action=Action.LOGIN).exists()


def test_a_code_cannot_be_used_twice(client, alice, alice_device):
    with time_machine.travel(NOON, tick=False):
        code = code_for(alice_device)
        client.post(LOGIN, {"username": "alice", "password": PASSWORD})
        client.post(VERIFY, {"otp_token": code})
        client.post(reverse("accounts:logout"))

        client.post(LOGIN, {"username": "alice", "password": PASSWORD})
        replay = client.post(VERIFY, {"otp_token": code})

        assert replay.status_code == 200
        assert "_auth_user_id" not in client.session


def test_wrong_codes_are_throttled_like_passwords(client, alice, alice_device, settings):
    # Leave django-otp's own per-device delay out, to see the portal's throttle alone.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    for _ in range(5):
        client.post(VERIFY, {"otp_token": wrong_code_for(alice_device)})

    response = client.post(VERIFY, {"otp_token": code_for(alice_device)})

    assert response.status_code == 429
    assert "Too many failed attempts" in response.text
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action=Action.TWO_FACTOR_FAILED).count() == 5
    assert AuditEvent.objects.get(action=Action.LOGIN_THROTTLED).details["step"] == "two-factor"


def test_after_a_wrong_code_the_device_makes_you_wait(client, alice, alice_device):
    with time_machine.travel(NOON, tick=False) as clock:
        client.post(LOGIN, {"username": "alice", "password": PASSWORD})
        client.post(VERIFY, {"otp_token": wrong_code_for(alice_device)})

        too_soon = client.post(VERIFY, {"otp_token": code_for(alice_device)})
        assert "Wait 1 second" in too_soon.text or "Wait 2 seconds" in too_soon.text

        clock.shift(timedelta(seconds=5))
        response = client.post(VERIFY, {"otp_token": code_for(alice_device)})
        assert response.status_code == 302
        assert client.session["_auth_user_id"] == str(alice.pk)


def test_the_code_step_expires_after_five_minutes(client, alice, alice_device):
    with time_machine.travel(NOON, tick=False) as clock:
        client.post(LOGIN, {"username": "alice", "password": PASSWORD})
        clock.shift(timedelta(minutes=5, seconds=1))

        response = client.post(VERIFY, {"otp_token": code_for(alice_device)})

        assert response.status_code == 302
        assert response.url == LOGIN
        assert "_auth_user_id" not in client.session
        assert PENDING_LOGIN_KEY not in client.session


def test_changing_the_password_voids_a_pending_code_step(client, alice, alice_device):
    client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    alice.set_password("a-brand-new-passphrase")
    alice.save()

    response = client.post(VERIFY, {"otp_token": code_for(alice_device)})

    assert response.url == LOGIN
    assert "_auth_user_id" not in client.session


def test_the_code_page_without_a_password_step_sends_to_login(client, db):
    response = client.get(VERIFY)

    assert response.status_code == 302
    assert response.url == LOGIN


# --- Removing -------------------------------------------------------------------------------


def test_removing_two_factor_needs_the_password(client, alice, alice_device):
    client.force_login(alice)

    refused = client.post(TWO_FACTOR, {"password": "not-her-password"})

    assert refused.status_code == 200
    assert "Your current password is not right." in refused.text
    assert TOTPDevice.objects.filter(user=alice).exists()
    failed = AuditEvent.objects.get(action=Action.LOGIN_FAILED)
    assert failed.details == {"username": "alice", "step": "two-factor removal"}

    response = client.post(TWO_FACTOR, {"password": PASSWORD})

    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=alice).exists()
    event = AuditEvent.objects.get(action=Action.TWO_FACTOR_DISABLED)
    assert event.actor == alice
    assert event.details == {"devices_removed": 1}
    # The next login asks only for the password.
    client.post(reverse("accounts:logout"))
    assert client.post(LOGIN, {"username": "alice", "password": PASSWORD}).url != VERIFY


def test_bob_cannot_remove_alices_device(client, alice, alice_device, bob):
    client.force_login(bob)
    bob_device = make_device(bob)

    client.post(TWO_FACTOR, {"password": PASSWORD})

    assert TOTPDevice.objects.filter(pk=alice_device.pk).exists()
    assert not TOTPDevice.objects.filter(pk=bob_device.pk).exists()
