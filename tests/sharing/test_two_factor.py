"""SMS two-factor on shares: alice shares a study with bob asking for a code. Opening it asks for
a six-digit code texted to bob's registered mobile: hashed, ten minutes, single use; a resend
replaces it after a cooldown, up to a cap, and never resets the count; five wrong codes in a row
block the share ("bucket") until an administrator of St. Elsewhere unblocks it. The right code
opens the study in that browser session only."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.authentication import TOKEN_PURPOSE
from accounts.models import ApiToken, Membership, User
from accounts.permissions import Perm
from audit.models import Action, AuditEvent, Outcome
from notifications import codes as codes_module
from notifications.models import Channel, Message
from portal.digests import secret_digest
from sharing.access import VERIFIED_SESSION_KEY
from sharing.models import ShareRecipient, ShareSmsCode
from sharing.services import two_factor as tf
from sharing.services.shares import Recipient, remove_share, share_studies
from studies.access import study_access, user_study_access, visible_studies
from studies.models import AccessLevel, Entry
from tests.accounts.helpers import HttpsAPIClient, HttpsClient, plain_static_storage
from tests.conftest import make_user
from tests.factories import make_study
from tests.sharing.conftest import member, options, share

pytestmark = pytest.mark.django_db

MOBILE = "+32470123456"
_SIX_DIGITS = re.compile(r"\b(\d{6})\b")


# --- Helpers -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _plain_static(settings):
    plain_static_storage(settings)


@pytest.fixture
def guarded(alice, study, bob):
    """alice's share of the study with bob, asking for an SMS code; bob's mobile is registered
    and his texts go out in Dutch. He reads the portal in English: the language menu's choice,
    kept on his account, is the language of his pages and of his messages alike, so it is made
    Dutch where a test reads a message, not a page."""
    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    return share(alice, study, ("user", bob.pk), two_factor=True).recipients.get()


def service_request(user=None) -> object:
    """A POST as the services see it: a user, an address and a session of its own."""
    request = RequestFactory().post("/shares/two-factor/", REMOTE_ADDR="198.51.100.7")
    request.user = user if user is not None else AnonymousUser()
    request.session = SessionStore()
    return request


def codes_texted(recipient) -> list[str]:
    """The codes texted for this recipient's share, oldest first, read from the outbox bodies
    (their only plain copy)."""
    bodies = Message.objects.filter(
        channel=Channel.SMS,
        template="sms_code",
        concerning_type="share",
        concerning_id=str(recipient.share_id),
    ).order_by("pk")
    return [_SIX_DIGITS.search(message.body_text).group(1) for message in bodies]


def texted(recipient, user, request=None) -> str:
    """Send a code through the service; the code texted."""
    tf.send_code(user=user, recipient=recipient, request=request or service_request(user))
    return codes_texted(recipient)[-1]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def code_url(recipient) -> str:
    return reverse("sharing:two_factor", args=[recipient.pk])


def viewer_url(study) -> str:
    return reverse("studies:study", args=[study.study_uid])


def logged_in(user) -> HttpsClient:
    client = HttpsClient()
    client.force_login(user)
    return client


def refresh(recipient):
    recipient.refresh_from_db()
    return recipient


# --- Sending codes -------------------------------------------------------------------------------


def test_send_code_texts_six_digits_to_the_registered_mobile_and_stores_only_a_digest(
    guarded, bob, study
):
    bob.language = "nl"
    bob.save(update_fields=["language"])
    code = texted(guarded, bob)

    assert len(code) == 6 and code.isdigit()
    stored = ShareSmsCode.objects.get(recipient=guarded, user=bob)
    assert code not in stored.code_hash and len(stored.code_hash) == 64
    assert abs(stored.expires_at - stored.created_at - timedelta(minutes=10)) < timedelta(seconds=1)
    message = Message.objects.get(channel=Channel.SMS)
    assert (message.recipient, message.language) == (MOBILE, "nl")
    assert message.context["code"] == "[redacted]"
    assert "Jane" not in message.body_text and "Doe" not in message.body_text
    event = AuditEvent.objects.get(action=Action.SHARE_CODE_SENT)
    assert event.details == {"recipient": guarded.pk, "sent": 1}
    assert (event.actor, event.study_uid, event.target_type) == (bob, study.study_uid, "share")
    assert refresh(guarded).codes_sent == 1


def test_every_study_of_the_share_gets_its_audit_event(alice, bob, org, location, study):
    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    second = make_study(org, location=location, patient_id="P-0002", description="MR Knee")
    recipient = share(alice, [study, second], ("user", bob.pk), two_factor=True).recipients.get()
    texted(recipient, bob)
    events = AuditEvent.objects.filter(action=Action.SHARE_CODE_SENT)
    assert sorted(e.study_uid for e in events) == sorted([study.study_uid, second.study_uid])


def test_a_share_asking_for_codes_needs_the_recipients_mobile(alice, bob, study):
    with pytest.raises(ValidationError) as refused:
        share(alice, study, ("user", bob.pk), two_factor=True)
    assert "Bob Tester has none" in refused.value.message_dict["two_factor"][0]
    assert not ShareRecipient.objects.exists()

    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    assert share(alice, study, ("user", bob.pk), two_factor=True).two_factor


def test_a_user_without_a_mobile_is_told_what_to_do(alice, bob, study):
    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    recipient = share(alice, study, ("user", bob.pk), two_factor=True).recipients.get()
    # Their number was removed after the share (or they reach it through a group).
    bob.mobile = ""
    bob.save(update_fields=["mobile"])
    client = logged_in(bob)

    page = client.get(code_url(recipient))
    assert "No mobile phone number is registered for your account" in page.content.decode()
    response = client.post(code_url(recipient), {"action": "send_code"})
    assert response.status_code == 400
    assert "Ask an administrator of your organization to register your mobile number" in (
        response.content.decode()
    )
    assert not Message.objects.exists() and not ShareSmsCode.objects.exists()
    assert tf.recipients_without_mobile([bob, None]) == [bob]


def test_a_resend_within_the_cooldown_is_refused_with_the_wait(guarded, bob):
    client = logged_in(bob)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        sent = client.post(code_url(guarded), {"action": "send_code"})
        assert sent.status_code == 200
        assert "ending in 56" in sent.content.decode()
    with time_machine.travel(start + timedelta(seconds=20), tick=False):
        refused = client.post(code_url(guarded), {"action": "send_code"})
    assert refused.status_code == 429
    assert "Wait 40 seconds" in refused.content.decode()
    assert refused["Retry-After"] == "40"
    assert len(codes_texted(guarded)) == 1
    with time_machine.travel(start + timedelta(seconds=60), tick=False):
        assert client.post(code_url(guarded), {"action": "send_code"}).status_code == 200
    assert len(codes_texted(guarded)) == 2


def test_no_more_codes_than_the_cap_in_a_day(guarded, bob, settings):
    settings.SHARE_MAX_SMS_CODES = 3
    start = timezone.now()
    for n in range(3):
        with time_machine.travel(start + timedelta(minutes=2 * n), tick=False):
            texted(guarded, bob)
    with (
        time_machine.travel(start + timedelta(hours=1), tick=False),
        pytest.raises(tf.CodeNotSent) as refusal,
    ):
        texted(guarded, bob)
    assert "too many codes" in refusal.value.message
    assert "St. Elsewhere Hospital" in refusal.value.message
    assert len(codes_texted(guarded)) == 3
    assert AuditEvent.objects.filter(action=Action.SHARE_CODE_SENT).count() == 3
    # The cap frees itself: a day after the first code, one more may go.
    with time_machine.travel(start + timedelta(hours=24, minutes=1), tick=False):
        texted(guarded, bob)
    assert len(codes_texted(guarded)) == 4


def test_a_resend_replaces_the_code_and_keeps_the_failures(guarded, bob, monkeypatch):
    codes = iter([123456, 654321])
    monkeypatch.setattr(codes_module.secrets, "randbelow", lambda _limit: next(codes))
    request = service_request(bob)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        texted(guarded, bob, request)
        with pytest.raises(tf.CodeRefused):
            tf.verify_code(user=bob, recipient=guarded, code="111111", request=request)
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        texted(guarded, bob, request)
        assert codes_texted(guarded) == ["123456", "654321"]
        assert (
            ShareSmsCode.objects.filter(recipient=guarded, replaced_at__isnull=False).count() == 1
        )
        # The old code no longer opens: it is a wrong code now, and the count goes on.
        with pytest.raises(tf.CodeRefused):
            tf.verify_code(user=bob, recipient=guarded, code="123456", request=request)
        assert refresh(guarded).code_failures == 2
        tf.verify_code(user=bob, recipient=guarded, code="654321", request=request)
    assert refresh(guarded).code_failures == 0


def test_a_code_expires_after_ten_minutes(guarded, bob):
    code = texted(guarded, bob)
    sent_at = ShareSmsCode.objects.get().created_at
    request = service_request(bob)

    with (
        time_machine.travel(sent_at + timedelta(minutes=10), tick=False),
        pytest.raises(tf.CodeRefused) as refusal,
    ):
        tf.verify_code(user=bob, recipient=guarded, code=code, request=request)
    assert "expired" in refusal.value.message
    assert refresh(guarded).code_failures == 0  # nothing to guess against: not a failure

    with time_machine.travel(sent_at + timedelta(minutes=9, seconds=59), tick=False):
        tf.verify_code(user=bob, recipient=guarded, code=code, request=request)


def test_a_code_opens_once(guarded, bob, study):
    code = texted(guarded, bob)
    first = logged_in(bob)
    response = first.post(code_url(guarded), {"action": "verify", "code": f"{code[:3]} {code[3:]}"})
    assert response.status_code == 303
    assert ShareSmsCode.objects.get().used_at is not None

    # Single use: bob's other browser with the same code gets nowhere.
    other = logged_in(bob)
    again = other.post(code_url(guarded), {"action": "verify", "code": code})
    assert again.status_code == 403
    assert "expired or was already used" in again.content.decode()
    assert refresh(guarded).code_failures == 0
    assert AuditEvent.objects.filter(action=Action.SHARE_CODE_VERIFIED).count() == 1


def test_a_code_is_bound_to_the_user_it_was_sent_to(alice, bob, group, study, org, location):
    """A group shares one bucket, but each member gets and enters their own code."""
    gina = member("gina", org, location, [Perm.VIEW_STUDIES], mobile="+32470999888")
    gina.memberships.get().groups.add(group)
    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    recipient = share(alice, study, ("group", group.pk), two_factor=True).recipients.get()

    bobs = texted(recipient, bob)
    with pytest.raises(tf.CodeRefused) as refusal:
        # gina has no code of her own: bob's is nothing to her.
        tf.verify_code(user=gina, recipient=recipient, code=bobs, request=service_request(gina))
    assert "Select Send code" in refusal.value.message
    request = service_request(gina)
    ginas = texted(recipient, gina, request)
    tf.verify_code(user=gina, recipient=recipient, code=ginas, request=request)
    assert study_access(request, study).level == AccessLevel.REPORT_READ


# --- Wrong codes and the block -------------------------------------------------------------------


def test_five_wrong_codes_in_a_row_block_the_share(guarded, bob, study):
    client = logged_in(bob)
    code = texted(guarded, bob)
    for left in (4, 3, 2, 1):
        response = client.post(code_url(guarded), {"action": "verify", "code": wrong(code)})
        assert response.status_code == 403
        assert f"{left} attempt" in response.content.decode()
    last = client.post(code_url(guarded), {"action": "verify", "code": wrong(code)})
    assert last.status_code == 403
    html = last.content.decode()
    assert "This share is blocked" in html and "Contact St. Elsewhere Hospital" in html

    guarded = refresh(guarded)
    assert guarded.code_failures == 5 and guarded.blocked_at is not None
    events = AuditEvent.objects.filter(action=Action.SHARE_WRONG_CODE).order_by("id")
    assert [e.details["failures"] for e in events] == [1, 2, 3, 4, 5]
    assert [e.details["blocked"] for e in events] == [False] * 4 + [True]
    assert all(e.outcome == Outcome.MINOR_FAILURE for e in events)
    assert all(code not in str(e.details) and wrong(code) not in str(e.details) for e in events)
    blocked = AuditEvent.objects.get(action=Action.SHARE_BLOCKED)
    assert (blocked.actor, blocked.study_uid) == (bob, study.study_uid)
    assert blocked.details == {"recipient": guarded.pk, "failures": 5}


def test_a_blocked_share_refuses_even_the_right_code_and_sends_no_code(guarded, bob, study):
    code = texted(guarded, bob)
    request = service_request(bob)
    for _ in range(4):
        with pytest.raises(tf.CodeRefused):
            tf.verify_code(user=bob, recipient=guarded, code=wrong(code), request=request)
    with pytest.raises(tf.ShareBlocked) as blocking:
        tf.verify_code(user=bob, recipient=guarded, code=wrong(code), request=request)
    assert "St. Elsewhere Hospital" in blocking.value.message

    with pytest.raises(tf.ShareBlocked):
        tf.verify_code(user=bob, recipient=guarded, code=code, request=request)
    with pytest.raises(tf.ShareBlocked):
        tf.send_code(user=bob, recipient=guarded, request=request)
    assert study_access(request, study) is None
    assert refresh(guarded).code_failures == 5  # guesses at a blocked share are not counted
    assert ShareSmsCode.objects.get().replaced_at is not None  # the block retired the code
    assert len(codes_texted(guarded)) == 1
    assert AuditEvent.objects.filter(action=Action.SHARE_BLOCKED).count() == 1
    # The pages say so too, and the viewer leads there.
    client = logged_in(bob)
    page = client.get(code_url(guarded))
    assert page.status_code == 403 and "This share is blocked" in page.content.decode()
    assert client.get(viewer_url(study)).url.startswith(code_url(guarded))


def test_a_right_code_resets_the_count(guarded, bob):
    request = service_request(bob)
    code = texted(guarded, bob, request)
    for _ in range(4):
        with pytest.raises(tf.CodeRefused):
            tf.verify_code(user=bob, recipient=guarded, code=wrong(code), request=request)
    tf.verify_code(user=bob, recipient=guarded, code=code, request=request)
    assert refresh(guarded).code_failures == 0

    # Four more wrong codes later (in another session, with a new code) it is still open.
    other = service_request(bob)
    with time_machine.travel(timezone.now() + timedelta(minutes=2), tick=False):
        code = texted(guarded, bob, other)
        for _ in range(4):
            with pytest.raises(tf.CodeRefused):
                tf.verify_code(user=bob, recipient=guarded, code=wrong(code), request=other)
    assert refresh(guarded).blocked_at is None
    assert refresh(guarded).code_failures == 4


def test_a_malformed_code_is_not_a_guess(guarded, bob):
    texted(guarded, bob)
    client = logged_in(bob)
    response = client.post(code_url(guarded), {"action": "verify", "code": "12ab"})
    assert response.status_code == 400
    assert "six digits" in response.content.decode()
    assert refresh(guarded).code_failures == 0


# --- The grant: this session only ----------------------------------------------------------------


def test_the_right_code_opens_the_study_in_this_session_only(guarded, bob, study):
    assert user_study_access(bob, study) is None
    request = service_request(bob)
    assert study_access(request, study) is None
    request.session.save()
    key_before = request.session.session_key

    tf.verify_code(user=bob, recipient=guarded, code=texted(guarded, bob), request=request)

    access = study_access(request, study)
    assert access.level == AccessLevel.REPORT_READ
    assert (access.via, access.two_factor_required, access.can_share) == ("share", True, False)
    assert access.until == Entry.objects.get(worklist__owner=bob).valid_until
    # A new session key, as a login gives: the old one may have been seen before the code.
    assert request.session.session_key != key_before
    assert request.session[VERIFIED_SESSION_KEY][0]["recipient"] == guarded.pk
    # Another session of the same user (a stolen password, another browser): nothing.
    assert study_access(service_request(bob), study) is None
    # Without a request (services, API tokens) the authority still fails closed.
    assert user_study_access(bob, study) is None


def test_the_verification_is_bound_to_the_user_who_entered_the_code(guarded, bob, alice, study):
    request = service_request(bob)
    tf.verify_code(user=bob, recipient=guarded, code=texted(guarded, bob), request=request)
    # The same session in someone else's hands (a login without flushing) holds nothing for them.
    request.user = User.objects.create_user("eve", password="x")
    assert study_access(request, study) is None


def test_verified_access_keeps_the_shares_terms(alice, bob, study):
    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    recipient = share(
        alice, study, ("user", bob.pk), two_factor=True, anonymize=True, access="report_write"
    ).recipients.get()
    request = service_request(bob)
    tf.verify_code(user=bob, recipient=recipient, code=texted(recipient, bob), request=request)
    access = study_access(request, study)
    assert (access.level, access.anonymized, access.two_factor_required) == (
        AccessLevel.REPORT_WRITE,
        True,
        True,
    )
    assert not access.can_read_report


def test_the_viewer_leads_to_the_code_page_and_back(guarded, bob, study):
    client = logged_in(bob)
    response = client.get(viewer_url(study))
    assert response.status_code == 302
    target = urlsplit(response.url)
    assert target.path == code_url(guarded)
    assert parse_qs(target.query) == {"next": [viewer_url(study)]}
    # No patient data in the address or the title of the code page.
    page = client.get(response.url)
    html = page.content.decode()
    assert page.status_code == 200
    assert "Doe" not in response.url and "P-0001" not in response.url
    title = html.split("<title>")[1].split("</title>")[0]
    assert "Doe" not in title and "Jane" not in title and "CT Chest" not in title
    assert "Alice Tester of St. Elsewhere Hospital" in html

    client.post(response.url, {"action": "send_code", "next": viewer_url(study)})
    (code,) = codes_texted(guarded)
    opened = client.post(
        response.url, {"action": "verify", "code": code, "next": viewer_url(study)}
    )
    assert opened.status_code == 303 and opened.url == viewer_url(study)
    viewer = client.get(viewer_url(study))
    assert viewer.status_code == 200
    assert AuditEvent.objects.filter(action=Action.STUDY_VIEWED).count() == 1
    # Coming back to the code page goes straight on.
    assert client.get(code_url(guarded)).url == viewer_url(study)


def test_the_code_page_never_redirects_off_site(guarded, bob, study):
    client = logged_in(bob)
    client.post(code_url(guarded), {"action": "send_code"})
    (code,) = codes_texted(guarded)
    opened = client.post(
        code_url(guarded), {"action": "verify", "code": code, "next": "https://evil.example/"}
    )
    # The share's only study instead.
    assert opened.url == viewer_url(study)


def test_other_doors_stay_shut_until_verified_and_api_tokens_never_open(guarded, bob, study):
    api_detail = f"/api/v1/studies/{study.study_uid}/"
    secret = ApiToken.new_secret()
    ApiToken.objects.create(
        user=bob, digest=secret_digest(secret, purpose=TOKEN_PURPOSE), prefix=secret[:8]
    )
    client = logged_in(bob)
    assert client.get(api_detail).status_code == 404
    assert client.get(reverse("studies:download", args=[study.study_uid])).status_code == 404

    client.post(code_url(guarded), {"action": "send_code"})
    (code,) = codes_texted(guarded)
    client.post(code_url(guarded), {"action": "verify", "code": code})
    # The verified browser session may use the study...
    assert client.get(api_detail).status_code == 200
    # ...an API token of the same user may not: it proves no code.
    token_client = HttpsAPIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert token_client.get(api_detail).status_code == 404


def test_the_study_stays_listed_in_the_recipients_worklist(guarded, bob, study):
    assert list(visible_studies(bob)) == [study]


def test_the_listed_row_shows_nothing_identifying_until_the_code_is_entered(guarded, bob, study):
    patient = study.patient
    identifying = (patient.family_name, patient.given_name, patient.patient_id, study.accession)
    assert all(identifying)
    client = logged_in(bob)
    directory = client.get(reverse("studies:directory"))
    row = re.search(r'<tr class="study-row.*?</tr>', directory.content.decode(), re.S).group(0)
    assert "Protected by SMS code" in row
    assert not [value for value in identifying if value in row]
    listed = client.get("/api/v1/studies/").json()["results"]
    assert [(item["withheld"], item["patient_name"], item["patient_id"]) for item in listed] == [
        (True, "Protected by SMS code", "")
    ]
    assert listed[0]["birth_date"] is None and listed[0]["accession"] == ""

    client.post(code_url(guarded), {"action": "send_code"})
    (code,) = codes_texted(guarded)
    client.post(code_url(guarded), {"action": "verify", "code": code})
    row = client.get(reverse("studies:directory")).content.decode()
    assert patient.family_name in row and "Protected by SMS code" not in row
    assert client.get("/api/v1/studies/").json()["results"][0]["withheld"] is False
    # A search by name finds nothing the row would not show (searching has no session).
    searched = client.post(reverse("studies:search"), {"q": patient.family_name}, follow=True)
    assert searched.status_code == 200 and "filtered by your search" in searched.content.decode()
    assert 'data-menu-target="study"' not in searched.content.decode()
    assert client.get("/api/v1/studies/", {"q": patient.family_name}).json()["results"] == []
    # Another session of the same user still sees it withheld.
    other = logged_in(bob).get("/api/v1/studies/").json()["results"][0]
    assert other["withheld"] is True and other["patient_name"] == "Protected by SMS code"


def test_outsiders_get_404_for_the_code_page(guarded, carol, alice, study):
    for outsider in (carol, alice):
        client = logged_in(outsider)
        assert client.get(code_url(guarded)).status_code == 404
        assert client.post(code_url(guarded), {"action": "send_code"}).status_code == 404
    with pytest.raises(tf.ShareUnavailable):
        tf.send_code(user=carol, recipient=guarded, request=service_request(carol))
    assert not Message.objects.exists()
    # Not logged in: to the login page first.
    response = HttpsClient().get(code_url(guarded))
    assert response.status_code == 302 and reverse("accounts:login") in response.url


def test_a_share_without_two_factor_has_no_code_page(alice, bob, study):
    recipient = share(alice, study, ("user", bob.pk)).recipients.get()
    assert logged_in(bob).get(code_url(recipient)).status_code == 404


# --- The share ends: so does verified access -----------------------------------------------------


def test_removing_the_share_ends_verified_access_at_once(guarded, alice, bob, study):
    request = service_request(bob)
    tf.verify_code(user=bob, recipient=guarded, code=texted(guarded, bob), request=request)
    assert study_access(request, study) is not None

    remove_share(user=alice, share=guarded.share)
    assert study_access(request, study) is None
    with pytest.raises(tf.ShareUnavailable):
        tf.send_code(user=bob, recipient=guarded, request=request)


def test_an_expired_share_ends_verified_access_without_a_job(guarded, bob, study, settings):
    # A session that lives as long as the share, to see the share's end alone.
    settings.SESSION_COOKIE_AGE = int(timedelta(days=60).total_seconds())
    request = service_request(bob)
    tf.verify_code(user=bob, recipient=guarded, code=texted(guarded, bob), request=request)
    until = Entry.objects.get(worklist__owner=bob).valid_until
    with time_machine.travel(until - timedelta(minutes=1), tick=False):
        assert study_access(request, study) is not None
    with time_machine.travel(until + timedelta(seconds=1), tick=False):
        assert study_access(request, study) is None


def test_a_verification_lasts_no_longer_than_a_session(guarded, bob, study, settings):
    request = service_request(bob)
    tf.verify_code(user=bob, recipient=guarded, code=texted(guarded, bob), request=request)
    age = timedelta(seconds=settings.SESSION_COOKIE_AGE)
    with time_machine.travel(timezone.now() + age - timedelta(minutes=1), tick=False):
        assert study_access(request, study) is not None
    with time_machine.travel(timezone.now() + age + timedelta(minutes=1), tick=False):
        assert study_access(request, study) is None


def test_a_block_ends_access_already_verified_in_other_sessions(guarded, bob, study):
    verified = service_request(bob)
    tf.verify_code(user=bob, recipient=guarded, code=texted(guarded, bob), request=verified)
    other = service_request(bob)
    with time_machine.travel(timezone.now() + timedelta(minutes=2), tick=False):
        code = texted(guarded, bob, other)
        for _ in range(4):
            with pytest.raises(tf.CodeRefused):
                tf.verify_code(user=bob, recipient=guarded, code=wrong(code), request=other)
        with pytest.raises(tf.ShareBlocked):
            tf.verify_code(user=bob, recipient=guarded, code=wrong(code), request=other)
    assert study_access(verified, study) is None


# --- Unblocking ----------------------------------------------------------------------------------


def block(recipient, user):
    request = service_request(user)
    code = texted(recipient, user, request)
    for _ in range(4):
        with pytest.raises(tf.CodeRefused):
            tf.verify_code(user=user, recipient=recipient, code=wrong(code), request=request)
    with pytest.raises(tf.ShareBlocked):
        tf.verify_code(user=user, recipient=recipient, code=wrong(code), request=request)
    return refresh(recipient)


def test_an_administrator_of_the_sending_organization_unblocks(guarded, bob, dana, study):
    blocked_at = block(guarded, bob).blocked_at

    assert tf.unblock(user=dana, recipient=guarded, request=service_request(dana)) is True
    guarded = refresh(guarded)
    assert (guarded.blocked_at, guarded.code_failures) == (None, 0)
    event = AuditEvent.objects.get(action=Action.SHARE_UNBLOCKED)
    assert (event.actor, event.study_uid) == (dana, study.study_uid)
    assert event.details["recipient"] == guarded.pk and event.details["failures"] == 5
    recorded = parse_datetime(event.details["blocked_at"])
    assert abs(recorded - blocked_at) < timedelta(milliseconds=1)
    # Unblocking again changes nothing.
    assert tf.unblock(user=dana, recipient=guarded) is False

    # bob asks for a new code (the old one was retired by the block) and gets in.
    request = service_request(bob)
    with time_machine.travel(timezone.now() + timedelta(minutes=2), tick=False):
        tf.verify_code(
            user=bob, recipient=guarded, code=texted(guarded, bob, request), request=request
        )
    assert study_access(request, study) is not None


def test_only_administrators_of_the_sending_organization_or_superusers_unblock(
    guarded, bob, alice, carol, other_org, admin_role
):
    block(guarded, bob)
    riverside_admin = make_user("rita")
    Membership.objects.create(user=riverside_admin, organization=other_org, role=admin_role)
    for refused in (alice, bob, carol, riverside_admin):
        assert not tf.may_unblock(refused, guarded)
        with pytest.raises(PermissionDenied):
            tf.unblock(user=refused, recipient=guarded)
    assert refresh(guarded).blocked_at is not None
    service_desk = User.objects.create_superuser("desk", "desk@example.org", "x")
    assert tf.unblock(user=service_desk, recipient=guarded) is True
    assert (
        not AuditEvent.objects.filter(action=Action.SHARE_UNBLOCKED)
        .exclude(actor=service_desk)
        .exists()
    )


def test_a_verified_recipient_shares_further_and_two_factor_passes_on(alice, bob, dana, study):
    dana.mobile = "+32470999888"
    dana.save(update_fields=["mobile"])
    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    recipient = share(
        alice, study, ("user", bob.pk), two_factor=True, allow_further_sharing=True
    ).recipients.get()
    request = service_request(bob)
    # Not verified: the account alone does not hold the study, so nothing can be passed on.
    with pytest.raises(PermissionDenied):
        share_with_request(bob, study, dana, request)

    tf.verify_code(
        user=bob, recipient=recipient, code=texted(recipient, bob, request), request=request
    )
    further = share_with_request(bob, study, dana, request)
    assert further.two_factor, "a share asking for codes passes the demand on"
    # Another session of bob's (or his API token) still holds nothing to share.
    with pytest.raises(PermissionDenied):
        share_with_request(bob, study, dana, service_request(bob))


def share_with_request(sender, study, to, request):
    return share_studies(
        sender=sender,
        studies=[study],
        recipients=[Recipient("user", to.pk)],
        options=options(),
        request=request,
    )
