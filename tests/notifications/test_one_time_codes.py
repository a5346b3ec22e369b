"""SMS one-time codes (issue 10, finding 0): guest links and shares send and check their codes
through one mechanism, ``notifications.codes``, so that a fix lands once. What differs between
them is a policy: the row that is locked, what closes it, what the limit does, what is audited.

The mechanism's stories use a guest link and its SmsCode rows as the holder, with a policy of
the test's own, so that they say what the mechanism does whatever either feature asks of it.
"""

from __future__ import annotations

import ast
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from guestlinks.models import GuestLink, LinkState, SmsCode, TargetKind
from guestlinks.services import opening
from guestlinks.tokens import digest_for, new_salt, token_for
from notifications import codes
from notifications.models import Channel, Message
from sharing.services import two_factor as tf
from tests.factories import make_study
from tests.guestlinks.conftest import service_request, sms_codes_sent
from tests.guestlinks.test_link_concurrency import sqlite_file_database  # noqa: F401
from tests.sharing.conftest import share
from tests.sharing.test_two_factor import MOBILE, codes_texted
from tests.sharing.test_two_factor import service_request as share_request

ROOT = Path(__file__).resolve().parents[2]
ONE_MODULE = "notifications/codes.py"
FEATURES = ("guestlinks", "sharing")
LIMIT = 3
VALIDITY = timedelta(minutes=10)


# --- One module ----------------------------------------------------------------------------------


def _sources(*packages: str) -> dict[str, ast.Module]:
    return {
        str(path.relative_to(ROOT)): ast.parse(path.read_text(encoding="utf-8"))
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    }


def _called(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _counts_code_failures(node: ast.AST) -> bool:
    """``F("code_failures")``, ``code_failures=F(...) + 1``, or the counter's name handed to a
    helper that counts it (``_reserve_failure(link, request, "code_failures", keys)``)."""
    if not isinstance(node, ast.Call):
        return False
    if any(isinstance(arg, ast.Constant) and arg.value == "code_failures" for arg in node.args):
        return True
    return any(
        keyword.arg == "code_failures"
        and any(
            isinstance(inner, ast.Call) and _called(inner) == "F"
            for inner in ast.walk(keyword.value)
        )
        for keyword in node.keywords
    )


def test_sms_one_time_codes_are_issued_and_checked_in_one_module():
    every_package = [
        path.name
        for path in ROOT.iterdir()
        if (path / "__init__.py").exists() and path.name not in ("tests", ".venv")
    ]
    sources = _sources(*every_package)
    features = {name: tree for name, tree in sources.items() if name.split("/")[0] in FEATURES}

    # The stored digest is written and compared in one module (the models declare it).
    touching_digests = sorted(
        name
        for name, tree in sources.items()
        if not name.endswith("models.py")
        and any(
            (isinstance(node, ast.Attribute) and node.attr == "code_hash")
            or (isinstance(node, ast.keyword) and node.arg == "code_hash")
            for node in ast.walk(tree)
        )
    )
    assert touching_digests == [ONE_MODULE]

    # No constant-time comparison of codes in the features: what is left compares link tokens.
    comparing = sorted(
        name
        for name, tree in features.items()
        if any(
            isinstance(node, ast.Call)
            and _called(node) in ("constant_time_compare", "compare_digest")
            for node in ast.walk(tree)
        )
    )
    assert comparing == ["guestlinks/tokens.py"]

    # Wrong codes are counted (under the holder's lock) in the one module only.
    counting = sorted(
        name for name, tree in features.items() if any(map(_counts_code_failures, ast.walk(tree)))
    )
    assert counting == []
    one = sources[ONE_MODULE]
    calls = {_called(node) for node in ast.walk(one) if isinstance(node, ast.Call)}
    assert {"constant_time_compare", "select_for_update", "F", "queue_message"} <= calls


@pytest.mark.django_db
def test_guest_links_and_shares_send_and_check_through_the_one_mechanism(
    monkeypatch, org, location, alice, bob
):
    used = []
    for name in ("issue", "verify"):
        real = getattr(codes, name)

        def spy(policy, *args, _real=real, _name=name, **kwargs):
            used.append((_name, policy.code_model.__name__))
            return _real(policy, *args, **kwargs)

        monkeypatch.setattr(codes, name, spy)

    study = make_study(org, location=location)
    link = make_holder(study, sms_code_required=True, mobile=MOBILE)
    opening.send_code(link=link, request=service_request())
    opening.open_link(link=link, request=service_request(), code=sms_codes_sent(link)[0])

    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    recipient = share(alice, study, ("user", bob.pk), two_factor=True).recipients.get()
    tf.send_code(user=bob, recipient=recipient, request=share_request(bob))
    tf.verify_code(
        user=bob, recipient=recipient, code=codes_texted(recipient)[0], request=share_request(bob)
    )

    assert used == [
        ("issue", "SmsCode"),
        ("verify", "SmsCode"),
        ("issue", "ShareSmsCode"),
        ("verify", "ShareSmsCode"),
    ]


# --- The mechanism's stories ---------------------------------------------------------------------


def make_holder(study, **fields) -> GuestLink:
    salt = new_salt()
    return GuestLink.objects.create(
        organization_id=study.organization_id,
        target_kind=TargetKind.STUDY,
        study=study,
        token_salt=salt,
        token_digest=digest_for(token_for(salt)),
        **fields,
    )


class Recorder:
    """The policy's callbacks, remembered (from any thread)."""

    def __init__(self):
        self.events: list[tuple[str, bool, dict]] = []
        self.limits: list[int] = []
        self._lock = threading.Lock()

    def audit(self, holder, action, *, failed=False, **details):
        with self._lock:
            self.events.append((action, failed, details))

    def at_limit(self, holder, now):
        with self._lock:
            self.limits.append(holder.code_failures)
        GuestLink.objects.filter(pk=holder.pk).update(state=LinkState.REVOKED)

    def actions(self) -> list[str]:
        return [action for action, _failed, _details in self.events]


def policy_for(link: GuestLink, recorder: Recorder, **overrides) -> codes.CodePolicy:
    fields = {
        "holder": GuestLink.objects.filter(pk=link.pk),
        "code_model": SmsCode,
        "owner": {"link": link},
        "purpose": f"test-sms:{link.pk}",
        "max_failures": LIMIT,
        "closed": lambda row: row.state != LinkState.ACTIVE,
        "at_limit": recorder.at_limit,
        "audit": recorder.audit,
        "sent_action": "sent",
        "wrong_action": "wrong",
        "verified_action": "verified",
        "limit_action": "limit",
        "limit_detail": "closed",
        **overrides,
    }
    return codes.CodePolicy(**fields)


def send(policy, **overrides) -> codes.Issued:
    arguments = {
        "to": MOBILE,
        "language": "nl",
        "concerning": ("test", 1),
        "validity": VALIDITY,
        "resend_seconds": 60,
        "cap": 3,
        **overrides,
    }
    return codes.issue(policy, **arguments)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


@pytest.fixture
def holder(org, location) -> GuestLink:
    return make_holder(make_study(org, location=location))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def last_code(monkeypatch):
    """The plain code of the last issue (the outbox keeps it encrypted; the test reads it
    where it is made)."""
    made: list[str] = []
    real = codes.new_code

    def remembering():
        made.append(real())
        return made[-1]

    monkeypatch.setattr(codes, "new_code", remembering)
    return made


@pytest.mark.django_db
def test_issue_stores_a_bound_digest_with_its_expiry_counts_queues_and_audits(
    holder, recorder, last_code
):
    policy = policy_for(holder, recorder)
    issued = send(policy)

    (stored,) = SmsCode.objects.filter(link=holder)
    (code,) = last_code
    assert stored.code_hash == codes.secret_digest(code, purpose=f"test-sms:{holder.pk}")
    assert code not in stored.code_hash
    assert stored.expires_at == issued.expires_at
    assert abs(stored.expires_at - stored.created_at - VALIDITY) < timedelta(seconds=1)
    message = Message.objects.get()
    assert (message.channel, message.recipient, message.template, message.language) == (
        Channel.SMS,
        MOBILE,
        "sms_code",
        "nl",
    )
    assert message.context["code"] == "[redacted]" and message.context["minutes"] == 10
    assert (message.concerning_type, message.concerning_id) == ("test", "1")
    assert recorder.events == [("sent", False, {"sent": 1})]
    holder.refresh_from_db()
    assert holder.codes_sent == 1


@pytest.mark.django_db
def test_a_resend_waits_the_cooldown_then_replaces_the_open_code(holder, recorder, last_code):
    policy = policy_for(holder, recorder)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        send(policy)
    with time_machine.travel(start + timedelta(seconds=45), tick=False):
        with pytest.raises(codes.TooSoon) as refusal:
            send(policy)
        assert refusal.value.wait == 15 and "Wait 15 seconds" in refusal.value.message
        assert SmsCode.objects.count() == 1 and Message.objects.count() == 1
    with time_machine.travel(start + timedelta(seconds=60), tick=False):
        send(policy)
        first, second = SmsCode.objects.order_by("pk")
        assert first.replaced_at is not None and second.replaced_at is None
        assert codes.current_code(policy) == second
        # The replaced code is a wrong code now.
        assert codes.verify(policy, last_code[0]).outcome == codes.Outcome.WRONG
        assert codes.verify(policy, last_code[1]).verified


@pytest.mark.django_db
def test_the_cap_counts_the_holders_life_or_a_window(holder, recorder):
    policy = policy_for(holder, recorder)
    start = timezone.now()
    for n in range(3):
        with time_machine.travel(start + timedelta(minutes=2 * n), tick=False):
            send(policy, cap=3)
    with time_machine.travel(start + timedelta(days=2), tick=False):
        with pytest.raises(codes.CapReached):
            send(policy, cap=3)
        # Counted in a day instead, the first three have left the window.
        send(policy, cap=3, cap_window=timedelta(days=1))
    with (
        time_machine.travel(start + timedelta(days=2, minutes=2), tick=False),
        pytest.raises(codes.CapReached),
    ):
        send(policy, cap=1, cap_window=timedelta(days=1))
    assert recorder.actions() == ["sent"] * 4


@pytest.mark.django_db
def test_a_closed_holder_gets_no_code_and_takes_no_guess(holder, recorder, last_code):
    policy = policy_for(holder, recorder)
    send(policy)
    GuestLink.objects.filter(pk=holder.pk).update(state=LinkState.REVOKED)

    check = codes.verify(policy, last_code[0])
    assert (check.outcome, check.failures) == (codes.Outcome.CLOSED, 0)
    assert SmsCode.objects.get().used_at is None
    with (
        time_machine.travel(timezone.now() + timedelta(minutes=2)),
        pytest.raises(codes.HolderClosed) as refusal,
    ):
        send(policy)
    assert refusal.value.holder.state == LinkState.REVOKED
    assert recorder.actions() == ["sent"]


@pytest.mark.django_db
def test_a_code_expires_and_nothing_to_guess_against_is_not_a_failure(holder, recorder, last_code):
    policy = policy_for(holder, recorder)
    send(policy)
    sent_at = SmsCode.objects.get().created_at
    with time_machine.travel(sent_at + VALIDITY, tick=False):
        check = codes.verify(policy, last_code[0])
    assert (check.outcome, check.failures) == (codes.Outcome.NO_CODE, 0)
    with time_machine.travel(sent_at + VALIDITY - timedelta(seconds=1), tick=False):
        assert codes.verify(policy, last_code[0]).verified


@pytest.mark.django_db
def test_a_right_code_is_spent_once(holder, recorder, last_code, monkeypatch):
    policy = policy_for(holder, recorder)
    send(policy)
    read_before_spent = SmsCode.objects.get()

    assert codes.verify(policy, last_code[0]).verified
    assert SmsCode.objects.get().used_at is not None
    assert codes.verify(policy, last_code[0]).outcome == codes.Outcome.NO_CODE
    # Read as current by a request a moment before it was spent: the conditional UPDATE
    # spends nothing.
    monkeypatch.setattr(codes, "current_code", lambda policy, now=None: read_before_spent)
    assert codes.verify(policy, last_code[0]).outcome == codes.Outcome.NO_CODE
    assert recorder.actions() == ["sent", "verified"]


@pytest.mark.django_db
def test_wrong_codes_count_up_to_the_limit_which_calls_the_policy_once(holder, recorder, last_code):
    policy = policy_for(holder, recorder)
    send(policy)
    code = last_code[0]

    checks = [codes.verify(policy, wrong(code)) for _ in range(LIMIT)]
    assert [(c.outcome, c.failures, c.reached_limit) for c in checks] == [
        (codes.Outcome.WRONG, 1, False),
        (codes.Outcome.WRONG, 2, False),
        (codes.Outcome.WRONG, 3, True),
    ]
    assert recorder.limits == [LIMIT]
    assert recorder.events[1:] == [
        ("wrong", True, {"failures": 1, "closed": False}),
        ("wrong", True, {"failures": 2, "closed": False}),
        ("wrong", True, {"failures": 3, "closed": True}),
        ("limit", True, {"failures": 3}),
    ]
    # Closed by the limit (this policy revokes): even the right code is not checked now.
    check = codes.verify(policy, code)
    assert (check.outcome, check.failures) == (codes.Outcome.CLOSED, LIMIT)
    assert all(code not in str(details) for _action, _failed, details in recorder.events)


@pytest.mark.django_db
def test_a_right_code_resets_the_count_only_if_the_policy_says_so(holder, recorder, last_code):
    start = timezone.now()
    for n, (reset, expected) in enumerate([(False, 1), (True, 0)]):
        policy = policy_for(holder, recorder, reset_failures_on_success=reset)
        GuestLink.objects.filter(pk=holder.pk).update(code_failures=0)
        with time_machine.travel(start + timedelta(minutes=2 * n), tick=False):
            send(policy)
            assert codes.verify(policy, wrong(last_code[-1])).failures == 1
            check = codes.verify(policy, last_code[-1])
        assert check.verified and check.failures == expected
        holder.refresh_from_db()
        assert holder.code_failures == expected


# --- Under concurrency ---------------------------------------------------------------------------

GUESSERS = 20


def guess_all_at_once(link: GuestLink, recorder: Recorder, typed: list[str]) -> list:
    start = threading.Barrier(len(typed))
    checks: list[codes.Check] = []
    errors: list[BaseException] = []

    def guesser(code: str) -> None:
        try:
            policy = policy_for(link, recorder)
            start.wait(timeout=30)
            checks.append(codes.verify(policy, code))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guesser, args=(code,)) for code in typed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return checks


def count_checks(monkeypatch) -> list[str]:
    checked: list[str] = []
    real = codes.secret_digest

    def counting(code, *, purpose):
        checked.append(code)
        return real(code, purpose=purpose)

    monkeypatch.setattr(codes, "secret_digest", counting)
    return checked


def assert_wrong_guesses_stop_at_the_limit(link, recorder, checks, checked):
    outcomes = [check.outcome for check in checks]
    assert len(checked) == LIMIT
    assert outcomes.count(codes.Outcome.WRONG) == LIMIT
    assert outcomes.count(codes.Outcome.CLOSED) == GUESSERS - LIMIT
    assert sum(check.reached_limit for check in checks) == 1
    assert recorder.limits == [LIMIT]
    link.refresh_from_db()
    assert link.code_failures == LIMIT
    assert recorder.actions().count("limit") == 1


def assert_the_right_code_opens_once(checks, recorder):
    outcomes = [check.outcome for check in checks]
    assert outcomes.count(codes.Outcome.VERIFIED) == 1
    assert outcomes.count(codes.Outcome.NO_CODE) == GUESSERS - 1
    assert SmsCode.objects.get().used_at is not None
    assert recorder.actions().count("verified") == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_codes_stop_at_the_limit_on_postgresql(
    require_postgres, holder, recorder, last_code, monkeypatch
):
    send(policy_for(holder, recorder))
    checked = count_checks(monkeypatch)
    checks = guess_all_at_once(holder, recorder, [wrong(last_code[0])] * GUESSERS)
    assert_wrong_guesses_stop_at_the_limit(holder, recorder, checks, checked)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_right_code_sent_at_once_opens_once_on_postgresql(
    require_postgres, holder, recorder, last_code
):
    send(policy_for(holder, recorder))
    checks = guess_all_at_once(holder, recorder, [last_code[0]] * GUESSERS)
    assert_the_right_code_opens_once(checks, recorder)


def test_concurrent_wrong_codes_stop_at_the_limit_on_sqlite(
    sqlite_file_database,  # noqa: F811
    org,
    location,
    recorder,
    last_code,
    monkeypatch,
):
    holder = make_holder(make_study(org, location=location))
    send(policy_for(holder, recorder))
    checked = count_checks(monkeypatch)
    checks = guess_all_at_once(holder, recorder, [wrong(last_code[0])] * GUESSERS)
    assert_wrong_guesses_stop_at_the_limit(holder, recorder, checks, checked)
