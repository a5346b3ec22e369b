"""The Celery tasks: ``deliver_messages`` sends a batch and schedules one follow-up for each
failure it caused, and ``requeue_undelivered`` (every minute) hands out again what is due and not
moving."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications import tasks
from notifications.backends import DeliveryError
from notifications.models import Message, MessageStatus
from notifications.tasks import deliver_messages, erase_old_bodies, requeue_undelivered

pytestmark = pytest.mark.django_db


@pytest.fixture
def scheduled(monkeypatch) -> list[dict]:
    calls: list[dict] = []
    monkeypatch.setattr(
        deliver_messages,
        "apply_async",
        lambda args, countdown: calls.append({"args": args, "countdown": countdown}),
    )
    return calls


@pytest.fixture
def published(monkeypatch) -> list[int]:
    ids: list[int] = []

    def publish(message_ids) -> int:
        ids.extend(message_ids)
        return len(message_ids)

    monkeypatch.setattr(tasks, "publish", publish)
    return ids


def age(message, **fields) -> None:
    Message.objects.filter(pk=message.pk).update(**fields)


# --- deliver_messages ------------------------------------------------------------------------


def test_task_returns_how_many_messages_it_left_in_each_status(queue, backend):
    message = queue()

    assert deliver_messages([message.pk]) == {"sent": 1}


def test_a_batch_sends_each_message_it_could_claim_and_counts_the_rest(queue, backend):
    first, second = queue("one@example.org"), queue("two@example.org")
    already_sent = queue("three@example.org")
    age(already_sent, status=MessageStatus.SENT, attempts=1)

    assert deliver_messages([first.pk, second.pk, already_sent.pk, 999_999]) == {
        "sent": 3,
        "": 1,
    }
    assert backend.sent == [first.pk, second.pk]


def test_only_the_failed_message_of_a_batch_is_scheduled_again(queue, backend, scheduled):
    first, second = queue("one@example.org"), queue("two@example.org")
    backend.outcomes.extend(["provider-1", DeliveryError("451 busy")])

    assert deliver_messages([first.pk, second.pk]) == {"sent": 1, "failed": 1}

    [call] = scheduled
    assert call["args"] == ([second.pk],)


def test_failure_schedules_exactly_one_follow_up_at_the_retry_time(queue, backend, scheduled):
    message = queue()
    backend.outcomes.append(DeliveryError("451 busy"))

    assert deliver_messages([message.pk]) == {"failed": 1}

    [call] = scheduled
    assert call["args"] == ([message.pk],)
    wait = (Message.objects.get(pk=message.pk).next_attempt_at - timezone.now()).total_seconds()
    assert call["countdown"] == pytest.approx(wait, abs=1)


def test_long_waits_are_left_to_the_periodic_requeue(queue, backend, scheduled, settings):
    settings.NOTIFICATIONS_BACKOFF_BASE = 3600
    message = queue()
    backend.outcomes.append(DeliveryError("451 busy"))

    assert deliver_messages([message.pk]) == {"failed": 1}
    assert scheduled == []


def test_a_task_that_claimed_nothing_schedules_nothing(queue, backend, scheduled):
    message = queue()
    age(message, status=MessageStatus.FAILED, next_attempt_at=timezone.now() + timedelta(minutes=1))

    assert deliver_messages([message.pk]) == {"failed": 1}
    assert scheduled == []
    assert backend.sent == []


def test_broker_refusing_the_follow_up_is_logged_not_raised(queue, backend, monkeypatch, caplog):
    def broker_down(*args, **kwargs):
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(deliver_messages, "apply_async", broker_down)
    message = queue()
    backend.outcomes.append(DeliveryError("451 busy"))

    assert deliver_messages([message.pk]) == {"failed": 1}
    assert "retry not scheduled" in caplog.text


def test_in_process_runs_do_not_schedule_follow_ups(queue, backend, scheduled):
    message = queue()
    backend.outcomes.append(DeliveryError("451 busy"))

    assert deliver_messages.apply(([message.pk],)).get() == {"failed": 1}
    assert scheduled == []


def test_task_is_registered_with_late_acknowledgement():
    assert deliver_messages.name == "notifications.deliver_messages"
    assert deliver_messages.acks_late is True
    assert deliver_messages.reject_on_worker_lost is True
    assert requeue_undelivered.name == "notifications.requeue_undelivered"


def test_beat_runs_the_requeue_every_minute(settings):
    schedule = settings.CELERY_BEAT_SCHEDULE
    entry = next(e for e in schedule.values() if e["task"] == "notifications.requeue_undelivered")
    assert entry["schedule"] == 60.0


# --- requeue_undelivered ---------------------------------------------------------------------


def test_requeue_picks_what_is_due_and_nobody_is_working_on(queue, published):
    now = timezone.now()
    long_ago = now - timedelta(minutes=5)
    stranded = queue("stranded@example.org")  # its publish failed five minutes ago
    age(stranded, created_at=long_ago, next_attempt_at=long_ago)
    just_queued = queue("fresh@example.org")  # its on-commit publish is on its way
    due = queue("due@example.org")
    age(due, status=MessageStatus.FAILED, attempts=1, next_attempt_at=now - timedelta(seconds=1))
    waiting = queue("waiting@example.org")
    age(
        waiting, status=MessageStatus.FAILED, attempts=1, next_attempt_at=now + timedelta(minutes=2)
    )
    orphaned = queue("orphaned@example.org")  # its worker died mid-send
    age(orphaned, status=MessageStatus.SENDING, attempts=1, lease_until=now - timedelta(seconds=1))
    busy = queue("busy@example.org")
    age(busy, status=MessageStatus.SENDING, attempts=1, lease_until=now + timedelta(minutes=4))
    sent = queue("sent@example.org")
    age(sent, status=MessageStatus.SENT, created_at=long_ago, next_attempt_at=long_ago)
    dead = queue("dead@example.org")
    age(dead, status=MessageStatus.DEAD, created_at=long_ago, next_attempt_at=long_ago)

    count = requeue_undelivered()

    assert count == 3
    assert sorted(published) == sorted([stranded.pk, due.pk, orphaned.pk])
    assert just_queued.pk not in published


def test_requeue_hands_out_a_bounded_batch_oldest_due_first(queue, published, settings):
    settings.NOTIFICATIONS_REQUEUE_BATCH = 2
    long_ago = timezone.now() - timedelta(hours=1)
    messages = [queue(f"r{n}@example.org") for n in range(3)]
    for offset, message in enumerate(reversed(messages)):
        when = long_ago + timedelta(seconds=offset)
        age(message, created_at=when, next_attempt_at=when)

    assert requeue_undelivered() == 2
    assert published == [messages[2].pk, messages[1].pk]


def test_requeued_messages_are_delivered(queue, backend):
    message = queue()
    long_ago = timezone.now() - timedelta(minutes=5)
    age(message, created_at=long_ago, next_attempt_at=long_ago)

    assert requeue_undelivered() == 1
    assert Message.objects.get(pk=message.pk).status == MessageStatus.SENT


# --- Erasing what was sent -------------------------------------------------------------------


def test_bodies_of_messages_sent_long_ago_are_erased(queue, settings):
    settings.NOTIFICATIONS_BODY_RETENTION_DAYS = 7
    now = timezone.now()
    old = queue("old@example.org")
    age(old, status=MessageStatus.SENT, sent_at=now - timedelta(days=8))
    recent = queue("recent@example.org")
    age(recent, status=MessageStatus.SENT, sent_at=now - timedelta(days=6))
    dead = queue("dead@example.org")
    age(dead, status=MessageStatus.DEAD, updated_at=now - timedelta(days=30))

    assert erase_old_bodies() == 1

    old.refresh_from_db()
    assert (old.body_text, old.body_html) == ("", "")
    assert old.subject  # what was sent, and when, stays on record
    recent.refresh_from_db()
    dead.refresh_from_db()
    assert recent.body_text and dead.body_text  # a dead one may still be retried


def test_retention_of_zero_keeps_every_body(queue, settings):
    settings.NOTIFICATIONS_BODY_RETENTION_DAYS = 0
    message = queue()
    age(message, status=MessageStatus.SENT, sent_at=timezone.now() - timedelta(days=400))

    assert erase_old_bodies() == 0
    message.refresh_from_db()
    assert message.body_text


def stranded_in_batches_of_two(queue, settings) -> list[Message]:
    """Five messages whose publish failed five minutes ago, handed out two to a task."""
    settings.NOTIFICATIONS_QUEUED_GRACE = 0
    settings.NOTIFICATIONS_DELIVERY_BATCH = 2
    messages = [queue(f"r{n}@example.org") for n in range(5)]
    for message in messages:
        age(message, created_at=timezone.now() - timedelta(minutes=5))
    return messages


def test_requeue_hands_out_what_is_due_in_delivery_batches(queue, settings, monkeypatch):
    messages = stranded_in_batches_of_two(queue, settings)
    batches: list[list[int]] = []
    monkeypatch.setattr(
        deliver_messages, "apply_async", lambda args, retry: batches.append(args[0])
    )

    assert tasks.requeue_undelivered() == 5
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert sorted(pk for batch in batches for pk in batch) == sorted(m.pk for m in messages)


def test_requeue_stops_at_the_first_broker_error_and_leaves_the_rest_due(
    queue, monkeypatch, settings
):
    messages = stranded_in_batches_of_two(queue, settings)
    attempted: list[list[int]] = []

    def broker_down(args, **options):
        attempted.append(args[0])
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(deliver_messages, "apply_async", broker_down)

    assert tasks.requeue_undelivered() == 0
    # One failed publish is enough to know the broker is down: the others wait for the next run.
    assert len(attempted) == 1
    assert all(Message.objects.get(pk=m.pk).status == MessageStatus.QUEUED for m in messages)
