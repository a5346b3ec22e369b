"""POST /api/v1/auth/token/: credentials (and a code, where the account has two-factor) for a
token that is shown once and stored only as a keyed digest."""

import pytest
from django.urls import reverse

from accounts.authentication import TOKEN_PURPOSE
from accounts.models import ApiToken
from audit.models import Action, AuditEvent
from portal.digests import secret_digest
from tests.accounts.helpers import PASSWORD, code_for, wrong_code_for

pytestmark = pytest.mark.django_db

TOKEN = reverse("api-token")
ME = reverse("api-me")


def obtain(api_client, username="alice", password=PASSWORD, **extra):
    return api_client.post(
        TOKEN, {"username": username, "password": password, **extra}, format="json"
    )


def test_alice_obtains_a_token_and_the_api_knows_her_by_it(api_client, alice, org):
    response = obtain(api_client)

    assert response.status_code == 200
    secret = response.json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    me = api_client.get(ME)
    assert me.status_code == 200
    assert me.json() == {
        "username": "alice",
        "first_name": "Alice",
        "last_name": "Tester",
        "email": "alice@example.org",
        "language": "en",
        "organizations": [
            {
                "id": org.pk,
                "name": "St. Elsewhere Hospital",
                "kind": "hospital",
                "role": "Clinician",
            }
        ],
    }
    event = AuditEvent.objects.get(action=Action.TOKEN_ISSUED)
    token = ApiToken.objects.get(user=alice)
    assert (event.actor, event.target_id) == (alice, str(token.pk))
    assert secret not in str(event.details)


def test_the_database_holds_no_usable_token(api_client, alice):
    secret = obtain(api_client).json()["token"]

    token = ApiToken.objects.get(user=alice)
    assert token.digest == secret_digest(secret, purpose=TOKEN_PURPOSE)
    assert token.digest != secret
    assert secret not in token.digest
    assert len(token.prefix) == 8 and secret.startswith(token.prefix)
    # What a database dump shows does not open the API.
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.digest}")
    assert api_client.get(ME).status_code == 401


def test_each_request_gets_a_new_token(api_client, alice):
    first = obtain(api_client).json()["token"]
    second = obtain(api_client).json()["token"]

    assert first != second
    assert ApiToken.objects.filter(user=alice).count() == 2


def test_a_wrong_password_gets_400_and_no_token(api_client, alice):
    response = obtain(api_client, password="not-her-password")

    assert response.status_code == 400
    assert response.json() == {"detail": "Wrong username or password."}
    assert not ApiToken.objects.exists()
    failed = AuditEvent.objects.get(action=Action.LOGIN_FAILED)
    assert failed.details == {"username": "alice", "step": "password"}


def test_an_unknown_user_gets_the_same_answer(api_client, alice):
    response = obtain(api_client, username="mallory")

    assert response.status_code == 400
    assert response.json() == {"detail": "Wrong username or password."}


def test_missing_fields_are_named(api_client, db):
    response = api_client.post(TOKEN, {"username": "alice"}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"password"}


def test_an_account_with_two_factor_must_give_its_code(api_client, alice, alice_device):
    missing = obtain(api_client)
    wrong = obtain(api_client, otp_token=wrong_code_for(alice_device))

    assert missing.status_code == wrong.status_code == 400
    assert "otp_token" in missing.json() and "otp_token" in wrong.json()
    assert not ApiToken.objects.exists()
    assert AuditEvent.objects.filter(action=Action.TWO_FACTOR_FAILED).count() == 1


def test_an_account_with_two_factor_gets_a_token_with_its_code(
    api_client, alice, alice_device, settings
):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0

    response = obtain(api_client, otp_token=code_for(alice_device))

    assert response.status_code == 200
    event = AuditEvent.objects.get(action=Action.TOKEN_ISSUED)
    assert event.details == {"two_factor": True}


def test_guessing_through_the_api_is_throttled_with_the_login_page(api_client, client, alice):
    for _ in range(3):
        client.post(reverse("accounts:login"), {"username": "alice", "password": "guess"})
    for _ in range(2):
        assert obtain(api_client, password="guess").status_code == 400

    response = obtain(api_client)

    assert response.status_code == 429
    assert "Too many failed attempts" in response.json()["detail"]
    assert int(response["Retry-After"]) > 0
    assert not ApiToken.objects.exists()
    assert AuditEvent.objects.filter(action=Action.LOGIN_THROTTLED).count() == 1


def test_me_needs_a_valid_token(api_client, alice):
    assert api_client.get(ME).status_code == 401
    api_client.credentials(HTTP_AUTHORIZATION="Token made-up-token")
    assert api_client.get(ME).status_code == 401


def test_a_deleted_token_stops_working_at_once(api_client, alice):
    secret = obtain(api_client).json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert api_client.get(ME).status_code == 200

    ApiToken.objects.filter(user=alice).delete()

    assert api_client.get(ME).status_code == 401


def test_a_token_of_a_deactivated_user_stops_working(api_client, alice):
    secret = obtain(api_client).json()["token"]
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")

    assert api_client.get(ME).status_code == 401


def test_tokens_survive_a_secret_key_rotation(api_client, alice, settings):
    secret = obtain(api_client).json()["token"]
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-key-after-rotation-" + "r" * 40
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")

    assert api_client.get(ME).status_code == 200


def test_the_token_endpoint_only_accepts_post(api_client, alice):
    assert api_client.get(TOKEN).status_code == 405


def test_the_api_rate_limit_is_per_client_behind_the_proxy(api_client, alice, settings):
    """DRF's own throttle (ten token requests a minute) counts the client the proxy names, not
    the proxy."""
    settings.TRUSTED_PROXIES = ["10.0.0.5"]

    def obtain_via_proxy(client_address, username="alice", password=PASSWORD):
        return api_client.post(
            TOKEN,
            {"username": username, "password": password},
            format="json",
            REMOTE_ADDR="10.0.0.5",
            HTTP_X_FORWARDED_FOR=client_address,
        )

    for n in range(10):
        obtain_via_proxy("203.0.113.9", username=f"nobody-{n}")
    refused = obtain_via_proxy("203.0.113.9")
    assert refused.status_code == 429
    assert not ApiToken.objects.exists()

    assert obtain_via_proxy("198.51.100.7").status_code == 200
