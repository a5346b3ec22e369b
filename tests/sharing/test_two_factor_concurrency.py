"""Thirty wrong SMS codes for one share arrive at the same instant: exactly five are checked and
counted, the share is blocked once, and the audit trail holds five SHARE_WRONG_CODE and one
SHARE_BLOCKED.

Each guess is checked under the ShareRecipient row's lock (``select_for_update``): on PostgreSQL
concurrent guesses queue on it and each sees the count the previous one left; SQLite serializes
write transactions (BEGIN IMMEDIATE). The block itself is a conditional UPDATE
(``blocked_at IS NULL``), so it can happen only once.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from audit.models import Action, AuditEvent
from audit.selectors import verify_chain
from notifications import codes as codes_module
from sharing.models import ShareRecipient, ShareSmsCode
from sharing.services import two_factor as tf
from studies.access import study_access
from tests.guestlinks.test_link_concurrency import sqlite_file_database  # noqa: F401
from tests.sharing.conftest import share
from tests.sharing.test_two_factor import MOBILE, codes_texted, service_request, wrong

GUESSERS = 30
LIMIT = 5


def guess_all_at_once(recipient: ShareRecipient, user, codes: list[str]) -> dict[str, list]:
    """Each guesser calls the service at the barrier, on a connection of its own."""
    start = threading.Barrier(len(codes))
    outcomes: dict[str, list] = {"verified": [], "refused": [], "blocked": []}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def guesser(code: str) -> None:
        try:
            row = ShareRecipient.objects.select_related("share").get(pk=recipient.pk)
            request = service_request(user)
            start.wait(timeout=30)
            try:
                tf.verify_code(user=user, recipient=row, code=code, request=request)
            except tf.ShareBlocked as refusal:
                with lock:
                    outcomes["blocked"].append(refusal)
            except tf.CodeRefused as refusal:
                with lock:
                    outcomes["refused"].append(refusal)
            else:
                with lock:
                    outcomes["verified"].append(request)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guesser, args=(code,)) for code in codes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return outcomes


@pytest.fixture
def guarded_share(alice, bob, study):
    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    recipient = share(alice, study, ("user", bob.pk), two_factor=True).recipients.get()
    tf.send_code(user=bob, recipient=recipient, request=service_request(bob))
    (code,) = codes_texted(recipient)
    return recipient, code


def assert_blocked_exactly_once(recipient, outcomes, checked):
    assert outcomes["verified"] == []
    assert len(checked) == LIMIT
    assert len(outcomes["refused"]) == LIMIT - 1
    assert len(outcomes["blocked"]) == GUESSERS - (LIMIT - 1)
    recipient.refresh_from_db()
    assert recipient.code_failures == LIMIT
    assert recipient.blocked_at is not None
    wrong_codes = AuditEvent.objects.filter(action=Action.SHARE_WRONG_CODE)
    assert sorted(e.details["failures"] for e in wrong_codes) == [1, 2, 3, 4, 5]
    assert [e.details["blocked"] for e in wrong_codes.order_by("id")] == [False] * 4 + [True]
    assert AuditEvent.objects.filter(action=Action.SHARE_BLOCKED).count() == 1
    assert verify_chain().ok


def count_checks(monkeypatch) -> list[str]:
    """Every code compared with the stored digest (sending a code computes one too: not here)."""
    checked: list[str] = []
    real_digest = codes_module.secret_digest

    def counting(code, *, purpose):
        checked.append(code)
        return real_digest(code, purpose=purpose)

    monkeypatch.setattr(codes_module, "secret_digest", counting)
    return checked


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_thirty_concurrent_wrong_codes_count_five_and_block_once_on_postgresql(
    require_postgres, guarded_share, bob, monkeypatch
):
    recipient, code = guarded_share
    checked = count_checks(monkeypatch)
    outcomes = guess_all_at_once(recipient, bob, [wrong(code)] * GUESSERS)
    assert_blocked_exactly_once(recipient, outcomes, checked)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_right_code_sent_thirty_times_at_once_opens_once_on_postgresql(
    require_postgres, guarded_share, bob, study
):
    recipient, code = guarded_share
    outcomes = guess_all_at_once(recipient, bob, [code] * GUESSERS)

    assert len(outcomes["verified"]) == 1
    assert len(outcomes["refused"]) == GUESSERS - 1
    assert all("already used" in refusal.message for refusal in outcomes["refused"])
    assert study_access(outcomes["verified"][0], study) is not None
    recipient.refresh_from_db()
    assert (recipient.code_failures, recipient.blocked_at) == (0, None)
    assert ShareSmsCode.objects.get().used_at is not None
    assert AuditEvent.objects.filter(action=Action.SHARE_CODE_VERIFIED).count() == 1


def test_thirty_concurrent_wrong_codes_count_five_and_block_once_on_sqlite(
    sqlite_file_database,  # noqa: F811
    alice,
    bob,
    org,
    location,
    monkeypatch,
):
    from tests.factories import make_study

    study = make_study(org, location=location)
    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    recipient = share(alice, study, ("user", bob.pk), two_factor=True).recipients.get()
    tf.send_code(user=bob, recipient=recipient, request=service_request(bob))
    (code,) = codes_texted(recipient)
    checked = count_checks(monkeypatch)
    outcomes = guess_all_at_once(recipient, bob, [wrong(code)] * GUESSERS)
    assert_blocked_exactly_once(recipient, outcomes, checked)
