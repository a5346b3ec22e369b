"""A share notification goes from ``queue_message`` through Redis and a real Celery worker to a
real SMTP server, in the recipient's language; a server that refuses it gets it again later, and
in the end the message is dead with the server's answer, in the admin and the audit trail."""

import pytest
from django.conf import settings
from django.utils import translation

from audit.models import Action, AuditEvent
from notifications.models import MessageStatus
from notifications.services import render_message
from tests.integration.helpers import fresh, queue_shares, share_context, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

# A greeting every share notification starts with, as each language's catalog writes it.
GREETING = "Hello,"


def rendered(language: str) -> tuple[str, str, str]:
    """Subject, text and HTML of the stories' share notification, as the outbox renders them."""
    return render_message(
        channel="email",
        template="share_notification",
        context=share_context(urgent=True),
        language=language,
    )


def test_queued_share_notification_arrives_in_each_recipients_language(
    broker, celery_worker, smtp_server
):
    celery_worker()
    recipients = {
        "en": "dr.smith@example.org",
        "fr": "dr.dupont@example.org",
        "nl": "dr.peeters@example.org",
        "de": "dr.mueller@example.org",
    }
    messages = {
        language: queue_shares([to], language=language, urgent=True)[0]
        for language, to in recipients.items()
    }

    received = {email.rcpt_tos[0]: email for email in smtp_server.wait_for(4, timeout=20)}
    assert sorted(received) == sorted(recipients.values())
    english_subject, _text, _html = rendered("en")
    for language, to in recipients.items():
        email = received[to]
        subject, body_text, body_html = rendered(language)
        with translation.override(language):
            greeting = translation.gettext(GREETING)
        if language != "en":
            assert greeting != GREETING, f"no {language} translation of {GREETING!r}"
            assert subject != english_subject
        assert email.to == to
        assert email.mail_from in settings.DEFAULT_FROM_EMAIL
        assert email.subject == subject
        assert "Dr. Alice Tester" in email.subject
        assert "(J.D.)" in email.subject
        assert email.message["Content-Language"] == language
        assert email.text == body_text
        assert email.html == body_html
        assert greeting in email.text
        for detail in ("MR brain with contrast", "https://portal.example.org/shares/7f3a9c/"):
            assert detail in email.text
            assert detail in email.html
        assert "Please have a look at the left temporal lobe." in email.text
        assert greeting in email.html

        message = wait_until(
            lambda message=messages[language]: (
                (row := fresh(message)).status == MessageStatus.SENT and row
            ),
            timeout=10,
            what=f"the {language} message to be SENT",
        )
        assert message.attempts == 1
        assert message.language == language
        assert message.provider_id == email.message["Message-ID"]
        assert message.sent_at is not None
        assert message.last_error == ""


# Refusals at both points a server can refuse: the recipient (RCPT), and the message (DATA).
FOR_NOW = {
    "dr.busy@example.org": ("RCPT", "451 4.2.1 Mailbox busy, try later"),
    "dr.greylisted@example.org": ("DATA", "451 4.7.1 Greylisted, try again later"),
}
FOR_GOOD = {
    "nobody@example.org": ("RCPT", "550 5.1.1 Mailbox unavailable"),
    "dr.spamfilter@example.org": ("DATA", "554 5.7.1 Message refused"),
}


def _dead(messages):
    rows = [fresh(message) for message in messages]
    return all(row.status == MessageStatus.DEAD for row in rows) and rows


def _assert_dead_with_the_servers_answer(message, reply, attempts):
    assert message.attempts == attempts
    code = reply.split(" ", 1)[0]
    assert code in message.last_error
    assert message.recipient not in message.last_error
    event = AuditEvent.objects.get(action=Action.MESSAGE_DEAD, target_id=str(message.pk))
    assert event.target_type == "message"
    assert event.details["attempts"] == attempts
    assert event.details["error"] == message.last_error


def test_server_refusing_for_now_gets_the_message_again_until_it_is_dead(
    broker, celery_worker, smtp_server
):
    for to, (stage, reply) in FOR_NOW.items():
        smtp_server.refuse(stage, reply, to=to)
    celery_worker()
    messages = queue_shares(list(FOR_NOW))

    rows = wait_until(lambda: _dead(messages), timeout=30, what="the refused messages to be DEAD")

    max_attempts = settings.NOTIFICATIONS_MAX_ATTEMPTS
    for message in rows:
        _stage, reply = FOR_NOW[message.recipient]
        _assert_dead_with_the_servers_answer(message, reply, attempts=max_attempts)
        assert message.last_error.startswith(f"Gave up after {max_attempts} attempts: ")
        assert smtp_server.refused[message.recipient] == max_attempts
    assert smtp_server.count() == 0


def test_server_refusing_for_good_makes_the_message_dead_at_once(
    broker, celery_worker, smtp_server
):
    for to, (stage, reply) in FOR_GOOD.items():
        smtp_server.refuse(stage, reply, to=to)
    celery_worker()
    messages = queue_shares(list(FOR_GOOD))

    rows = wait_until(lambda: _dead(messages), timeout=20, what="the refused messages to be DEAD")

    for message in rows:
        _stage, reply = FOR_GOOD[message.recipient]
        _assert_dead_with_the_servers_answer(message, reply, attempts=1)
        assert smtp_server.refused[message.recipient] == 1
    assert smtp_server.count() == 0
