"""SMS codes of a guest link: six digits, hashed, ten minutes, single use; a resend replaces the
code after a cooldown and up to a cap, and never forgives failures; five wrong codes lock."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from audit.models import Action, AuditEvent
from guestlinks.models import SmsCode
from guestlinks.services import opening
from guestlinks.services.state import link_status
from notifications import codes as codes_module
from notifications.models import Channel, Message, MessageStatus
from tests.accounts.helpers import HttpsClient
from tests.guestlinks.conftest import link_path, service_request, sms_codes_sent

pytestmark = pytest.mark.django_db

MOBILE = "+32470123456"


@pytest.fixture
def coded(study, make_link):
    """A study link that asks for an SMS code, and its token."""
    return make_link(study, sms_code_required=True, mobile=MOBILE, language="nl")


@pytest.fixture(autouse=True)
def _guest_reads_english(guest, settings):
    """The link was sent in Dutch, so its texts go out in Dutch; the guest reads its pages in
    English, picked in the language menu."""
    guest.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"


def send_code(client, token):
    return client.post(link_path(token), {"action": "send_code"})


def open_with(client, token, code):
    return client.post(link_path(token), {"action": "open", "code": code})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_send_code_texts_six_digits_and_stores_only_a_hash(guest, coded):
    link, token = coded
    response = send_code(guest, token)

    assert response.status_code == 200
    assert "ending in 56" in response.content.decode()
    (code,) = sms_codes_sent(link)
    assert len(code) == 6 and code.isdigit()
    stored = SmsCode.objects.get(link=link)
    assert code not in stored.code_hash
    assert abs(stored.expires_at - stored.created_at - timedelta(minutes=10)) < timedelta(seconds=1)
    message = Message.objects.get(channel=Channel.SMS)
    assert (message.recipient, message.template, message.language) == (MOBILE, "sms_code", "nl")
    assert message.context["code"] == "[redacted]"
    assert (message.concerning_type, message.concerning_id) == ("guest_link", str(link.pk))
    event = AuditEvent.objects.get(action=Action.LINK_CODE_SENT)
    assert event.details == {"link": link.pk, "sent": 1}
    link.refresh_from_db()
    assert link.codes_sent == 1


def test_the_code_is_delivered_through_the_outbox(
    guest, coded, sms_outbox, tasks_in_process, django_capture_on_commit_callbacks
):
    _link, token = coded
    with django_capture_on_commit_callbacks(execute=True):
        send_code(guest, token)
    assert Message.objects.get(channel=Channel.SMS).status == MessageStatus.SENT


def test_a_valid_code_opens_once(guest, coded):
    link, token = coded
    send_code(guest, token)
    (code,) = sms_codes_sent(link)

    response = open_with(guest, token, code)
    assert response.status_code == 303
    stored = SmsCode.objects.get(link=link)
    assert stored.used_at is not None

    # Single use: another browser (reading English too) with the same code gets nowhere.
    other = HttpsClient()
    other.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    again = open_with(other, token, code)
    assert again.status_code == 403
    assert "expired or was already used" in again.content.decode()
    link.refresh_from_db()
    assert (link.uses, link.code_failures) == (1, 0)


def test_spaces_in_a_typed_code_are_ignored(guest, coded):
    link, token = coded
    send_code(guest, token)
    (code,) = sms_codes_sent(link)
    assert open_with(guest, token, f"{code[:3]} {code[3:]}").status_code == 303


def test_a_code_expires_after_ten_minutes(guest, coded):
    link, token = coded
    send_code(guest, token)
    (code,) = sms_codes_sent(link)
    sent_at = SmsCode.objects.get(link=link).created_at

    with time_machine.travel(sent_at + timedelta(minutes=10), tick=False):
        response = open_with(guest, token, code)
    assert response.status_code == 403
    assert "expired" in response.content.decode()
    link.refresh_from_db()
    assert (link.uses, link.code_failures) == (0, 0)

    with time_machine.travel(sent_at + timedelta(minutes=9, seconds=59), tick=False):
        assert open_with(guest, token, code).status_code == 303


def test_a_resend_replaces_the_code_and_keeps_the_failures(guest, coded, monkeypatch):
    link, token = coded
    codes = iter([123456, 654321])
    monkeypatch.setattr(codes_module.secrets, "randbelow", lambda _limit: next(codes))
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        send_code(guest, token)
        assert open_with(guest, token, "111111").status_code == 403
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        assert send_code(guest, token).status_code == 200
        assert sms_codes_sent(link) == ["123456", "654321"]
        assert SmsCode.objects.filter(link=link, replaced_at__isnull=False).count() == 1
        # The old code no longer opens: it is a wrong code now.
        assert open_with(guest, token, "123456").status_code == 403
        link.refresh_from_db()
        assert link.code_failures == 2
        assert open_with(guest, token, "654321").status_code == 303


def test_a_resend_within_the_cooldown_is_refused_with_the_wait(guest, coded):
    link, token = coded
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        send_code(guest, token)
    with time_machine.travel(start + timedelta(seconds=20), tick=False):
        refused = send_code(guest, token)
    assert refused.status_code == 429
    assert "Wait 40 seconds" in refused.content.decode()
    assert refused["Retry-After"] == "40"
    assert len(sms_codes_sent(link)) == 1
    with time_machine.travel(start + timedelta(seconds=60), tick=False):
        assert send_code(guest, token).status_code == 200
    assert len(sms_codes_sent(link)) == 2


def test_no_more_than_five_codes_are_sent_for_a_link(guest, coded):
    link, token = coded
    start = timezone.now()
    for n in range(5):
        with time_machine.travel(start + timedelta(minutes=2 * n), tick=False):
            assert send_code(guest, token).status_code == 200
    with time_machine.travel(start + timedelta(minutes=30), tick=False):
        refused = send_code(guest, token)
    assert refused.status_code == 429
    assert "Contact the sender" in refused.content.decode()
    assert len(sms_codes_sent(link)) == 5
    assert AuditEvent.objects.filter(action=Action.LINK_CODE_SENT).count() == 5


def test_five_wrong_codes_lock_the_link_whatever_is_resent(guest, coded):
    link, token = coded
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        send_code(guest, token)
        (code,) = sms_codes_sent(link)
        for _ in range(3):
            assert open_with(guest, token, wrong(code)).status_code == 403
    with time_machine.travel(start + timedelta(minutes=2), tick=False):
        send_code(guest, token)
        code = sms_codes_sent(link)[-1]
        assert open_with(guest, token, wrong(code)).status_code == 403
        last = open_with(guest, token, wrong(code))
        assert last.status_code == 403
        assert "no longer opens" in last.content.decode()

        link.refresh_from_db()
        assert link.code_failures == 5
        assert link_status(link).state == "locked"
        # The right code no longer helps, and the page answers like any dead link.
        assert open_with(HttpsClient(), token, code).status_code == 404
        assert HttpsClient().get(link_path(token)).status_code == 404
        assert send_code(HttpsClient(), token).status_code == 404

    events = AuditEvent.objects.filter(action=Action.LINK_WRONG_CODE).order_by("id")
    assert [e.details["failures"] for e in events] == [1, 2, 3, 4, 5]
    assert [e.details["locked"] for e in events] == [False] * 4 + [True]
    assert all(code not in str(e.details) for e in events)


def test_a_code_is_needed_even_with_the_right_password(guest, study, make_link):
    _link, token = make_link(
        study, password="open-sesame-42", sms_code_required=True, mobile=MOBILE
    )
    response = guest.post(link_path(token), {"action": "open", "password": "open-sesame-42"})
    assert response.status_code == 400
    assert "Enter the code we sent you by SMS" in response.content.decode()


def test_the_same_code_used_twice_at_once_opens_once(coded, monkeypatch):
    """The code is spent by a conditional UPDATE: of two requests that both read it as current,
    the second finds it spent and opens nothing."""
    link, _token = coded
    opening.send_code(link=link, request=service_request())
    (code,) = sms_codes_sent(link)
    read_before_spent = SmsCode.objects.get(link=link)
    opening.open_link(link=link, request=service_request(), code=code)

    monkeypatch.setattr(codes_module, "current_code", lambda policy, now=None: read_before_spent)
    with pytest.raises(opening.GateFailed) as refusal:
        opening.open_link(link=link, request=service_request(), code=code)
    assert "already used" in refusal.value.message
    link.refresh_from_db()
    assert link.uses == 1


def test_a_link_without_sms_codes_sends_none(guest, study, make_link):
    _link, token = make_link(study)
    response = send_code(guest, token)
    assert response.status_code == 400
    assert not Message.objects.exists()
