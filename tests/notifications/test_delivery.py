"""``deliver()`` and ``deliver_batch()``: claim, send, record. Sent once; retried with growing,
jittered pauses; given up (and audited) after the last attempt or at once when the recipient is
refused for good. A batch is claimed and read at once, and hands back what it had no time for."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import Action, AuditEvent, Outcome
from notifications import delivery
from notifications.backends import DeliveryError, PermanentDeliveryError
from notifications.delivery import backoff_seconds, deliver, deliver_batch
from notifications.models import Message, MessageStatus
from tests.notifications.conftest import LINK

pytestmark = pytest.mark.django_db


def fresh(message) -> Message:
    return Message.objects.get(pk=message.pk)


# --- Sent ------------------------------------------------------------------------------------


def test_queued_message_is_sent_and_recorded(queue, backend):
    message = queue()

    result = deliver(message.pk)

    assert result == MessageStatus.SENT and result.claimed
    message = fresh(message)
    assert message.status == MessageStatus.SENT
    assert message.attempts == 1
    assert message.provider_id == f"provider-{message.pk}"
    assert message.sent_at is not None
    assert message.lease_until is None
    assert message.last_error == ""
    assert backend.sent == [message.pk]


def test_sent_message_is_never_sent_again(queue, backend):
    message = queue()
    deliver(message.pk)

    result = deliver(message.pk)

    assert result == MessageStatus.SENT and not result.claimed
    assert backend.sent == [message.pk]
    assert fresh(message).attempts == 1


def test_unknown_message_sends_nothing(db, backend):
    result = deliver(987654)

    assert result == "" and not result.claimed
    assert backend.sent == []


# --- Claim -----------------------------------------------------------------------------------


def test_message_another_worker_is_sending_is_left_alone(queue, backend):
    message = queue()
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.SENDING, attempts=1, lease_until=timezone.now() + timedelta(minutes=4)
    )

    result = deliver(message.pk)

    assert result == MessageStatus.SENDING and not result.claimed
    assert backend.sent == []
    assert fresh(message).attempts == 1


def test_message_whose_sender_died_is_taken_over_after_the_lease(queue, backend):
    message = queue()
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.SENDING, attempts=1, lease_until=timezone.now() - timedelta(seconds=1)
    )

    result = deliver(message.pk)

    assert result == MessageStatus.SENT and result.claimed
    assert backend.sent == [message.pk]
    assert fresh(message).attempts == 2


def test_claim_leases_the_message_while_the_backend_sends(queue, monkeypatch, settings):
    message = queue()
    seen = {}

    class Peeking:
        def send(self, sending):
            row = fresh(sending)
            seen.update(status=row.status, attempts=row.attempts, lease=row.lease_until)
            return "id"

    monkeypatch.setattr(delivery, "get_backend", lambda channel: Peeking())
    before = timezone.now()

    deliver(message.pk)

    assert seen["status"] == MessageStatus.SENDING
    assert seen["attempts"] == 1
    lease = timedelta(seconds=settings.NOTIFICATIONS_LEASE_SECONDS)
    assert before + lease <= seen["lease"] <= timezone.now() + lease


def test_failed_message_waits_for_its_retry_time(queue, backend):
    message = queue()
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.FAILED,
        attempts=1,
        next_attempt_at=timezone.now() + timedelta(minutes=1),
    )

    assert deliver(message.pk) == MessageStatus.FAILED
    assert backend.sent == []


def test_dead_message_is_not_sent(queue, backend):
    message = queue()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.DEAD, attempts=4)

    assert deliver(message.pk) == MessageStatus.DEAD
    assert backend.sent == []


def test_worker_that_outlived_its_lease_does_not_overwrite_the_newer_attempt(
    queue, monkeypatch, caplog
):
    message = queue()

    class Overtaken:
        def send(self, sending):
            # While this worker was stuck, its lease ran out and another worker claimed it.
            Message.objects.filter(pk=sending.pk).update(attempts=2)
            return "late"

    monkeypatch.setattr(delivery, "get_backend", lambda channel: Overtaken())

    result = deliver(message.pk)

    assert result == MessageStatus.SENDING
    message = fresh(message)
    assert (message.status, message.attempts, message.provider_id) == ("sending", 2, "")
    assert "another worker took over" in caplog.text


# --- Retry -----------------------------------------------------------------------------------


def test_retryable_error_schedules_the_next_attempt_without_leaking_the_body(
    queue, backend, caplog
):
    message = queue()
    backend.outcomes.append(DeliveryError("Mail server answered 451 4.3.0 Try again later"))
    before = timezone.now()

    result = deliver(message.pk)

    assert result == MessageStatus.FAILED
    message = fresh(message)
    assert message.status == MessageStatus.FAILED
    assert message.attempts == 1
    assert message.lease_until is None
    assert message.last_error == "Mail server answered 451 4.3.0 Try again later"
    # First retry: base 30 s, times a jitter factor in [0.5, 1.5].
    wait = (message.next_attempt_at - before).total_seconds()
    assert 15 <= wait <= 45.5
    assert result.retry_in == pytest.approx(wait, abs=0.5)
    assert LINK not in caplog.text and "left lower lobe" not in caplog.text


def test_failed_message_is_sent_when_its_time_comes(queue, backend):
    message = queue()
    backend.outcomes.append(DeliveryError("Connection refused"))
    deliver(message.pk)

    with time_machine.travel(fresh(message).next_attempt_at + timedelta(seconds=1)):
        result = deliver(message.pk)

    assert result == MessageStatus.SENT
    message = fresh(message)
    assert (message.status, message.attempts, message.last_error) == ("sent", 2, "")


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 15, 45), (2, 30, 90), (3, 60, 180), (7, 960, 2880), (8, 1800, 5400), (30, 1800, 5400)],
)
def test_backoff_doubles_up_to_the_ceiling_with_jitter(attempts, low, high, settings):
    settings.NOTIFICATIONS_BACKOFF_CEILING = 3600
    waits = [backoff_seconds(attempts) for _ in range(200)]

    assert all(low <= wait <= high for wait in waits)
    assert len({round(wait, 6) for wait in waits}) > 150, "jitter spreads retries out"


def test_jitter_factor_is_between_half_and_one_and_a_half(monkeypatch):
    monkeypatch.setattr(delivery.random, "uniform", lambda a, b: a)
    assert backoff_seconds(3) == 60
    monkeypatch.setattr(delivery.random, "uniform", lambda a, b: b)
    assert backoff_seconds(3) == 180


def test_error_text_hides_the_recipient_and_link_tokens(queue, backend):
    message = queue("dr.smith@example.org")
    backend.outcomes.append(
        DeliveryError("450 <dr.smith@example.org>: busy; see https://x.org/l/SECRET-token")
    )

    deliver(message.pk)

    error = fresh(message).last_error
    assert "dr.smith@example.org" not in error and "SECRET-token" not in error
    assert error == "450 <[recipient]>: busy; see https://x.org/l/[masked]"


def test_unexpected_backend_error_is_retried(queue, backend):
    message = queue()
    backend.outcomes.append(RuntimeError("backend misconfigured"))

    assert deliver(message.pk) == MessageStatus.FAILED
    assert fresh(message).last_error == "backend misconfigured"


# --- Dead ------------------------------------------------------------------------------------


def test_message_is_dead_after_the_last_attempt_and_audited(queue, backend, settings):
    message = queue()
    backend.outcomes.extend(DeliveryError(f"451 busy ({n})") for n in range(1, 5))

    results = []
    for _ in range(settings.NOTIFICATIONS_MAX_ATTEMPTS):
        with time_machine.travel(fresh(message).next_attempt_at + timedelta(seconds=1)):
            results.append(deliver(message.pk))

    assert results == ["failed", "failed", "failed", "dead"]
    message = fresh(message)
    assert message.status == MessageStatus.DEAD
    assert message.attempts == 4
    assert message.last_error == "Gave up after 4 attempts: 451 busy (4)"
    event = AuditEvent.objects.get(action=Action.MESSAGE_DEAD)
    assert event.actor_label == "system" and event.actor_id is None
    assert (event.target_type, event.target_id) == ("message", str(message.pk))
    assert event.outcome == Outcome.SERIOUS_FAILURE
    assert event.event_code == "110100"
    assert event.details == {
        "channel": "email",
        "template": "share_notification",
        "attempts": 4,
        "error": message.last_error,
    }


def test_permanent_error_makes_the_message_dead_at_once(queue, backend):
    message = queue("+32470123456", channel="sms", template="sms_code")
    backend.outcomes.append(PermanentDeliveryError("Twilio answered 400, error 21211"))

    result = deliver(message.pk)

    assert result == MessageStatus.DEAD and result.retry_in is None
    message = fresh(message)
    assert (message.status, message.attempts) == ("dead", 1)
    assert message.last_error == "Twilio answered 400, error 21211"
    event = AuditEvent.objects.get(action=Action.MESSAGE_DEAD)
    assert event.details["channel"] == "sms"
    assert event.details["template"] == "sms_code"
    assert "482913" not in str(event.details)
    assert "+32470123456" not in str(event.details)


def test_message_whose_senders_keep_dying_is_given_up(queue, backend, settings):
    message = queue()
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.SENDING,
        attempts=settings.NOTIFICATIONS_MAX_ATTEMPTS,
        lease_until=timezone.now() - timedelta(seconds=1),
    )

    assert deliver(message.pk) == MessageStatus.DEAD
    assert backend.sent == []
    assert "the last sender stopped responding" in fresh(message).last_error
    assert AuditEvent.objects.filter(action=Action.MESSAGE_DEAD).count() == 1


# --- Batches ---------------------------------------------------------------------------------


def statements(captured, verb: str) -> list[str]:
    return [query["sql"] for query in captured if query["sql"].lstrip().upper().startswith(verb)]


def test_a_batch_is_claimed_in_one_update_and_read_in_one_select(queue, backend):
    messages = [queue(f"r{n}@example.org") for n in range(4)]

    with CaptureQueriesContext(connection) as captured:
        results = deliver_batch([message.pk for message in messages])

    assert set(results.values()) == {MessageStatus.SENT}
    assert backend.sent == [message.pk for message in messages]
    claims = [sql for sql in statements(captured, "UPDATE") if "SET \"status\" = 'sending'" in sql]
    assert len(claims) == 1
    # One read of the claimed rows, then one SENT update per message: no read per message.
    assert len(statements(captured, "SELECT")) == 1
    assert len(statements(captured, "UPDATE")) == 1 + len(messages)
    for message in messages:
        message = fresh(message)
        assert (message.status, message.attempts) == (MessageStatus.SENT, 1)
        assert message.provider_id == f"provider-{message.pk}"


def test_a_failure_in_a_batch_is_recorded_for_that_message_alone(queue, backend):
    first, second, third = (queue(f"r{n}@example.org") for n in range(3))
    backend.outcomes.extend(["id-1", PermanentDeliveryError("550 no such user"), "id-3"])

    results = deliver_batch([first.pk, second.pk, third.pk])

    assert results == {
        first.pk: MessageStatus.SENT,
        second.pk: MessageStatus.DEAD,
        third.pk: MessageStatus.SENT,
    }
    assert [fresh(m).status for m in (first, second, third)] == [
        MessageStatus.SENT,
        MessageStatus.DEAD,
        MessageStatus.SENT,
    ]


def test_a_batch_that_took_half_a_lease_hands_the_rest_back(queue, backend, monkeypatch, settings):
    settings.NOTIFICATIONS_LEASE_SECONDS = 300
    messages = [queue(f"r{n}@example.org") for n in range(3)]
    clock = [1000.0]
    monkeypatch.setattr(delivery.time, "monotonic", lambda: clock[0])
    scripted_send = backend.send

    def slow_provider(message):
        clock[0] += 160  # past half the lease after the first message
        return scripted_send(message)

    monkeypatch.setattr(backend, "send", slow_provider)

    results = deliver_batch([message.pk for message in messages])

    first, *rest = messages
    assert backend.sent == [first.pk]
    assert results[first.pk] == MessageStatus.SENT
    for message in rest:
        assert results[message.pk] == MessageStatus.QUEUED
        assert results[message.pk].retry_in == 0
        message = fresh(message)
        # Given back untouched, as if this attempt had not been made: due at once, for anyone.
        assert (message.status, message.attempts, message.lease_until) == (
            MessageStatus.QUEUED,
            0,
            None,
        )
        assert message.next_attempt_at <= timezone.now()


def test_what_went_out_is_recorded_even_when_the_batch_breaks_off(queue, backend, monkeypatch):
    first, second = queue("one@example.org"), queue("two@example.org")
    calls = []

    def give_up(message, reason):
        calls.append(message.pk)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(delivery, "_give_up", give_up)
    backend.outcomes.extend(["id-1", PermanentDeliveryError("550 no such user")])

    with pytest.raises(RuntimeError):
        deliver_batch([first.pk, second.pk])

    assert calls == [second.pk]
    assert fresh(first).status == MessageStatus.SENT
