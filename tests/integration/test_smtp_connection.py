"""A worker keeps its mail server connection between messages (issue 13: the outbox within 1.5x
of sending directly): a burst of emails is one connection, not one per email, and what goes
wrong with a kept connection costs no email."""

import socket
import time

import pytest

from notifications import backends
from notifications.backends import EmailBackend, close_kept_connection
from tests.integration.helpers import queue_shares

pytestmark = pytest.mark.django_db


def send_all(messages) -> None:
    for message in messages:
        EmailBackend().send(message)


def test_a_burst_of_emails_goes_over_one_connection(outbox_settings, smtp_server):
    messages = queue_shares([f"dr.{n}@example.org" for n in range(10)])

    send_all(messages)

    assert smtp_server.count() == 10
    assert smtp_server.greetings == 1


def test_an_idle_connection_is_not_reused(outbox_settings, smtp_server):
    outbox_settings.EMAIL_CONNECTION_IDLE = 1
    first, second = queue_shares(["dr.a@example.org", "dr.b@example.org"])

    send_all([first])
    time.sleep(1.2)
    send_all([second])

    assert smtp_server.count() == 2
    assert smtp_server.greetings == 2


def test_a_connection_the_server_dropped_costs_no_email(outbox_settings, smtp_server):
    first, second = queue_shares(["dr.a@example.org", "dr.b@example.org"])
    send_all([first])
    # The connection is gone when the next email comes (a server hangs up on idle clients
    # after its own timeout): the socket under the kept connection is shut down.
    backends._kept_connection._connection.connection.sock.shutdown(socket.SHUT_RDWR)

    send_all([second])

    received = smtp_server.wait_for(2, timeout=10)
    assert [email.to for email in received] == ["dr.a@example.org", "dr.b@example.org"]
    assert smtp_server.greetings == 2


def test_another_mail_server_gets_its_own_connection(outbox_settings, smtp_server, settings):
    first, second = queue_shares(["dr.a@example.org", "dr.b@example.org"])
    send_all([first])
    settings.EMAIL_HOST_USER = "someone-else"  # another account: not over the same session
    settings.EMAIL_HOST_PASSWORD = ""

    send_all([second])

    assert smtp_server.greetings == 2
    close_kept_connection()
