"""Each gate of a guest link, in the order ARCHITECTURE.md gives them: active (expiry, uses, lock)
-> email confirmation -> login -> password (or date of birth) -> SMS code -> grant."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from audit.models import Action, AuditEvent, Outcome
from guestlinks.services import opening
from guestlinks.services.state import link_status
from tests.accounts.helpers import PASSWORD, HttpsClient
from tests.guestlinks.conftest import link_path, service_request, sms_codes_sent

pytestmark = pytest.mark.django_db


def open_study(client, token: str, **data):
    return client.post(link_path(token), {"action": "open", **data})


def fresh_client(address: str = "127.0.0.1") -> HttpsClient:
    return HttpsClient(REMOTE_ADDR=address)


# --- Active: expiry ------------------------------------------------------------------------------


def test_a_link_valid_for_hours_opens_until_the_last_second_and_not_after(study, make_link):
    link, token = make_link(study, expires_in=timedelta(hours=6))
    assert link.expires_at is not None

    with time_machine.travel(link.expires_at - timedelta(seconds=1), tick=False):
        assert fresh_client().get(link_path(token)).status_code == 200
        assert open_study(fresh_client(), token).status_code == 303

    with time_machine.travel(link.expires_at, tick=False):
        assert fresh_client().get(link_path(token)).status_code == 404
        assert open_study(fresh_client("192.0.2.10"), token).status_code == 404

    refusal = AuditEvent.objects.filter(action=Action.LINK_REFUSED).latest("id")
    assert refusal.details == {"link": link.pk, "reason": "expired"}
    assert refusal.outcome == Outcome.MINOR_FAILURE


# --- Active: uses --------------------------------------------------------------------------------


def test_a_link_opens_as_many_times_as_it_has_uses(study, make_link):
    link, token = make_link(study, max_uses=2)
    assert open_study(fresh_client(), token).status_code == 303
    assert open_study(fresh_client(), token).status_code == 303
    assert open_study(fresh_client(), token).status_code == 404

    link.refresh_from_db()
    assert link.uses == 2
    assert link_status(link).state == "used_up"
    assert AuditEvent.objects.filter(action=Action.LINK_USED).count() == 2


def test_each_use_is_audited_with_the_link_and_the_recipient(study, make_link, alice):
    link, token = make_link(study)
    client = fresh_client("203.0.113.5")
    client.force_login(alice)
    open_study(client, token)

    used = AuditEvent.objects.get(action=Action.LINK_USED)
    assert used.actor_id == alice.pk
    assert used.ip == "203.0.113.5"
    assert used.study_uid == study.study_uid
    assert used.details == {"link": link.pk, "target_kind": "study", "studies": 1}


# --- Email confirmation ----------------------------------------------------------------------


def test_an_unconfirmed_link_only_says_to_check_the_email(study, make_link):
    link, token = make_link(
        study,
        email="jan@example.org",
        require_email_confirmation=True,
        login_required=True,
        password="open-sesame-42",
    )
    client = fresh_client()
    html = client.get(link_path(token)).content.decode()
    assert "Check your email" in html
    assert 'name="password"' not in html and "Log in to continue" not in html

    # Confirmation comes before the login gate: no redirect to the login page.
    response = open_study(client, token, password="open-sesame-42")
    assert response.status_code == 403
    assert "Check your email" in response.content.decode()
    link.refresh_from_db()
    assert (link.uses, link.password_failures) == (0, 0)


# --- Login ---------------------------------------------------------------------------------------


def test_a_login_link_sends_a_visitor_to_the_login_page_and_back(study, make_link):
    _, token = make_link(study, login_required=True)
    client = fresh_client()
    page = client.get(link_path(token)).content.decode()
    assert "Log in to continue" in page
    assert f"{reverse('accounts:login')}?next=/l/" in page

    response = open_study(client, token)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('accounts:login')}?next={link_path(token)}"


def test_logging_in_brings_the_recipient_back_to_the_link(study, make_link, alice):
    _, token = make_link(study, login_required=True, email="alice@example.org")
    client = fresh_client()
    to_login = open_study(client, token)
    login_page = client.get(to_login["Location"])
    assert f'name="next" value="{link_path(token)}"' in login_page.content.decode()

    logged_in = client.post(
        reverse("accounts:login"),
        {"username": "alice", "password": PASSWORD, "next": link_path(token)},
    )
    assert logged_in.status_code == 302
    assert logged_in["Location"] == link_path(token)
    page = client.get(link_path(token)).content.decode()
    assert "Open study" in page and "Log in to continue" not in page
    assert open_study(client, token).status_code == 303


def test_a_login_link_for_an_address_refuses_another_account(study, make_link, alice, bob):
    link, token = make_link(study, login_required=True, email="Alice@Example.org")
    client = fresh_client()
    client.force_login(bob)

    page = client.get(link_path(token))
    assert page.status_code == 200
    assert "This link was sent to another account" in page.content.decode()
    refused = open_study(client, token)
    assert refused.status_code == 403
    html = refused.content.decode()
    assert "This link was sent to another account" in html
    assert "alice" not in html.lower()
    assert "Doe" not in html
    refusal = AuditEvent.objects.get(action=Action.LINK_REFUSED)
    assert refusal.details == {"link": link.pk, "reason": "other_account"}
    assert refusal.actor_id == bob.pk

    # The account with that address (in any case) is admitted.
    client.force_login(alice)
    admitted = open_study(client, token)
    assert admitted.status_code == 303
    assert client.get(admitted["Location"]).status_code == 200
    link.refresh_from_db()
    assert link.uses == 1


def test_a_login_link_without_an_address_admits_any_logged_in_user(study, make_link, carol):
    _, token = make_link(study, login_required=True)
    client = fresh_client()
    client.force_login(carol)
    assert open_study(client, token).status_code == 303


# --- Password ------------------------------------------------------------------------------------


def test_the_right_password_opens_and_a_wrong_one_is_counted_and_audited(study, make_link):
    link, token = make_link(study, password="open-sesame-42", max_password_attempts=3)
    client = fresh_client()

    wrong = open_study(client, token, password="open-sesame-24")
    assert wrong.status_code == 403
    assert "Wrong password. 2 attempts left" in wrong.content.decode()
    missing = open_study(client, token)
    assert missing.status_code == 400
    assert "Enter the password." in missing.content.decode()

    assert open_study(client, token, password="open-sesame-42").status_code == 303
    link.refresh_from_db()
    assert (link.password_failures, link.uses) == (1, 1)
    event = AuditEvent.objects.get(action=Action.LINK_WRONG_PASSWORD)
    assert event.details == {"link": link.pk, "failures": 1, "locked": False}
    assert event.outcome == Outcome.MINOR_FAILURE


def test_max_password_attempts_lock_the_link_even_with_uses_left(study, make_link):
    link, token = make_link(study, password="open-sesame-42", max_password_attempts=3, max_uses=10)
    client = fresh_client()
    for _ in range(2):
        assert open_study(client, token, password="guess").status_code == 403
    last = open_study(client, token, password="guess")
    assert last.status_code == 403
    assert "no longer opens" in last.content.decode()

    link.refresh_from_db()
    assert link.password_failures == 3
    assert link_status(link).state == "locked"
    assert link_status(link).uses_left == 10
    # From now on even the right password gets the answer of any dead link.
    right = open_study(fresh_client("192.0.2.44"), token, password="open-sesame-42")
    assert right.status_code == 404
    assert opening.unavailable_message() in right.content.decode()
    assert [
        e.details["locked"]
        for e in AuditEvent.objects.filter(action=Action.LINK_WRONG_PASSWORD).order_by("id")
    ] == [False, False, True]


def test_the_date_of_birth_opens_a_birth_date_link(study, make_link):
    # The sender's side hashes the patient's birth date as YYYYMMDD (Jane Doe: 1970-01-31).
    link, token = make_link(study, password="19700131", password_is_birth_date=True)
    assert open_study(fresh_client(), token, password="19700131").status_code == 303
    # Written with separators, year first, it is the same date.
    assert open_study(fresh_client(), token, password="1970-01-31").status_code == 303
    # Day first is not guessed at: it could be read two ways.
    assert open_study(fresh_client(), token, password="31/01/1970").status_code == 403
    link.refresh_from_db()
    assert (link.uses, link.password_failures) == (2, 1)


def test_password_guesses_beyond_the_link_rate_never_reach_the_hasher(study, make_link, settings):
    settings.GUESTLINK_GUESSES_PER_LINK = 10
    settings.GUESTLINK_GUESSES_PER_ADDRESS = 100
    link, token = make_link(study, password="open-sesame-42")
    checks = []
    real_check = opening.check_link_password

    def counting_check(password, encoded):
        checks.append(password)
        return real_check(password, encoded)

    with mock.patch.object(opening, "check_link_password", counting_check):
        statuses = [
            open_study(fresh_client(f"192.0.2.{n}"), token, password=f"guess-{n}").status_code
            for n in range(12)
        ]
        # The right password from yet another address: the link's allowance is spent too.
        throttled = open_study(fresh_client("192.0.2.200"), token, password="open-sesame-42")

    assert statuses == [403] * 10 + [429, 429]
    assert len(checks) == 10
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert "Too many attempts" in throttled.content.decode()
    link.refresh_from_db()
    assert (link.password_failures, link.uses) == (10, 0)
    alerts = AuditEvent.objects.filter(action=Action.LINK_REFUSED)
    assert {e.details["reason"] for e in alerts} == {"too_many_guesses"}

    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        assert (
            open_study(fresh_client("192.0.2.201"), token, password="open-sesame-42").status_code
            == 303
        )


def test_password_guesses_from_one_address_are_limited_across_links(study, make_link, settings):
    settings.GUESTLINK_GUESSES_PER_LINK = 100
    settings.GUESTLINK_GUESSES_PER_ADDRESS = 20
    links = [make_link(study, password=f"password-{n}")[1] for n in range(3)]
    client = fresh_client("198.51.100.9")
    statuses = [open_study(client, links[n % 3], password="nope").status_code for n in range(21)]
    assert statuses[:20] == [403] * 20
    assert statuses[20] == 429
    # Another address still may try.
    assert (
        open_study(fresh_client("198.51.100.10"), links[0], password="password-0").status_code
        == 303
    )


def test_right_answers_are_handed_back_to_the_allowance(study, make_link, settings):
    settings.GUESTLINK_GUESSES_PER_LINK = 2
    _, token = make_link(study, password="open-sesame-42")
    for _ in range(5):
        assert open_study(fresh_client(), token, password="open-sesame-42").status_code == 303


# --- SMS code (details in test_sms_codes) --------------------------------------------------------


def test_the_code_gate_comes_after_the_password(study, make_link, sms_outbox):
    link, token = make_link(
        study, password="open-sesame-42", sms_code_required=True, mobile="+32470123456"
    )
    client = fresh_client()
    client.post(link_path(token), {"action": "send_code"})
    (code,) = sms_codes_sent(link)
    wrong_password = open_study(client, token, password="nope", code=code)
    assert wrong_password.status_code == 403
    link.refresh_from_db()
    # The code was not tried, so not spent and not failed.
    assert (link.password_failures, link.code_failures) == (1, 0)
    assert open_study(client, token, password="open-sesame-42", code=code).status_code == 303


# --- The order of all gates ---------------------------------------------------------------------


def test_gates_refuse_in_order(study, make_link, alice):
    """A link with every gate: each refusal names the first gate not passed."""
    link, _token = make_link(
        study,
        email="alice@example.org",
        require_email_confirmation=True,
        login_required=True,
        password="open-sesame-42",
        sms_code_required=True,
        mobile="+32470123456",
    )
    with pytest.raises(opening.ConfirmationPending):
        opening.open_link(link=link, request=service_request())

    link.confirmed_at = timezone.now()
    link.save(update_fields=["confirmed_at"])
    with pytest.raises(opening.LoginRequired):
        opening.open_link(link=link, request=service_request())
    with pytest.raises(opening.GateFailed) as password_refusal:
        opening.open_link(link=link, request=service_request(alice))
    assert password_refusal.value.field == "password"
    with pytest.raises(opening.GateFailed) as code_refusal:
        opening.open_link(link=link, request=service_request(alice), password="open-sesame-42")
    assert code_refusal.value.field == "code"
