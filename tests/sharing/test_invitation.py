"""An email share to an address without an account (CIMAR: "the recipient will be prompted to
create an account before having access to the study"): the invitation email, its page, the
registration that activates the share, and everything that must not open it."""

from __future__ import annotations

import re
import secrets
import threading
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, User
from audit.models import Action, AuditEvent
from notifications.models import Message
from portal.digests import secret_digest
from sharing.models import ShareRecipient
from sharing.services import invitations
from sharing.services.entries import end_of_day
from sharing.services.shares import remove_share
from studies.access import user_study_access
from studies.models import AccessLevel, Entry, EntryOrigin
from studies.services.worklists import personal_worklist
from tests.accounts.helpers import (
    PASSWORD,
    HttpsClient,
    plain_static_storage,
    without_random_values,
)
from tests.conftest import make_user
from tests.factories import make_study
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db

ADDRESS = "gp@example.net"
GOOD_PASSWORD = "Vesalius-fabrica-1543"
_LINK = re.compile(r"(https?://[^\s\"<>]+/shares/invitation/([A-Za-z0-9_-]+)/)")


@pytest.fixture
def browser(settings):
    """The invited person's browser: HTTPS, CSRF checks on, like a real one."""
    plain_static_storage(settings)
    return HttpsClient(enforce_csrf_checks=True)


@pytest.fixture
def mri(org, location):
    return make_study(
        org,
        location=location,
        patient_id="P-0002",
        family_name="Roe",
        given_name="Richard",
        description="MR Brain",
    )


def invitation_token(address: str = ADDRESS) -> str:
    """The token in the newest invitation email to ``address``, as its reader sees the link."""
    message = Message.objects.filter(
        template="registration_invitation", recipient__iexact=address
    ).latest("pk")
    links = {match.group(2) for match in _LINK.finditer(message.body_text)}
    assert len(links) == 1, message.body_text
    assert {match.group(2) for match in _LINK.finditer(message.body_html)} == links
    return links.pop()


def page_path(token: str) -> str:
    return reverse("sharing:invitation", args=[token])


def post(browser, token: str, data: dict, **extra):
    """A form on the page, posted as a browser does from a no-referrer page: Origin null, with
    the CSRF token of the cookie."""
    if "csrftoken" not in browser.cookies:
        browser.get(page_path(token))
    if "csrftoken" not in browser.cookies:
        # A page without a form (the token opens nothing) sets no cookie; the login page does.
        browser.get(reverse("accounts:login"))
    data = {"csrfmiddlewaretoken": browser.cookies["csrftoken"].value, **data}
    return browser.post(page_path(token), data, HTTP_ORIGIN="null", **extra)


def registration(**overrides) -> dict:
    values = {
        "action": "register",
        "first_name": "Greta",
        "last_name": "Peeters",
        "password1": GOOD_PASSWORD,
        "password2": GOOD_PASSWORD,
        "mobile": "",
        "physician_number": "",
        "language": "nl",
    }
    values.update(overrides)
    return values


def text(response) -> str:
    return response.content.decode()


def title(response) -> str:
    return re.search(r"<title>(.*?)</title>", text(response), re.S).group(1)


def listed_uids(response) -> list[str]:
    return re.findall(r'data-menu-target="study" data-id="([^"]+)"', text(response))


def assert_no_account_made():
    assert not User.objects.filter(email__iexact=ADDRESS).exists()
    assert not AuditEvent.objects.filter(action=Action.USER_REGISTERED).exists()
    assert not AuditEvent.objects.filter(action=Action.SHARE_ACTIVATED).exists()
    assert not ShareRecipient.objects.filter(activated_at__isnull=False).exists()


# --- The email ----------------------------------------------------------------------------------


def test_the_email_links_to_the_invitation_page_and_only_a_digest_of_its_token_is_kept(
    study, alice, settings
):
    made = share(alice, study, ("email", ADDRESS))
    token = invitation_token()
    message = Message.objects.get(template="registration_invitation")
    assert f"{settings.SITE_URL}{page_path(token)}" in message.body_text
    assert "create your" in message.body_text and ADDRESS in message.body_text
    assert len(token) >= 43  # 256 random bits

    recipient = made.recipients.get()
    assert recipient.invitation_digest == secret_digest(token, purpose="share-invitation")
    # Nothing but the email itself carries the token: not the recipient row, not the message's
    # stored context, not the audit trail.
    stored = [
        *ShareRecipient.objects.values_list("invitation_digest", "email"),
        str(message.context),
        *(str(e.details) for e in AuditEvent.objects.all()),
    ]
    assert not any(token in str(value) for value in stored)


def test_each_invitation_has_its_own_token(study, alice):
    share(alice, study, ("email", ADDRESS))
    first = invitation_token()
    share(alice, study, ("email", ADDRESS))
    assert invitation_token() != first
    digests = set(ShareRecipient.objects.values_list("invitation_digest", flat=True))
    assert len(digests) == 2


# --- The whole story ----------------------------------------------------------------------------


def test_an_invited_gp_registers_and_finds_both_studies_in_the_directory(
    browser, study, mri, alice
):
    until = timezone.localdate() + timedelta(days=10)
    made = share(
        alice,
        [study, mri],
        ("email", "GP@Example.net"),
        access="report_write",
        valid_until=until,
        message="Jane's left lung, please.",
    )
    token = invitation_token()

    # The page: who shared what, by initials only, and the registration form.
    page = browser.get(page_path(token))
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    body = text(page)
    assert "J.D." in body and "R.R." in body
    assert "CT Chest" in body and "MR Brain" in body
    assert "Alice Tester" in body and "St. Elsewhere Hospital" in body
    assert made.recipients.get().email in body
    shown = without_random_values(body, token)
    for secret in ("Jane", "Doe", "Richard", "Roe", "P-0001", "Second opinion", "left lung"):
        assert secret not in shown
    assert "Jane" not in title(page) and "J.D." not in title(page)
    assert 'name="password1"' in body and 'name="email"' not in body

    # Mistakes are shown on the form, and nothing is created.
    weak = post(browser, token, registration(password1="password", password2="password"))
    assert weak.status_code == 400
    assert "This password is too common." in text(weak)
    differ = post(browser, token, registration(password2=GOOD_PASSWORD + "!"))
    assert differ.status_code == 400
    assert "The two passwords differ." in text(differ)
    bad_mobile = post(browser, token, registration(mobile="12345"))
    assert bad_mobile.status_code == 400
    assert "is not a valid phone number" in text(bad_mobile)
    missing = post(browser, token, registration(first_name=""))
    assert missing.status_code == 400
    assert "This field is required." in text(missing)
    assert_no_account_made()

    # The registration.
    done = post(
        browser,
        token,
        registration(mobile="0470 12 34 56", physician_number="RIZIV-2001"),
    )
    assert done.status_code == 303
    assert done.url == reverse("studies:directory")

    gp = User.objects.get(email__iexact=ADDRESS)
    # The address exactly as the share holds it; the username as people type it.
    assert gp.email.lower() == made.recipients.get().email.lower() == ADDRESS
    assert gp.username == ADDRESS
    assert (gp.first_name, gp.last_name) == ("Greta", "Peeters")
    assert gp.mobile == "+32470123456" and gp.physician_number == "RIZIV-2001"
    assert gp.language == "nl" and gp.check_password(GOOD_PASSWORD)
    assert not Membership.objects.filter(user=gp).exists()

    # Logged in, with both studies in the directory and the share's terms.
    directory = browser.get(done.url)
    assert directory.status_code == 200
    assert int(browser.session["_auth_user_id"]) == gp.pk
    assert set(listed_uids(directory)) == {study.study_uid, mri.study_uid}
    assert "The invitation is accepted: 2 shared studies are in your worklist." in text(directory)
    assert f"log in with the username {ADDRESS}" in text(directory)
    for shared in (study, mri):
        access = user_study_access(gp, shared)
        assert access.level == AccessLevel.REPORT_WRITE
        assert not access.anonymized and access.via == "share"
        assert access.until == end_of_day(until)
        assert browser.get(reverse("studies:study", args=[shared.study_uid])).status_code == 200

    recipient = made.recipients.get()
    assert recipient.user == gp and recipient.worklist == personal_worklist(gp)
    assert recipient.activated_at is not None
    assert recipient.invitation_digest != secret_digest(token, purpose="share-invitation")
    assert recipient.entries.count() == 2
    assert set(
        Entry.objects.filter(worklist__owner=gp, origin=EntryOrigin.SHARE).values_list(
            "added_by", "level", "label", "message"
        )
    ) == {(alice.pk, "report_write", "", "Jane's left lung, please.")}

    registered = AuditEvent.objects.get(action=Action.USER_REGISTERED)
    assert (registered.actor_id, registered.target_id) == (gp.pk, str(gp.pk))
    assert registered.organization_id == made.organization_id
    assert registered.details["share"] == made.pk
    activated = AuditEvent.objects.filter(action=Action.SHARE_ACTIVATED)
    assert sorted(e.study_uid for e in activated) == sorted([study.study_uid, mri.study_uid])
    assert {(e.actor_id, e.target_type, e.target_id) for e in activated} == {
        (gp.pk, "share", str(made.pk))
    }
    assert AuditEvent.objects.filter(action=Action.LOGIN, actor=gp).count() == 1

    # The token is spent: its owner is sent to the directory, anyone else told it was used.
    again = browser.get(page_path(token))
    assert again.status_code == 303 and again.url == reverse("studies:directory")
    stranger = HttpsClient().get(page_path(token))
    assert stranger.status_code == 410
    assert "already been used" in text(stranger)
    assert "Alice" not in text(stranger) and "CT Chest" not in text(stranger)


def test_an_anonymized_share_shows_no_initials_before_registering(browser, study, alice):
    share(alice, study, ("email", ADDRESS), anonymize=True)
    page = browser.get(page_path(invitation_token()))
    assert page.status_code == 200
    assert "J.D." not in text(page) and "CT Chest" in text(page)


def test_the_form_posted_with_origin_null_still_needs_the_csrf_token(browser, study, alice):
    share(alice, study, ("email", ADDRESS))
    token = invitation_token()
    browser.get(page_path(token))
    refused = browser.post(page_path(token), registration(), HTTP_ORIGIN="null")
    assert refused.status_code == 403
    assert_no_account_made()


# --- Invitations that open nothing --------------------------------------------------------------


def test_an_unknown_token_and_a_cut_short_one_get_the_same_page_revealing_nothing(
    browser, study, alice
):
    share(alice, study, ("email", ADDRESS))
    real = invitation_token()
    answers = [
        browser.get(page_path(token)) for token in (secrets.token_urlsafe(32), real[:-1], real[:20])
    ]
    assert {a.status_code for a in answers} == {404}
    assert len({text(a) for a in answers}) == 1
    assert answers[0].headers["Referrer-Policy"] == "no-referrer"
    for secret in ("Alice", "St. Elsewhere", "CT Chest", "J.D.", ADDRESS):
        assert secret not in text(answers[0])
    # A wrong token posted is refused the same way and creates nothing.
    refused = post(browser, secrets.token_urlsafe(32), registration())
    assert refused.status_code == 404
    assert_no_account_made()


def test_unknown_tokens_are_throttled_per_address_and_real_ones_are_not_counted(
    browser, study, alice, settings
):
    settings.LOGIN_FAILURE_LIMIT = 3
    share(alice, study, ("email", ADDRESS))
    token = invitation_token()
    for _ in range(10):
        # Opening a real invitation, however often, is no guess.
        assert browser.get(page_path(token)).status_code == 200
    for _ in range(3):
        assert browser.get(page_path(secrets.token_urlsafe(32))).status_code == 404
    throttled = browser.get(page_path(secrets.token_urlsafe(32)))
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    # While throttled, the address gets no answer about any token.
    assert browser.get(page_path(token)).status_code == 429
    assert browser.get(page_path(secrets.token_urlsafe(32))).status_code == 429
    # Another address is not affected.
    assert HttpsClient(REMOTE_ADDR="198.51.100.7").get(page_path(token)).status_code == 200
    # Audited once per window and address, without the tokens.
    events = AuditEvent.objects.filter(action=Action.LOGIN_THROTTLED)
    assert events.count() == 1
    assert events.get().details["step"] == "share invitation"


def test_an_invitation_expires_after_share_invitation_days(browser, study, alice, settings):
    settings.SHARE_INVITATION_DAYS = 30
    made = share(alice, study, ("email", ADDRESS), unlimited=True)
    token = invitation_token()
    with time_machine.travel(made.created_at + timedelta(days=30, seconds=-5), tick=False):
        assert browser.get(page_path(token)).status_code == 200
    with time_machine.travel(made.created_at + timedelta(days=30, seconds=1), tick=False):
        expired = browser.get(page_path(token))
        assert expired.status_code == 410
        assert "This invitation has expired." in text(expired)
        assert "CT Chest" not in text(expired)
        assert post(browser, token, registration()).status_code == 410
    assert_no_account_made()


def test_an_invitation_ends_with_a_shorter_share(browser, study, alice, settings):
    settings.SHARE_INVITATION_DAYS = 30
    last_day = timezone.localdate() + timedelta(days=3)
    share(alice, study, ("email", ADDRESS), valid_until=last_day)
    token = invitation_token()
    with time_machine.travel(end_of_day(last_day) - timedelta(minutes=1), tick=False):
        assert browser.get(page_path(token)).status_code == 200
    with time_machine.travel(end_of_day(last_day) + timedelta(minutes=1), tick=False):
        assert browser.get(page_path(token)).status_code == 410
        assert post(browser, token, registration()).status_code == 410
    assert_no_account_made()


def test_a_removed_shares_invitation_opens_nothing(browser, study, alice):
    made = share(alice, study, ("email", ADDRESS))
    token = invitation_token()
    remove_share(user=alice, share=made)
    page = browser.get(page_path(token))
    assert page.status_code == 410
    assert "removed this share" in text(page)
    assert "CT Chest" not in text(page)
    assert post(browser, token, registration()).status_code == 410
    assert_no_account_made()


def test_a_share_removed_after_the_page_was_opened_is_not_activated(browser, study, alice):
    made = share(alice, study, ("email", ADDRESS))
    token = invitation_token()
    invitation = invitations.find_invitation(token=token, request=None)
    remove_share(user=alice, share=made)
    request = _service_request()
    with pytest.raises(invitations.InvitationWithdrawn):
        invitations.register(
            invitation=invitation,
            request=request,
            first_name="Greta",
            last_name="Peeters",
            password=GOOD_PASSWORD,
            language="en",
        )
    assert_no_account_made()


# --- Someone with an account -------------------------------------------------------------------


def test_an_address_registered_meanwhile_logs_in_and_accepts(browser, study, mri, alice):
    made = share(alice, [study, mri], ("email", ADDRESS))
    token = invitation_token()
    # The GP got an account another way before opening the email.
    gp = make_user("greta", email="GP@example.NET")

    page = browser.get(page_path(token))
    assert page.status_code == 200
    assert 'name="password1"' not in text(page)
    login_url = f"{reverse('accounts:login')}?next={page_path(token)}"
    assert login_url in text(page)
    # Registering the address again is refused.
    assert post(browser, token, registration()).status_code == 409
    assert User.objects.filter(email__iexact=ADDRESS).count() == 1

    logged_in = browser.post(
        reverse("accounts:login"),
        {
            "csrfmiddlewaretoken": browser.cookies["csrftoken"].value,
            "username": "greta",
            "password": PASSWORD,
            "next": page_path(token),
        },
        HTTP_ORIGIN="https://testserver",
    )
    assert logged_in.status_code == 302 and logged_in.url == page_path(token)
    page = browser.get(page_path(token))
    assert 'value="accept"' in text(page)

    accepted = post(browser, token, {"action": "accept"})
    assert accepted.status_code == 303 and accepted.url == reverse("studies:directory")
    directory = browser.get(accepted.url)
    assert set(listed_uids(directory)) == {study.study_uid, mri.study_uid}
    assert user_study_access(gp, study).level == AccessLevel.REPORT_READ
    recipient = made.recipients.get()
    assert (recipient.user, recipient.worklist) == (gp, personal_worklist(gp))
    assert AuditEvent.objects.filter(action=Action.SHARE_ACTIVATED, actor=gp).count() == 2
    assert not AuditEvent.objects.filter(action=Action.USER_REGISTERED).exists()
    # Accepting twice changes nothing.
    assert browser.get(page_path(token)).status_code == 303
    assert post(browser, token, {"action": "accept"}).status_code == 303
    assert recipient.entries.count() == 2


def test_a_user_logged_in_with_another_address_is_told_and_cannot_accept(
    browser, study, alice, bob
):
    made = share(alice, study, ("email", ADDRESS))
    token = invitation_token()
    browser.force_login(bob)

    page = browser.get(page_path(token))
    assert page.status_code == 200
    assert "This invitation is for another email address" in text(page)
    assert ADDRESS in text(page) and bob.email in text(page)

    refused = post(browser, token, {"action": "accept"})
    assert refused.status_code == 403
    assert "another email address than your account" in text(refused)
    assert post(browser, token, registration()).status_code == 409
    assert made.recipients.get().pending
    assert user_study_access(bob, study) is None
    assert_no_account_made()


# --- Several invitations, and the same one twice ----------------------------------------------


def test_registering_activates_every_running_email_share_of_the_address(
    browser, study, mri, alice, bob, org, location
):
    first = share(alice, study, ("email", ADDRESS), access="report_write")
    first_token = invitation_token()
    second = share(bob_holding(bob, mri), mri, ("email", "Gp@Example.Net"), anonymize=True)
    second_token = invitation_token("Gp@Example.Net")
    other = make_study(org, location=location, patient_id="P-3", description="US Neck")
    removed = share(alice, other, ("email", ADDRESS))
    remove_share(user=alice, share=removed)
    someone_else = share(alice, other, ("email", "someone@example.net"))

    assert post(browser, first_token, registration()).status_code == 303

    gp = User.objects.get(email__iexact=ADDRESS)
    assert user_study_access(gp, study).level == AccessLevel.REPORT_WRITE
    anonymized = user_study_access(gp, mri)
    assert anonymized.anonymized and anonymized.level == AccessLevel.REPORT_READ
    assert user_study_access(gp, other) is None
    assert first.recipients.get().user == second.recipients.get().user == gp
    assert removed.recipients.get().pending and someone_else.recipients.get().pending
    assert AuditEvent.objects.filter(action=Action.USER_REGISTERED).count() == 1
    assert {
        (e.target_id, e.study_uid) for e in AuditEvent.objects.filter(action=Action.SHARE_ACTIVATED)
    } == {(str(first.pk), study.study_uid), (str(second.pk), mri.study_uid)}
    # The second email's link now says it was used, and takes its owner to the directory.
    assert browser.get(page_path(second_token)).status_code == 303
    assert HttpsClient().get(page_path(second_token)).status_code == 410


def bob_holding(bob, study):
    """Bob gets ``study`` from the organization's Radiology location, so he can share it."""
    from accounts.models import Membership

    membership = Membership.objects.get(user=bob)
    membership.locations.add(study.received_location)
    return bob


def test_a_double_submit_creates_one_account_and_one_set_of_entries(browser, study, alice):
    made = share(alice, study, ("email", ADDRESS))
    token = invitation_token()
    other_tab = HttpsClient(enforce_csrf_checks=True)

    assert post(browser, token, registration()).status_code == 303
    # The same browser submitting again is already logged in: sent to its studies.
    assert post(browser, token, registration()).status_code == 303
    # A submit that started in another browser before the first one finished is refused.
    late = post(other_tab, token, registration())
    assert late.status_code == 410

    assert User.objects.filter(email__iexact=ADDRESS).count() == 1
    assert made.recipients.get().entries.count() == 1
    assert Entry.objects.filter(origin=EntryOrigin.SHARE).count() == 1
    assert AuditEvent.objects.filter(action=Action.USER_REGISTERED).count() == 1


def test_a_registration_that_loses_the_race_for_the_address_creates_nothing(study, alice):
    share(alice, study, ("email", ADDRESS))
    invitation = invitations.find_invitation(token=invitation_token(), request=None)
    # Between the page and the submit, the address got an account elsewhere.
    make_user("greta", email=ADDRESS)
    with pytest.raises(invitations.InvitedAddressHasAccount):
        invitations.register(
            invitation=invitation,
            request=_service_request(),
            first_name="Greta",
            last_name="Peeters",
            password=GOOD_PASSWORD,
            language="en",
        )
    assert User.objects.filter(email__iexact=ADDRESS).count() == 1
    assert not ShareRecipient.objects.filter(activated_at__isnull=False).exists()
    assert not AuditEvent.objects.filter(action=Action.USER_REGISTERED).exists()


def test_a_username_already_taken_by_another_account_gets_a_free_variant(browser, study, alice):
    make_user(ADDRESS, email="someone-else@example.org")
    share(alice, study, ("email", ADDRESS))
    assert post(browser, invitation_token(), registration()).status_code == 303
    gp = User.objects.get(email=ADDRESS)
    assert gp.username == f"{ADDRESS}-2"


def _service_request(address: str = "127.0.0.1"):
    request = RequestFactory().post("/shares/invitation/", REMOTE_ADDR=address)
    request.user = AnonymousUser()
    request.session = SessionStore()
    return request


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_submits_create_one_account_on_postgresql(require_postgres, org, location):
    """Ten submits of the same invitation arrive together, each on its own connection: the
    recipient rows are locked in one order and activated by a conditional UPDATE, and the
    address is unique, so one account is made and the study is granted once."""
    from accounts.models import Membership, Role
    from accounts.permissions import CLINICIAN

    role = Role.objects.create(name="Clinician", permissions=[p.value for p in CLINICIAN])
    alice = make_user("alice")
    Membership.objects.create(user=alice, organization=org, role=role).locations.add(location)
    study = make_study(org, location=location)
    made = share(alice, study, ("email", ADDRESS))
    share(alice, study, ("email", ADDRESS.upper()))
    token = invitation_token(ADDRESS)

    submitters = 10
    start = threading.Barrier(submitters)
    outcomes: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def submit(number: int) -> None:
        try:
            request = _service_request(f"198.51.100.{number + 1}")
            invitation = invitations.find_invitation(token=token, request=request)
            start.wait(timeout=30)
            try:
                user, _activated = invitations.register(
                    invitation=invitation,
                    request=request,
                    first_name="Greta",
                    last_name="Peeters",
                    password=GOOD_PASSWORD,
                    language="en",
                )
            except invitations.InvitationError as refusal:
                with lock:
                    outcomes.append(refusal)
            else:
                with lock:
                    outcomes.append(user)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(submitters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    users = [o for o in outcomes if isinstance(o, User)]
    assert len(users) == 1
    assert all(
        isinstance(o, invitations.InvitationAccepted | invitations.InvitedAddressHasAccount)
        for o in outcomes
        if not isinstance(o, User)
    )
    assert User.objects.filter(email__iexact=ADDRESS).count() == 1
    assert Entry.objects.filter(origin=EntryOrigin.SHARE).count() == 2  # one per share
    assert made.recipients.get().entries.count() == 1
    assert AuditEvent.objects.filter(action=Action.USER_REGISTERED).count() == 1
    assert AuditEvent.objects.filter(action=Action.SHARE_ACTIVATED).count() == 2


def test_a_share_asking_for_sms_codes_needs_a_mobile_to_register(browser, study, alice):
    share(alice, study, ("email", ADDRESS), two_factor=True)
    token = invitation_token()
    page = browser.get(page_path(token))
    assert "Required: a study was shared with you with SMS codes" in text(page)

    without = post(browser, token, registration(mobile=""))
    assert without.status_code == 400
    assert "This field is required." in text(without)
    assert_no_account_made()

    made = post(browser, token, registration(mobile="+32 470 12 34 56"))
    assert made.status_code == 303
    user = User.objects.get(email__iexact=ADDRESS)
    assert user.mobile == "+32470123456"
    assert Entry.objects.get(worklist__owner=user).two_factor_required


def test_the_service_refuses_a_registration_without_mobile_for_a_two_factor_share(study, alice, rf):
    share(alice, study, ("email", ADDRESS), two_factor=True)
    request = rf.post("/")
    request.session = SessionStore()
    invitation = invitations.find_invitation(token=invitation_token(), request=request)
    assert invitation.needs_mobile
    with pytest.raises(ValidationError) as refused:
        invitations.register(
            invitation=invitation,
            request=request,
            first_name="Greta",
            last_name="Peeters",
            password=GOOD_PASSWORD,
            language="nl",
        )
    assert "mobile" in refused.value.message_dict
    assert_no_account_made()
