"""Celery tasks, and ``publish``, which hands message ids to them. They carry message ids only,
never addresses or bodies. ``services`` queues messages and publishes them through this module;
nothing here imports ``services``.

``deliver_messages`` sends a batch of messages (those queued by one transaction, up to
``NOTIFICATIONS_DELIVERY_BATCH``). It acknowledges its broker message only after it ran
(``acks_late``) and gives it back if the worker process dies (``reject_on_worker_lost``); running
it twice is harmless, since ``deliver_batch`` claims the rows with a conditional UPDATE. Each
message's retry is its own one-message task, at that message's time.

``requeue_undelivered`` runs every minute (``CELERY_BEAT_SCHEDULE``) and hands out again whatever
is due and not moving: messages whose publish failed (broker down), whose retry task was lost, or
whose worker died while sending.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

from celery import Task, shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from notifications import delivery
from notifications.models import Message, MessageStatus

logger = logging.getLogger(__name__)

# Longer waits are left to the periodic re-queue, which runs every minute anyway: Redis gives an
# unacknowledged task with a far ETA to another worker after its visibility timeout (one hour),
# and each waiting task sits in a worker's memory.
MAX_COUNTDOWN = 600


@shared_task(
    name="notifications.deliver_messages",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def deliver_messages(self: Task, message_ids: list[int]) -> dict[str, int]:
    """Returns how many messages were left in each status (the worker logs it; no ids)."""
    results = delivery.deliver_batch(message_ids)
    # In-process (eager) runs cannot wait: a countdown would run the task at once, too early.
    if not self.request.is_eager:
        for message_id, result in results.items():
            if result.retry_in is not None and result.retry_in <= MAX_COUNTDOWN:
                _schedule(message_id, result.retry_in)
    return dict(Counter(str(result) for result in results.values()))


def _schedule(message_id: int, countdown: float) -> None:
    try:
        deliver_messages.apply_async(([message_id],), countdown=countdown)
    except Exception as exc:
        logger.warning(
            "Message %s: retry not scheduled (%s); the periodic re-queue will send it",
            message_id,
            f"{type(exc).__name__}: {exc}",
        )


def publish(message_ids: Sequence[int]) -> int:
    """Hand messages to the workers, ``NOTIFICATIONS_DELIVERY_BATCH`` to a task. Returns how many
    were handed over: fewer than all if the broker could not take them (down, unreachable, timing
    out). Those stay QUEUED and the periodic re-queue sends them: never an error for the user
    whose action has already committed.

    No publish retries: Celery's default three tries cost about 0.6 s per task while the broker
    is down. The re-queue is the retry."""
    ids = list(message_ids)
    size = max(1, settings.NOTIFICATIONS_DELIVERY_BATCH)
    for start in range(0, len(ids), size):
        batch = ids[start : start + size]
        try:
            deliver_messages.apply_async((batch,), retry=False)
        except Exception as exc:
            logger.warning(
                "Messages not handed over (%s) stay queued for the periodic re-queue: %s",
                len(ids) - start,
                f"{type(exc).__name__}: {exc}",
            )
            return start
    return len(ids)


def undelivered_ids(*, limit: int) -> list[int]:
    """Ids of messages due for an attempt that no worker is on: QUEUED past the grace period
    (younger ones are being published after their commit), FAILED whose retry time has come,
    and SENDING whose lease has run out. Oldest due first."""
    now = timezone.now()
    grace = now - timedelta(seconds=settings.NOTIFICATIONS_QUEUED_GRACE)
    due = (
        Q(status=MessageStatus.QUEUED, next_attempt_at__lte=now, created_at__lte=grace)
        | Q(status=MessageStatus.FAILED, next_attempt_at__lte=now)
        | Q(status=MessageStatus.SENDING, lease_until__lt=now)
    )
    return list(
        Message.objects.filter(due)
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )


@shared_task(name="notifications.requeue_undelivered", ignore_result=True)
def requeue_undelivered() -> int:
    ids = undelivered_ids(limit=settings.NOTIFICATIONS_REQUEUE_BATCH)
    # Stops at the first broker error: the rest stay due for the next run, a minute from now.
    published = publish(ids)
    if ids:
        logger.info("Re-queued %s of %s undelivered messages", published, len(ids))
    return published


@shared_task(name="notifications.erase_sent_bodies", ignore_result=True)
def erase_old_bodies() -> int:
    return delivery.erase_sent_bodies(older_than_days=settings.NOTIFICATIONS_BODY_RETENTION_DAYS)
