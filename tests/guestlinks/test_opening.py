"""The opening service on its own: finding a link by its token, the GET that spends nothing, the
use counted by a conditional UPDATE, and the grant it leaves in the session."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import Action, AuditEvent
from guestlinks.access import GRANTS_SESSION_KEY
from guestlinks.models import ConfirmationToken, GuestLink, LinkState
from guestlinks.services import opening
from guestlinks.services.state import link_status, openable
from guestlinks.tokens import recovered_link_url
from studies.services.worklists import location_worklist
from tests.guestlinks.conftest import service_request

pytestmark = pytest.mark.django_db


# --- Finding a link -----------------------------------------------------------------------------


def test_a_token_finds_its_link_and_nothing_else_does(study, make_link):
    link, token = make_link(study)
    assert opening.find_link(token=token, request=service_request()) == link
    for guess in (token[:-1] + ("A" if token[-1] != "A" else "B"), token.upper(), "", "a" * 43):
        with pytest.raises(opening.LinkUnavailable):
            opening.find_link(token=guess, request=service_request())


def test_links_sent_before_a_key_rotation_still_open(study, make_link, settings):
    link, token = make_link(study)
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-key-for-the-portal-0123456789abcdefghijklmnop"
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert opening.find_link(token=token, request=service_request()) == link
    # The address can still be shown (and sent after a confirmation) under the old key.
    assert recovered_link_url(link).endswith(f"/l/{token}")

    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(opening.LinkUnavailable):
        opening.find_link(token=token, request=service_request())


def test_the_found_link_is_the_row_as_a_queryset_reads_it_in_one_query(
    study, make_link, django_assert_num_queries
):
    link, token = make_link(
        study,
        password="open-sesame-42",
        max_uses=3,
        expires_in=timedelta(days=2),
        email="recipient@example.org",
        sms_code_required=True,
        mobile="+32470123456",
    )
    with django_assert_num_queries(1):
        found = opening.find_link(token=token, request=service_request())
    expected = GuestLink.objects.get(pk=link.pk)
    fields = [field.attname for field in GuestLink._meta.concrete_fields]
    assert [getattr(found, name) for name in fields] == [getattr(expected, name) for name in fields]
    assert found.expires_at.tzinfo is not None and found.expires_at == expected.expires_at
    assert not found._state.adding
    # Its organization, study and patient came with it (the page and the audit read them).
    with django_assert_num_queries(0):
        assert found.organization.name == study.organization.name
        assert found.study.patient == study.patient
    # Saved again, the row it came from is updated, not a new one added.
    found.opens = 7
    found.save(update_fields=["opens"])
    assert GuestLink.objects.get(pk=link.pk).opens == 7


def test_the_probe_allowance_is_per_address(study, make_link, settings):
    settings.GUESTLINK_PROBE_LIMIT = 2
    for _ in range(2):
        with pytest.raises(opening.LinkUnavailable):
            opening.find_link(token="b" * 43, request=service_request(address="192.0.2.1"))
    with pytest.raises(opening.LinkThrottled) as throttled:
        opening.find_link(token="b" * 43, request=service_request(address="192.0.2.1"))
    assert throttled.value.status == 429
    assert throttled.value.message == opening.unavailable_message()
    with pytest.raises(opening.LinkUnavailable) as elsewhere:
        opening.find_link(token="b" * 43, request=service_request(address="192.0.2.2"))
    assert not isinstance(elsewhere.value, opening.LinkThrottled)


def test_a_valid_link_is_never_refused_by_the_probe_throttle(study, make_link, settings):
    """Unknown tokens from a shared address (a hospital's or a mobile carrier's NAT) must not
    deny a recipient behind it their link. A 256-bit token cannot be
    guessed, so only unknown tokens are throttled."""
    settings.GUESTLINK_PROBE_LIMIT = 2
    link, token = make_link(study)
    for _ in range(3):
        with pytest.raises(opening.LinkUnavailable):
            opening.find_link(token="b" * 43, request=service_request(address="192.0.2.1"))
    with pytest.raises(opening.LinkThrottled):
        opening.find_link(token="c" * 43, request=service_request(address="192.0.2.1"))

    for _ in range(5):
        assert opening.find_link(token=token, request=service_request(address="192.0.2.1")) == link
    # Finding it forgives no unknown token: the address is still over its allowance.
    with pytest.raises(opening.LinkThrottled):
        opening.find_link(token="d" * 43, request=service_request(address="192.0.2.1"))


def test_a_valid_confirmation_is_never_refused_by_the_probe_throttle(study, make_link, settings):
    settings.GUESTLINK_PROBE_LIMIT = 1
    link, _token = make_link(
        study, email="jan.peeters@example.org", require_email_confirmation=True
    )
    token = opening.start_confirmation(link).split("/l/")[1].removesuffix("/confirm")
    with pytest.raises(opening.LinkUnavailable):
        opening.find_confirmation(token="c" * 43, request=service_request(address="192.0.2.1"))
    with pytest.raises(opening.LinkThrottled):
        opening.find_confirmation(token="d" * 43, request=service_request(address="192.0.2.1"))

    found = opening.find_confirmation(token=token, request=service_request(address="192.0.2.1"))
    assert found.link == link


def test_a_closed_link_keeps_its_count_against_the_address(study, make_link, settings):
    """A prober learns nothing from the allowance either: a dead link counts like an unknown
    token; only an open link is not counted."""
    settings.GUESTLINK_PROBE_LIMIT = 2
    _, dead = make_link(study, state=LinkState.REVOKED)
    for _ in range(2):
        opening.find_link(token=dead, request=service_request())
    with pytest.raises(opening.LinkThrottled):
        opening.find_link(token=dead, request=service_request())


# --- The GET ----------------------------------------------------------------------------------


def test_show_link_counts_a_visit_per_address_and_spends_nothing(study, make_link):
    link, _token = make_link(study, max_uses=1)
    page = opening.show_link(link=link, request=service_request())
    assert page.organization_name == study.organization.name
    link.refresh_from_db()
    assert (link.opens, link.uses) == (1, 0)

    for address in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
        opening.show_link(link=link, request=service_request(address=address))
    link.refresh_from_db()
    assert (link.opens, link.uses) == (3, 0)
    assert AuditEvent.objects.filter(action=Action.LINK_OPENED).count() == link.opens


def test_show_link_refuses_a_closed_link_and_audits_it_once_per_address(study, make_link):
    link, _token = make_link(study, expires_in=timedelta(minutes=-5))
    for address in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
        with pytest.raises(opening.LinkUnavailable):
            opening.show_link(link=link, request=service_request(address=address))
    refusals = AuditEvent.objects.filter(action=Action.LINK_REFUSED)
    assert sorted(e.ip for e in refusals) == ["192.0.2.1", "192.0.2.2"]
    assert {e.details["reason"] for e in refusals} == {"expired"}
    link.refresh_from_db()
    assert link.opens == 0


def test_the_page_describes_the_gates(study, make_link, alice, bob):
    link, _token = make_link(
        study,
        login_required=True,
        email="alice@example.org",
        password="open-sesame-42",
        max_password_attempts=4,
        password_failures=1,
        sms_code_required=True,
        mobile="+32470123456",
    )
    anonymous = opening.describe_link(link, service_request())
    assert anonymous.needs_login and not anonymous.wrong_account
    assert anonymous.password_required and not anonymous.birth_date_password
    assert (anonymous.code_required, anonymous.code_active) == (True, False)
    assert (anonymous.mobile_hint, anonymous.attempts_left) == ("56", 3)
    assert opening.describe_link(link, service_request(bob)).wrong_account
    assert not opening.describe_link(link, service_request(alice)).wrong_account


# --- The use and the grant -----------------------------------------------------------------


def test_open_link_counts_one_use_and_stores_the_grant(study, make_link):
    link, _token = make_link(study, max_uses=3)
    request = service_request()
    request.session["unrelated"] = "kept"
    request.session.save()
    before = request.session.session_key

    grant = opening.open_link(link=link, request=request)

    assert grant.study_ids == [study.pk]
    assert grant.destination == f"/studies/{study.study_uid}/"
    link.refresh_from_db()
    assert link.uses == 1
    assert request.session.session_key != before
    assert request.session["unrelated"] == "kept"
    (stored,) = request.session[GRANTS_SESSION_KEY]
    assert (stored["link"], stored["studies"]) == (link.pk, [study.pk])
    used = AuditEvent.objects.get(action=Action.LINK_USED)
    assert used.details == {"link": link.pk, "target_kind": "study", "studies": 1}


def test_opening_the_same_link_again_replaces_its_grant(study, make_link):
    link, _token = make_link(study)
    request = service_request()
    opening.open_link(link=link, request=request)
    opening.open_link(link=link, request=request)
    assert [g["link"] for g in request.session[GRANTS_SESSION_KEY]] == [link.pk]


def test_a_worklist_link_leads_to_the_guest_list(org, location, make_link):
    link, _token = make_link(location_worklist(location))
    grant = opening.open_link(link=link, request=service_request())
    assert grant.destination == "/l/studies/"


def test_a_link_that_runs_out_between_the_gates_and_the_use_opens_nothing(study, make_link):
    """The conditional UPDATE decides, not the row read at the first gate."""
    link, _token = make_link(study, max_uses=1)
    stale = GuestLink.objects.get(pk=link.pk)
    GuestLink.objects.filter(pk=link.pk).update(uses=1)  # someone else took the last use
    request = service_request()

    with pytest.raises(opening.LinkUnavailable):
        opening.open_link(link=stale, request=request)

    assert GRANTS_SESSION_KEY not in request.session
    assert not AuditEvent.objects.filter(action=Action.LINK_USED).exists()
    refusal = AuditEvent.objects.get(action=Action.LINK_REFUSED)
    assert refusal.details == {"link": link.pk, "reason": "used_up"}


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"state": LinkState.REVOKED},
        {"state": LinkState.DELETED},
        {"expires_at": "past"},
        {"expires_at": "future"},
        {"max_uses": 2, "uses": 2},
        {"max_uses": 2, "uses": 1},
        {"max_password_attempts": 3, "password_failures": 3},
        {"max_password_attempts": 3, "password_failures": 2},
        {"code_failures": 5},
        {"code_failures": 4},
    ],
)
def test_the_conditional_update_and_the_status_agree(study, make_link, fields):
    now = timezone.now()
    if fields.get("expires_at") == "past":
        fields["expires_at"] = now - timedelta(seconds=1)
    elif fields.get("expires_at") == "future":
        fields["expires_at"] = now + timedelta(hours=1)
    link, _token = make_link(study, **fields)
    in_query = GuestLink.objects.filter(openable(now=now), pk=link.pk).exists()
    assert in_query == link_status(link, now=now).is_open


# --- Small helpers ----------------------------------------------------------------------------


def test_birth_dates_are_read_year_first_only():
    assert opening._as_birth_date("1970-01-31") == "19700131"
    assert opening._as_birth_date(" 1970.01.31 ") == "19700131"
    assert opening._as_birth_date("19700131") == "19700131"
    assert opening._as_birth_date("31-01-1970") == "31-01-1970"


def test_the_confirmation_address_is_masked():
    assert opening.masked_email("jan.peeters@example.org") == "j•••@example.org"


def test_a_link_whose_key_was_retired_cannot_be_sent_after_confirmation(study, make_link, settings):
    link, _token = make_link(study, email="jan@example.org", require_email_confirmation=True)
    opening.start_confirmation(link)
    confirmation = ConfirmationToken.objects.get(link=link)
    # The link's key is gone (not even a fallback): its address cannot be made again.
    settings.SECRET_KEY = "a-new-key-for-the-portal-0123456789abcdefghijklmnop"
    settings.SECRET_KEY_FALLBACKS = []

    with pytest.raises(opening.LinkUnavailable):
        opening.confirm_email(confirmation=confirmation, request=service_request())
    link.refresh_from_db()
    confirmation.refresh_from_db()
    assert (link.confirmed_at, confirmation.used_at) == (None, None)
