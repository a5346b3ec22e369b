"""Redis goes away: the action that queued a message still commits, the message waits QUEUED in
the database, and once Redis is back the periodic re-queue (called here as Celery beat would)
hands it to the worker, which has reconnected by itself. Nothing is lost, nothing goes twice."""

import logging
from collections import Counter

import pytest

from notifications.models import Message, MessageStatus
from notifications.tasks import requeue_undelivered
from tests.integration.helpers import fresh, queue_shares, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_message_committed_while_broker_is_down_goes_out_with_the_requeue(
    broker, celery_worker, smtp_server, caplog
):
    celery_worker()
    broker.stop()

    with caplog.at_level(logging.WARNING, logger="notifications.services"):
        [message] = queue_shares(["dr.janssens@example.org"])  # commits; the publish fails

    assert "stay queued for the periodic re-queue" in caplog.text
    message = fresh(message)
    assert (message.status, message.attempts) == (MessageStatus.QUEUED, 0)

    broker.start()  # empty: what it held before the stop is gone
    assert broker.queue_length() == 0
    assert smtp_server.count() == 0
    assert requeue_undelivered() == 1

    [email] = smtp_server.wait_for(1, timeout=30)
    assert email.rcpt_tos == ["dr.janssens@example.org"]
    message = wait_until(
        lambda: (row := fresh(message)).status == MessageStatus.SENT and row,
        timeout=10,
        what="the message to be SENT",
    )
    assert message.attempts == 1


def test_hundred_messages_queued_while_redis_is_stopped_each_arrive_once(
    broker, celery_worker, smtp_server
):
    celery_worker()
    broker.stop()
    recipients = [f"patient{number:03d}@example.org" for number in range(100)]
    messages = queue_shares(recipients)
    ids = [message.pk for message in messages]
    assert Message.objects.filter(pk__in=ids, status=MessageStatus.QUEUED).count() == 100

    broker.start()
    assert requeue_undelivered() == 100
    # A second beat before the worker has caught up publishes most of them again: each message
    # is then handed out twice, and the claim must still let it go out once.
    requeue_undelivered()

    received = smtp_server.wait_for(100, timeout=60)
    wait_until(
        lambda: Message.objects.filter(pk__in=ids, status=MessageStatus.SENT).count() == 100,
        timeout=20,
        what="100 messages SENT",
    )
    wait_until(broker.drained, timeout=30, what="the worker to run every task")
    received = smtp_server.wait_for(100, timeout=1)
    assert len(received) == 100
    per_recipient = Counter(address for email in received for address in email.rcpt_tos)
    assert sorted(per_recipient) == recipients
    assert set(per_recipient.values()) == {1}
    assert set(Message.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}
