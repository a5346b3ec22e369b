"""Issue 11, point 7: a wrong SMS code on a guest link says how many tries are left before the
link locks, as a share's code page does; both count with the one code mechanism
(``notifications.codes``)."""

from __future__ import annotations

from html import unescape

import pytest

from guestlinks.models import GuestLink
from guestlinks.services import opening
from notifications import codes
from tests.guestlinks.conftest import link_path, service_request, sms_codes_sent

pytestmark = pytest.mark.django_db

MOBILE = "+32470123456"


@pytest.fixture
def coded(study, make_link):
    return make_link(study, sms_code_required=True, mobile=MOBILE)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def open_with(client, token, code):
    return client.post(link_path(token), {"action": "open", "code": code})


def test_each_wrong_code_says_how_many_attempts_are_left(guest, coded, settings):
    settings.GUESTLINK_MAX_CODE_FAILURES = 3
    link, token = coded
    guest.post(link_path(token), {"action": "send_code"})
    (code,) = sms_codes_sent(link)

    first = open_with(guest, token, wrong(code))
    assert first.status_code == 403
    assert "2 attempts left before the link locks." in unescape(first.content.decode())

    second = open_with(guest, token, wrong(code))
    assert "1 attempt left before the link locks." in unescape(second.content.decode())

    # The last one says the link no longer opens, and not how many are "left".
    last = open_with(guest, token, wrong(code))
    text = unescape(last.content.decode())
    assert "no longer opens" in text and "left before the link locks" not in text
    link.refresh_from_db()
    assert link.code_failures == 3


def test_the_right_code_after_a_wrong_one_still_opens(guest, coded):
    link, token = coded
    guest.post(link_path(token), {"action": "send_code"})
    (code,) = sms_codes_sent(link)
    assert "4 attempts left" in open_with(guest, token, wrong(code)).content.decode()
    assert open_with(guest, token, code).status_code == 303


def test_the_count_comes_from_the_shared_code_mechanism(coded, monkeypatch):
    """The service's refusal carries the number ``notifications.codes`` counted."""
    link, _token = coded
    request = service_request()
    opening.send_code(link=link, request=request)
    (code,) = sms_codes_sent(link)
    with pytest.raises(opening.GateFailed) as refused:
        opening.open_link(link=GuestLink.objects.get(pk=link.pk), request=request, code=wrong(code))
    assert refused.value.field == "code" and not refused.value.locked
    assert "4 attempts left before the link locks" in refused.value.message

    check = codes.Check(codes.Outcome.WRONG, link, failures=2, max_failures=5)
    assert check.attempts_left == 3
    assert codes.Check(codes.Outcome.WRONG, link, failures=7, max_failures=5).attempts_left == 0
