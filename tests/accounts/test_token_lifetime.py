"""Issue 10, finding 5: API tokens never ended.

Now a token ends API_TOKEN_LIFETIME_DAYS (30) after it was issued, or after API_TOKEN_IDLE_DAYS
(7) without use, on the REST API and on DICOMweb alike; the token endpoint says when it expires.
Alice lists her tokens on a page of her account (never their secrets) and revokes them there;
changing her password, or an administrator setting it, ends them all.
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format

from accounts.models import ApiToken
from audit.models import Action, AuditEvent
from tests.accounts.helpers import (
    PASSWORD,
    HttpsAPIClient,
    HttpsClient,
    make_device,
    verified_login,
)
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

TOKEN = reverse("api-token")
ME = reverse("api-me")
TOKENS_PAGE = "/accounts/tokens/"
DICOMWEB = "/dicomweb/studies"
MONDAY_9AM = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def obtain(username="alice", password=PASSWORD):
    response = HttpsAPIClient().post(
        TOKEN, {"username": username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def api(secret: str, scheme: str = "Token") -> HttpsClient:
    return HttpsClient(HTTP_AUTHORIZATION=f"{scheme} {secret}")


def dicomweb(secret: str) -> int:
    return api(secret, "Bearer").get(DICOMWEB, HTTP_ACCEPT="application/dicom+json").status_code


def revoke_url(token: ApiToken) -> str:
    return f"/accounts/tokens/{token.pk}/revoke/"


# --- Lifetime -------------------------------------------------------------------------------------


def test_finding_5_a_token_ends_thirty_days_after_it_was_issued(alice):
    with time_machine.travel(MONDAY_9AM, tick=False) as clock:
        issued = obtain()
        secret = issued["token"]
        assert parse_datetime(issued["expires_at"]) == MONDAY_9AM + timedelta(days=30)

        # Used every few days, so never idle: the lifetime alone ends it.
        for _ in range(9):
            clock.shift(timedelta(days=3))
            assert api(secret).get(ME).status_code == 200
        clock.shift(timedelta(days=3) - timedelta(seconds=1))
        assert api(secret).get(ME).status_code == 200
        assert dicomweb(secret) == 200

        clock.shift(timedelta(seconds=1))
        assert api(secret).get(ME).status_code == 401
        assert dicomweb(secret) == 401


def test_finding_5_a_token_unused_for_seven_days_ends(alice):
    with time_machine.travel(MONDAY_9AM, tick=False) as clock:
        secret = obtain()["token"]
        clock.shift(timedelta(days=6, hours=23))
        assert api(secret).get(ME).status_code == 200  # used: the idle clock starts again

        clock.shift(timedelta(days=7) - timedelta(minutes=1))
        assert dicomweb(secret) == 200

        clock.shift(timedelta(days=7, minutes=1))
        assert api(secret).get(ME).status_code == 401
        assert dicomweb(secret) == 401


def test_finding_5_a_token_never_used_ends_seven_days_after_it_was_issued(alice):
    with time_machine.travel(MONDAY_9AM, tick=False) as clock:
        secret = obtain()["token"]
        clock.shift(timedelta(days=7, seconds=1))

        assert api(secret).get(ME).status_code == 401


def test_finding_5_the_lifetimes_are_settings(alice, settings):
    settings.API_TOKEN_LIFETIME_DAYS = 2
    settings.API_TOKEN_IDLE_DAYS = 1
    with time_machine.travel(MONDAY_9AM, tick=False) as clock:
        issued = obtain()
        assert parse_datetime(issued["expires_at"]) == MONDAY_9AM + timedelta(days=2)
        clock.shift(timedelta(days=1, seconds=1))

        assert api(issued["token"]).get(ME).status_code == 401


# --- The tokens page ----------------------------------------------------------------------------


def test_finding_5_alice_lists_her_tokens_without_their_secrets(client, alice, bob):
    secret = obtain()["token"]
    bobs = obtain("bob")["token"]
    token = ApiToken.objects.get(user=alice)
    client.force_login(alice)

    directory = client.get(reverse("studies:directory"))
    page = client.get(TOKENS_PAGE)

    assert f'href="{TOKENS_PAGE}"' in directory.text, "the user menu links the page"
    assert page.status_code == 200
    assert f"{token.prefix}…" in page.text
    assert date_format(timezone.localtime(token.expires_at), "DATETIME_FORMAT") in page.text
    assert secret not in page.text and token.digest not in page.text
    assert bobs[:8] not in page.text
    assert "no-store" in page["Cache-Control"]


def test_finding_5_alice_revokes_a_token_and_it_stops_at_once(client, alice):
    secret = obtain()["token"]
    other = obtain()["token"]
    token = ApiToken.objects.get(prefix=secret[:8])
    client.force_login(alice)

    response = client.post(revoke_url(token))

    assert response.status_code == 302
    assert response.url == TOKENS_PAGE
    assert api(secret).get(ME).status_code == 401
    assert dicomweb(secret) == 401
    assert api(other).get(ME).status_code == 200, "her other token is untouched"
    event = AuditEvent.objects.get(action=Action.TOKEN_REVOKED)
    assert (event.actor, event.target_id) == (alice, str(token.pk))
    assert event.details == {
        "owner": "alice",
        "prefix": token.prefix,
        "reason": "revoked by its owner",
    }
    assert secret not in str(event.details)


def test_finding_5_revoking_is_a_post_with_csrf_and_only_for_the_owner(client, alice, bob):
    obtain()
    token = ApiToken.objects.get(user=alice)
    strict = HttpsClient(enforce_csrf_checks=True)
    strict.force_login(alice)
    client.force_login(bob)

    assert strict.get(revoke_url(token)).status_code == 405
    assert strict.post(revoke_url(token)).status_code == 403  # no CSRF token
    assert client.post(revoke_url(token)).status_code == 404  # bob: not his
    assert ApiToken.objects.filter(pk=token.pk).exists()
    assert not AuditEvent.objects.filter(action=Action.TOKEN_REVOKED).exists()


def test_finding_5_the_tokens_page_needs_a_login(client, db):
    response = client.get(TOKENS_PAGE)

    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))


# --- Password changes ---------------------------------------------------------------------------


def test_finding_5_changing_the_password_ends_every_token(client, alice):
    secrets = [obtain()["token"] for _ in range(2)]
    client.force_login(alice)

    client.post(
        reverse("accounts:password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "Tulips-in-the-rain-2025",
            "new_password2": "Tulips-in-the-rain-2025",
        },
    )

    assert not ApiToken.objects.filter(user=alice).exists()
    assert all(api(secret).get(ME).status_code == 401 for secret in secrets)
    revoked = AuditEvent.objects.filter(action=Action.TOKEN_REVOKED)
    assert [event.details["reason"] for event in revoked] == ["password changed"] * 2


def test_finding_5_an_administrator_setting_the_password_ends_every_token(client, alice):
    secret = obtain()["token"]
    root = make_user("root", is_staff=True, is_superuser=True)
    verified_login(client, root, make_device(root))

    client.post(
        reverse("admin:auth_user_password_change", args=[alice.pk]),
        {
            "usable_password": "true",
            "password1": "Quiet-harbour-81",
            "password2": "Quiet-harbour-81",
        },
    )

    assert api(secret).get(ME).status_code == 401
    revoked = AuditEvent.objects.get(action=Action.TOKEN_REVOKED)
    assert revoked.actor == root
    assert revoked.details["reason"] == "password set by an administrator"
