"""What the integration stories share: queueing share notifications the way a feature app does,
reading a message back, waiting for something another process does."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from django.db import transaction

from notifications.models import Channel, Message
from notifications.services import queue_message


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.1,
    tick: Callable[[], Any] | None = None,
    tick_every: float = 0.5,
    what: str = "the condition",
) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that. ``tick`` runs every
    ``tick_every`` seconds meanwhile: the stories pass ``requeue_undelivered`` to stand in for
    Celery beat, which runs it every minute in production."""
    deadline = time.monotonic() + timeout
    next_tick = time.monotonic()
    while True:
        if tick is not None and time.monotonic() >= next_tick:
            tick()
            next_tick = time.monotonic() + tick_every
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def share_context(**overrides: Any) -> dict[str, Any]:
    return {
        "sender_name": "Dr. Alice Tester",
        "patient_initials": "J.D.",
        "study_description": "MR brain with contrast",
        "study_date": "2024-05-01",
        "link": "https://portal.example.org/shares/7f3a9c/",
        "message": "Please have a look at the left temporal lobe.",
        "urgent": False,
        **overrides,
    }


def queue_shares(
    recipients: Sequence[str], *, language: str = "en", **context: Any
) -> list[Message]:
    """One share notification per recipient, queued in one transaction as a share action does;
    each is published to the broker when that transaction commits."""
    with transaction.atomic():
        return [
            queue_message(
                channel=Channel.EMAIL,
                to=recipient,
                template="share_notification",
                context=share_context(**context),
                language=language,
                concerning=("share", index + 1),
            )
            for index, recipient in enumerate(recipients)
        ]


def fresh(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)
