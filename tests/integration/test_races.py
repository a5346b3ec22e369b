"""Several workers handed the same message at the same moment: ``deliver``'s claim (one
conditional UPDATE) lets one of them send, and the others send nothing.

The SMTP server takes 0.3-1 s per DATA, so every contender's claim happens while the winner is
still sending. On SQLite the claims queue up on the database's single write lock; on PostgreSQL
they really run at once (row lock on the UPDATE), which the eight-contender story is for.
"""

import threading

import pytest
from django.db import connections

from notifications.delivery import deliver
from notifications.models import MessageStatus
from notifications.services import publish
from tests.integration.helpers import fresh, queue_shares, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def race(message_id: int, contenders: int) -> list:
    """``deliver(message_id)`` from ``contenders`` threads released together by a barrier, each
    on its own database connection."""
    barrier = threading.Barrier(contenders)
    results: list = [None] * contenders
    errors: list[BaseException] = []

    def contender(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = deliver(message_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=contender, args=(index,)) for index in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def _assert_sent_once(message, results, smtp_server) -> None:
    winners = [result for result in results if result.claimed]
    assert winners == [MessageStatus.SENT]
    for result in results:
        if not result.claimed:
            assert result in {MessageStatus.SENDING, MessageStatus.SENT}
    message = fresh(message)
    assert (message.status, message.attempts) == (MessageStatus.SENT, 1)
    assert smtp_server.count() == 1


def test_two_workers_racing_on_one_message_send_it_once(broker, smtp_server):
    # ``broker``: the commit publishes to Redis, where no worker is listening; the threads below
    # are the only deliverers.
    smtp_server.delay = 0.3
    [message] = queue_shares(["dr.maes@example.org"])

    results = race(message.pk, contenders=2)

    _assert_sent_once(message, results, smtp_server)


@pytest.mark.postgres
def test_eight_workers_racing_on_one_message_send_it_once(broker, smtp_server, require_postgres):
    smtp_server.delay = 0.3
    [message] = queue_shares(["dr.jacobs@example.org"])

    results = race(message.pk, contenders=8)

    _assert_sent_once(message, results, smtp_server)


def test_two_worker_processes_handed_the_same_message_send_it_once(
    broker, celery_worker, smtp_server
):
    smtp_server.delay = 1.0  # room for the second worker to receive its task, even on a busy CI
    first = celery_worker(pool="solo")
    second = celery_worker(pool="solo")

    [message] = queue_shares(["dr.mertens@example.org"])  # published once on commit...
    publish(message.pk)  # ...and once more, as a re-queue racing that publish would

    def outcomes() -> list[str]:
        found = []
        for worker in (first, second):
            found += [
                line.rsplit(": ", 1)[-1].strip("'")
                for line in worker.log().splitlines()
                if "notifications.deliver_message[" in line and " succeeded in " in line
            ]
        return found if len(found) == 2 else []

    results = wait_until(outcomes, timeout=20, what="both tasks to finish")
    # One task went to each worker: a solo worker reserves one task at a time.
    for worker in (first, second):
        assert "Task notifications.deliver_message[" in worker.log()
    assert sorted(results) == ["sending", "sent"]
    message = fresh(message)
    assert (message.status, message.attempts) == (MessageStatus.SENT, 1)
    assert smtp_server.count() == 1
