"""A worker dies in the middle of sending (SIGKILL while the SMTP server holds its DATA): the
message stays SENDING until its lease runs out, and then goes out once, from another worker.

The SMTP server here keeps nothing from a client that went away before it answered DATA, as a
real server does: the killed attempt never completed, so one email arriving is the right count.
"""

import os
import signal
import time
from pathlib import Path

import pytest
from django.utils import timezone

from notifications.models import MessageStatus
from notifications.tasks import requeue_undelivered
from tests.integration.helpers import fresh, queue_shares, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def _sending(message):
    row = fresh(message)
    return row.status == MessageStatus.SENDING and row


def _sent(message):
    row = fresh(message)
    return row.status == MessageStatus.SENT and row


def _wait_out_the_lease(message) -> None:
    remaining = (message.lease_until - timezone.now()).total_seconds()
    if remaining > 0:
        time.sleep(remaining + 0.1)


def _pool_processes(worker) -> list[int]:
    children = Path(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children")
    return [int(pid) for pid in children.read_text().split()]


def test_worker_killed_while_sending_delivers_once_after_restart(
    broker, celery_worker, smtp_server
):
    release = smtp_server.stall_next()
    first = celery_worker()
    [message] = queue_shares(["dr.claes@example.org"])
    assert smtp_server.stalled.wait(timeout=20), "the worker never reached DATA"
    message = wait_until(lambda: _sending(message), timeout=5, what="the message to be SENDING")
    assert message.attempts == 1

    first.kill()
    release.set()
    wait_until(lambda: smtp_server.abandoned == 1, timeout=5, what="the SMTP server to notice")
    assert _sending(message), "nobody may touch the message while its lease runs"

    celery_worker()
    _wait_out_the_lease(message)
    message = wait_until(
        lambda: _sent(message),
        tick=requeue_undelivered,
        timeout=20,
        what="the message to be SENT after the re-queue",
    )

    assert message.attempts == 2
    [email] = smtp_server.wait_for(1, timeout=1)
    assert email.rcpt_tos == ["dr.claes@example.org"]
    time.sleep(0.5)  # anything else on its way would arrive now
    assert smtp_server.count() == 1


def test_pool_process_lost_mid_send_is_given_back_and_sent_once(broker, celery_worker, smtp_server):
    """reject_on_worker_lost: the worker's main process sees its pool process die and gives the
    task back to Redis, and a new pool process runs it. If that happens while the dead attempt's
    lease runs, the claim turns it down and the re-queue sends the message after the lease;
    if later (Celery may wait up to ``worker_lost_wait``, 10 s, for a lost result), the
    redelivered task claims it itself. Either way: one email, on the second attempt."""
    release = smtp_server.stall_next()
    worker = celery_worker(concurrency=1)
    [message] = queue_shares(["dr.wouters@example.org"])
    assert smtp_server.stalled.wait(timeout=20), "the worker never reached DATA"
    message = wait_until(lambda: _sending(message), timeout=5, what="the message to be SENDING")

    [pool_process] = _pool_processes(worker)
    os.kill(pool_process, signal.SIGKILL)
    release.set()
    wait_until(lambda: smtp_server.abandoned == 1, timeout=5, what="the SMTP server to notice")

    def redelivered() -> bool:
        received = [line for line in worker.log().splitlines() if line.endswith("] received")]
        return len(received) >= 2

    wait_until(redelivered, timeout=20, what="Celery to give the task back")
    assert "WorkerLostError" in worker.log()
    _wait_out_the_lease(message)
    message = wait_until(
        lambda: _sent(message),
        tick=requeue_undelivered,
        timeout=20,
        what="the message to be SENT",
    )
    assert message.attempts == 2
    time.sleep(0.5)
    assert smtp_server.count() == 1
