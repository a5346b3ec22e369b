"""Issue 10, finding 4: two-factor authentication guarded only the Django admin. Dana, an
organization administrator, got an API token with her password alone before she set up her
authenticator app, read the audit trail with it, and the token kept working after she enrolled.

Now administrators always, and every member of an organization whose policy says so, must use
two-factor authentication: for the portal's pages (sent to set it up, or to give the code,
before any other page), for the API token endpoint (no token without a valid code) and for API
tokens on the REST API and DICOMweb (a token issued without a code does not count for them).
Enrolling, changing or removing a device ends the user's tokens.
"""

import pytest
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ApiToken
from audit.models import Action, AuditEvent
from tests.accounts.helpers import (
    PASSWORD,
    HttpsAPIClient,
    HttpsClient,
    api_token,
    code_for,
    make_device,
    verified_login,
)

pytestmark = pytest.mark.django_db

TOKEN = reverse("api-token")
ME = reverse("api-me")
AUDIT_API = reverse("api-audit")
DIRECTORY = reverse("studies:directory")
TWO_FACTOR = reverse("accounts:two_factor")
VERIFY = reverse("accounts:two_factor_verify")
DICOMWEB = "/dicomweb/studies"


def obtain(username, password=PASSWORD, **extra):
    return HttpsAPIClient().post(
        TOKEN, {"username": username, "password": password, **extra}, format="json"
    )


def with_token(secret: str, scheme: str = "Token") -> HttpsClient:
    return HttpsClient(HTTP_AUTHORIZATION=f"{scheme} {secret}")


# --- The token endpoint ------------------------------------------------------------------------


def test_finding_4_an_administrator_gets_no_token_with_a_password_alone(dana):
    response = obtain("dana")

    assert response.status_code == 403
    assert "must use two-factor authentication" in response.json()["detail"]
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(action=Action.TOKEN_ISSUED).exists()


def test_finding_4_an_enrolled_administrator_gets_a_token_with_her_code(dana, dana_device):
    assert obtain("dana").status_code == 400  # the code is missing

    response = obtain("dana", otp_token=code_for(dana_device))

    assert response.status_code == 200
    token = ApiToken.objects.get(user=dana)
    assert token.two_factor_verified
    client = with_token(response.json()["token"])
    assert client.get(ME).status_code == 200
    assert client.get(AUDIT_API).status_code == 200


def test_finding_4_the_policy_switch_requires_a_code_of_every_member(alice, org):
    org.require_two_factor = True
    org.save()

    response = obtain("alice")

    assert response.status_code == 403
    assert "must use two-factor authentication" in response.json()["detail"]


def test_a_clinician_of_an_organization_without_the_policy_needs_no_code(alice):
    response = obtain("alice")

    assert response.status_code == 200
    assert not ApiToken.objects.get(user=alice).two_factor_verified


# --- Tokens issued without a code ---------------------------------------------------------------


def test_finding_4_an_administrators_password_only_token_opens_nothing(dana):
    # Issued before this fix, with the password alone.
    secret = api_token(dana)
    client = with_token(secret)

    me = client.get(ME)
    audit = client.get(AUDIT_API)

    assert me.status_code == audit.status_code == 401
    assert "issued without two-factor authentication" in me.json()["detail"]
    for scheme in ("Token", "Bearer"):
        dicomweb = with_token(secret, scheme).get(DICOMWEB, HTTP_ACCEPT="application/dicom+json")
        assert dicomweb.status_code == 401, scheme
        assert "issued without two-factor authentication" in dicomweb.json()["detail"]


def test_finding_4_turning_the_policy_on_stops_members_password_only_tokens(alice, org):
    client = with_token(obtain("alice").json()["token"])
    assert client.get(ME).status_code == 200

    org.require_two_factor = True
    org.save()

    assert client.get(ME).status_code == 401
    assert client.get(DICOMWEB, HTTP_ACCEPT="application/dicom+json").status_code == 401


# --- Enrolling and removing end tokens ----------------------------------------------------------


def test_finding_4_enrolling_ends_the_tokens_taken_before(client, alice):
    secret = obtain("alice").json()["token"]
    token = ApiToken.objects.get(user=alice)
    client.force_login(alice)
    client.get(TWO_FACTOR)

    client.post(TWO_FACTOR, {"otp_token": code_for(client.session["accounts_totp_enrolment"])})

    assert TOTPDevice.objects.filter(user=alice).exists()
    assert not ApiToken.objects.filter(user=alice).exists()
    assert with_token(secret).get(ME).status_code == 401
    revoked = AuditEvent.objects.get(action=Action.TOKEN_REVOKED)
    assert (revoked.actor, revoked.target_id) == (alice, str(token.pk))
    assert revoked.details == {
        "owner": "alice",
        "prefix": token.prefix,
        "reason": "two-factor enabled",
    }


def test_finding_4_removing_the_device_ends_the_tokens(client, alice, alice_device, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    secret = obtain("alice", otp_token=code_for(alice_device)).json()["token"]
    verified_login(client, alice, alice_device)

    client.post(TWO_FACTOR, {"password": PASSWORD})

    assert not TOTPDevice.objects.filter(user=alice).exists()
    assert with_token(secret).get(ME).status_code == 401
    revoked = AuditEvent.objects.get(action=Action.TOKEN_REVOKED)
    assert revoked.details["reason"] == "two-factor removed"


def test_finding_4_a_device_changed_in_the_admin_ends_the_tokens(client, alice, alice_device):
    secret = api_token(alice)
    root = make_root()
    verified_login(client, root, make_device(root))

    client.post(
        reverse("admin:otp_totp_totpdevice_delete", args=[alice_device.pk]), {"post": "yes"}
    )

    assert not TOTPDevice.objects.filter(pk=alice_device.pk).exists()
    assert with_token(secret).get(ME).status_code == 401
    revoked = AuditEvent.objects.get(action=Action.TOKEN_REVOKED)
    assert revoked.actor == root
    assert revoked.details["reason"] == "two-factor device removed"


def make_root():
    from tests.conftest import make_user

    return make_user("root", is_staff=True, is_superuser=True)


# --- The portal's pages -------------------------------------------------------------------------


def test_finding_4_an_administrator_without_a_device_is_sent_to_set_one_up_first(client, dana):
    client.force_login(dana)  # the password step of the login

    page = client.get(DIRECTORY)
    api = client.get(ME)
    dicomweb = client.get(DICOMWEB, HTTP_ACCEPT="application/dicom+json")

    assert page.status_code == 302
    assert page.url == f"{TWO_FACTOR}?next=%2Fstudies%2F"
    assert api.status_code == dicomweb.status_code == 403
    assert "must use two-factor authentication" in api.json()["detail"]
    setup = client.get(page.url)
    assert setup.status_code == 200
    assert "Your account must use two-factor authentication" in setup.text

    key = client.session["accounts_totp_enrolment"]
    done = client.post(TWO_FACTOR, {"otp_token": code_for(key), "next": DIRECTORY})

    assert done.url == DIRECTORY
    assert client.get(DIRECTORY).status_code == 200
    assert client.get(ME).status_code == 200


def test_finding_4_the_policy_sends_members_to_set_it_up(client, alice, org):
    org.require_two_factor = True
    org.save()
    client.force_login(alice)

    response = client.get(DIRECTORY)

    assert response.status_code == 302
    assert response.url.startswith(TWO_FACTOR)


def test_finding_4_a_session_from_before_the_device_must_give_the_code(client, alice):
    client.force_login(alice)
    assert client.get(DIRECTORY).status_code == 200
    device = make_device(alice)  # set up in another browser

    response = client.get(DIRECTORY)

    assert response.status_code == 302
    assert response.url == f"{VERIFY}?next=%2Fstudies%2F"
    client.post(VERIFY, {"otp_token": code_for(device), "next": DIRECTORY})
    assert client.get(DIRECTORY).status_code == 200


def test_a_member_of_an_organization_without_the_policy_goes_anywhere(client, alice):
    client.force_login(alice)

    assert client.get(DIRECTORY).status_code == 200


def test_the_set_up_page_and_logout_stay_open_to_who_owes_the_code(client, dana):
    client.force_login(dana)

    assert client.get(TWO_FACTOR).status_code == 200
    assert client.post(reverse("accounts:logout")).status_code == 302
    assert "_auth_user_id" not in client.session


# --- The policy switch ---------------------------------------------------------------------------


def test_finding_4_dana_switches_the_policy_on_in_the_admin_and_it_is_audited(
    client, dana, dana_device, org
):
    from tests.accounts.test_admin import policy_form

    verified_login(client, dana, dana_device)
    url = reverse("admin:accounts_organization_change", args=[org.pk])
    assert 'name="require_two_factor"' in client.get(url).text

    client.post(url, policy_form(org, require_two_factor="on"))

    org.refresh_from_db()
    assert org.require_two_factor
    event = AuditEvent.objects.get(action=Action.POLICY_CHANGED)
    assert event.actor == dana
    assert event.details["changes"] == [{"field": "require_two_factor", "value": True}]
