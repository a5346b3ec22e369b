"""Guessing passwords: five failures of one account from one address, or fifty from one address
(a hospital's staff share one NAT address), within fifteen minutes, then every such attempt is
refused before the password is even looked at. (What a guesser with many addresses meets, the
account's ceiling, is in test_lockout.py.)"""

import threading
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.cache import cache
from django.urls import reverse

from accounts import lockout, services
from audit.models import Action, AuditEvent
from tests.accounts.helpers import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = reverse("accounts:login")
MONDAY_9AM = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)  # 09:00 in Brussels


def attempt(client, username, password="wrong-guess", ip="198.51.100.7"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_sixth_attempt_is_refused_before_the_hasher_runs(client, alice):
    for _ in range(5):
        assert attempt(client, "alice").status_code == 200

    with mock.patch.object(
        MD5PasswordHasher, "encode", autospec=True, side_effect=MD5PasswordHasher.encode
    ) as hasher:
        response = attempt(client, "alice", PASSWORD)

    assert response.status_code == 429
    assert not hasher.called
    assert "Too many failed attempts" in response.text
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action=Action.LOGIN_FAILED).count() == 5
    throttled = AuditEvent.objects.get(action=Action.LOGIN_THROTTLED)
    assert throttled.actor == alice
    assert throttled.details["username"] == "alice"
    assert throttled.ip == "198.51.100.7"
    assert not AuditEvent.objects.filter(action=Action.LOGIN).exists()


def test_refusal_says_when_to_try_again_and_the_lock_lifts_then(client, alice):
    with time_machine.travel(MONDAY_9AM, tick=False) as clock:
        for _ in range(5):
            attempt(client, "alice")
        clock.shift(timedelta(minutes=3))

        refused = attempt(client, "alice", PASSWORD)
        # The window began with the first failure at 09:00 and lasts fifteen minutes.
        assert "Try again in 12 minutes (after 09:15)." in refused.text

        clock.shift(timedelta(minutes=12, seconds=1))
        accepted = attempt(client, "alice", PASSWORD)

        assert accepted.status_code == 302
        assert client.session["_auth_user_id"] == str(alice.pk)


def test_guessing_many_accounts_from_one_address_locks_that_address(client, settings, alice, bob):
    settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS = 8
    for username in ("bob", "dana", "mallory", "root", "admin", "guest", "test", "user"):
        attempt(client, username, ip="203.0.113.9")

    from_guesser = attempt(client, "alice", PASSWORD, ip="203.0.113.9")
    from_elsewhere = attempt(client, "alice", PASSWORD, ip="192.0.2.44")

    assert from_guesser.status_code == 429
    assert from_elsewhere.status_code == 302


def test_a_colleagues_typos_behind_the_same_nat_do_not_lock_anyone_else_out(client, alice, bob):
    # The whole radiology department reaches the portal through one hospital NAT address.
    for _ in range(5):
        attempt(client, "bob", ip="198.51.100.1")

    assert attempt(client, "alice", PASSWORD, ip="198.51.100.1").status_code == 302
    assert attempt(client, "bob", PASSWORD, ip="198.51.100.1").status_code == 429


def test_one_address_guessing_one_account_locks_that_pair_only(client, alice, bob):
    for _ in range(5):
        attempt(client, "alice", ip="203.0.113.9")

    assert attempt(client, "alice", PASSWORD, ip="203.0.113.9").status_code == 429
    assert attempt(client, "bob", PASSWORD, ip="203.0.113.9").status_code == 302
    assert attempt(client, "alice", PASSWORD, ip="192.0.2.44").status_code == 302


def test_spelling_the_username_differently_gives_no_fresh_allowance(client, alice):
    for username in ("alice", "Alice", "ALICE", " alice", "aLiCe"):
        attempt(client, username, ip="203.0.113.9")

    assert attempt(client, "alice", PASSWORD, ip="203.0.113.9").status_code == 429


def test_a_success_does_not_reset_the_address_counter_of_other_accounts(client, alice, bob):
    # Mallory has a valid account of her own (alice's, here) and guesses bob's password
    # from the same address, logging in between guesses to try to wipe the counter.
    for _ in range(4):
        attempt(client, "bob", ip="203.0.113.9")
    assert attempt(client, "alice", PASSWORD, ip="203.0.113.9").status_code == 302
    client.post(reverse("accounts:logout"), REMOTE_ADDR="203.0.113.9")
    attempt(client, "bob", ip="203.0.113.9")

    assert attempt(client, "bob", PASSWORD, ip="203.0.113.9").status_code == 429


def test_a_success_clears_the_accounts_own_counter_from_that_address(client, alice):
    for _ in range(4):
        attempt(client, "alice", ip="192.0.2.44")
    assert attempt(client, "alice", PASSWORD, ip="192.0.2.44").status_code == 302
    client.post(reverse("accounts:logout"), REMOTE_ADDR="192.0.2.44")

    # Four more typos from there do not lock her: the count started again.
    for _ in range(4):
        attempt(client, "alice", ip="192.0.2.44")
    assert attempt(client, "alice", PASSWORD, ip="192.0.2.44").status_code == 302


def test_simultaneous_guesses_get_no_more_tries_than_the_limit(db):
    # Twenty guesses arrive at the same moment (a scripted attack): each takes its own count
    # before any password is checked, so only five of them may go on to the hasher.
    barrier = threading.Barrier(20)
    outcomes = []

    def guess():
        barrier.wait()
        outcomes.append(services.reserve_attempt(username="alice", ip="203.0.113.9"))

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    allowed = [outcome for outcome in outcomes if outcome is None]
    refused = [outcome for outcome in outcomes if outcome is not None]
    assert len(allowed) == 5
    # Each refusal says until when, and that moment lies in the future.
    now = datetime.now(tz=UTC)
    assert len(refused) == 15
    assert all(now < retry_at <= now + timedelta(minutes=16) for retry_at in refused)
    # Refused attempts are handed back: the pair's, the address's and the account's counters
    # show the five that went ahead.
    keys = lockout.throttle_keys(username="alice", ip="203.0.113.9")
    assert [cache.get(key) for key in keys] == [5, 5, 5]


# --- Behind the reverse proxy ---------------------------------------------------------------------

PROXY = "10.0.0.5"


def attempt_via_proxy(client, username, client_address, password="wrong-guess"):
    return client.post(
        LOGIN,
        {"username": username, "password": password},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=client_address,
    )


def test_behind_the_proxy_one_clients_failures_do_not_lock_out_another(client, alice, settings):
    """Every request reaches the portal from the proxy: the per-address allowance is the
    client's the proxy names, or fifty bad logins from anyone would lock everyone out."""
    settings.TRUSTED_PROXIES = [PROXY]
    settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS = 3
    for n in range(3):
        assert attempt_via_proxy(client, f"nobody-{n}", "203.0.113.9").status_code == 200
    assert attempt_via_proxy(client, "nobody-3", "203.0.113.9").status_code == 429

    assert attempt_via_proxy(client, "alice", "198.51.100.7", PASSWORD).status_code == 302

    failed = AuditEvent.objects.filter(action=Action.LOGIN_FAILED)
    assert {event.ip for event in failed} == {"203.0.113.9"}
    assert AuditEvent.objects.get(action=Action.LOGIN_THROTTLED).ip == "203.0.113.9"
    assert AuditEvent.objects.get(action=Action.LOGIN).ip == "198.51.100.7"


def test_a_forged_x_forwarded_for_buys_no_fresh_allowance(client, alice, settings):
    settings.TRUSTED_PROXIES = [PROXY]
    settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS = 3
    # Mallory writes a new address in each request; the proxy appends the one it saw.
    for n in range(3):
        attempt_via_proxy(client, f"nobody-{n}", f"192.0.2.{n}, 203.0.113.9")
    assert attempt_via_proxy(client, "nobody-3", "192.0.2.99, 203.0.113.9").status_code == 429
    # Straight to the portal, past the proxy, the header is not read at all.
    for n in range(3):
        client.post(
            LOGIN,
            {"username": f"nobody-{n}", "password": "wrong-guess"},
            REMOTE_ADDR="198.51.100.20",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}",
        )
    assert attempt(client, "alice", PASSWORD, ip="198.51.100.20").status_code == 429
