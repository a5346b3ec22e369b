"""Queueing a message: the address is checked before anything is stored, the row joins the
caller's transaction, and the worker is only told after commit (and never fails the action)."""

from datetime import date

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import translation
from kombu.exceptions import OperationalError

from notifications import services
from notifications.models import Channel, Message, MessageStatus
from notifications.services import queue_message, queue_messages, stored_context
from notifications.tasks import deliver_messages, publish
from tests.notifications.conftest import LINK, share_context

pytestmark = pytest.mark.django_db


# --- Addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["not-an-address", "dr.smith@", "a@b@example.org", "x\n@y.org"])
def test_invalid_email_address_is_refused_by_name_and_nothing_is_stored(queue, address):
    with pytest.raises(ValidationError) as refused:
        queue(address)

    assert refused.value.messages == [f"“{address.strip()}” is not a valid email address."]
    assert not Message.objects.exists()


def test_missing_email_address_is_refused(queue):
    with pytest.raises(ValidationError, match="An email address is required"):
        queue("  ")
    assert not Message.objects.exists()


def test_invalid_mobile_number_is_refused_with_what_is_wrong(queue):
    with pytest.raises(ValidationError) as refused:
        queue("12", channel=Channel.SMS, template="sms_code")

    assert "“12” is not a valid phone number." in refused.value.messages
    assert not Message.objects.exists()


def test_mobile_number_is_stored_in_e164_form(queue):
    message = queue("0470 12 34 56", channel=Channel.SMS, template="sms_code")

    assert message.recipient == "+32470123456"
    assert message.subject == "" and message.body_html == ""


def test_the_refusal_is_in_the_callers_language(queue):
    with translation.override("fr"):
        with pytest.raises(ValidationError) as refused:
            queue("dr.smith@")

        assert refused.value.messages == ["« dr.smith@ » n'est pas une adresse e-mail valide."]


def test_one_bad_address_among_several_stores_none_and_names_each_bad_one(db):
    with pytest.raises(ValidationError) as refused:
        queue_messages(
            channel=Channel.EMAIL,
            recipients=["dr.smith@example.org", "oops", "also@bad@x"],
            template="share_notification",
            context=share_context(),
            language="en",
        )

    assert refused.value.messages == [
        "“oops” is not a valid email address.",
        "“also@bad@x” is not a valid email address.",
    ]
    assert not Message.objects.exists()


def test_several_recipients_get_one_row_each(db):
    messages = queue_messages(
        channel=Channel.EMAIL,
        recipients=["dr.smith@example.org", "dr.jones@example.org"],
        template="share_notification",
        context=share_context(),
        language="nl",
        concerning=("share", 7),
    )

    assert [m.recipient for m in messages] == ["dr.smith@example.org", "dr.jones@example.org"]
    assert all(m.pk for m in messages)
    assert {(m.language, m.concerning_type, m.concerning_id) for m in messages} == {
        ("nl", "share", "7")
    }


# --- The row ---------------------------------------------------------------------------------


def test_queued_message_is_rendered_and_waits_for_its_first_attempt(queue):
    message = queue(language="fr")

    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED
    assert message.attempts == 0
    assert message.language == "fr"
    assert message.template == "share_notification"
    assert (message.concerning_type, message.concerning_id) == ("share", "42")
    assert message.next_attempt_at == message.created_at
    assert message.lease_until is None and message.sent_at is None
    assert "Bonjour" in message.body_text and LINK in message.body_text
    assert "Bonjour" in message.body_html and LINK in message.body_html
    assert message.subject.startswith("Dr. Alice Tester a partagé un examen")


def test_unknown_language_falls_back_to_the_default(queue):
    assert queue(language="xx").language == "en"
    assert queue(language="de-AT").language == "de"


def test_stored_context_keeps_no_link_or_code(queue):
    message = queue(extra={"otp": "123456", "note": "kept"}, password="hunter2")
    code = queue("+32470123456", channel=Channel.SMS, template="sms_code")

    message.refresh_from_db()
    assert message.context["link"] == "[redacted]"
    assert message.context["password"] == "[redacted]"
    assert message.context["extra"] == {"otp": "[redacted]", "note": "kept"}
    assert message.context["study_date"] == "2024-05-17"
    assert message.context["sender_name"] == "Dr. Alice Tester"
    code.refresh_from_db()
    assert code.context == {"code": "[redacted]"}
    assert "482913" in code.body_text  # the body is the one place the code is


def test_stored_context_is_plain_json():
    assert stored_context({"when": date(2024, 1, 2), "pair": ("a", "b")}) == {
        "when": "2024-01-02",
        "pair": ["a", "b"],
    }


def test_message_rolls_back_with_the_callers_transaction(queue):
    with pytest.raises(RuntimeError), transaction.atomic():
        queue()
        raise RuntimeError("the share failed after queueing")

    assert not Message.objects.exists()


# --- Publishing after commit -----------------------------------------------------------------


def test_message_is_delivered_only_once_the_transaction_commits(
    queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = queue()
    assert len(callbacks) == 1
    assert mail.outbox == []

    callbacks[0]()

    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert [email.to for email in mail.outbox] == [["dr.smith@example.org"]]


def test_committed_message_goes_out_through_the_task(queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        message = queue(language="de")

    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.SENT, 1)
    [email] = mail.outbox
    assert email.subject == message.subject
    assert email.body == message.body_text
    assert email.alternatives[0].content == message.body_html
    assert email.extra_headers["Content-Language"] == "de"
    assert email.extra_headers["Message-ID"] == message.provider_id


def test_broker_down_leaves_the_message_queued_and_the_action_committed(
    queue, django_capture_on_commit_callbacks, monkeypatch, caplog
):
    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(deliver_messages, "apply_async", broker_down)

    with django_capture_on_commit_callbacks(execute=True):
        message = queue()

    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.QUEUED, 0)
    assert "Messages not handed over (1) stay queued for the periodic re-queue" in caplog.text
    assert "OperationalError" in caplog.text
    assert LINK not in caplog.text
    assert "Please look at" not in caplog.text


def test_publishing_does_not_retry_against_a_broker_that_is_down(monkeypatch):
    calls = []

    def record(args, **options):
        calls.append((args, options))

    monkeypatch.setattr(deliver_messages, "apply_async", record)

    assert publish([42]) == 1
    # Celery's default publish retries cost ~0.6 s per task while the broker is down; the
    # periodic re-queue is the retry.
    assert calls == [(([42],), {"retry": False})]


@pytest.fixture
def handed_out(monkeypatch) -> list[list[int]]:
    """The batches given to the broker, as the workers would receive them."""
    batches: list[list[int]] = []
    monkeypatch.setattr(
        deliver_messages, "apply_async", lambda args, retry: batches.append(args[0])
    )
    return batches


def queue_one(to: str) -> Message:
    return queue_message(
        channel=Channel.EMAIL,
        to=to,
        template="share_notification",
        context=share_context(),
        language="en",
    )


def test_what_one_transaction_queued_goes_to_the_workers_as_one_batch(
    db, handed_out, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        messages = [queue_one(f"r{n}@example.org") for n in range(3)]
        messages += queue_messages(
            channel=Channel.EMAIL,
            recipients=["a@example.org", "b@example.org"],
            template="share_notification",
            context=share_context(),
            language="nl",
        )

    assert handed_out == [[message.pk for message in messages]]


def test_a_batch_is_at_most_the_configured_size(
    db, handed_out, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATIONS_DELIVERY_BATCH = 2
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        messages = [queue_one(f"r{n}@example.org") for n in range(5)]

    ids = [message.pk for message in messages]
    assert handed_out == [ids[0:2], ids[2:4], ids[4:5]]


def test_messages_of_a_rolled_back_transaction_are_never_handed_out(
    db, handed_out, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            queue_one("gone@example.org")
            raise RuntimeError("the share failed after queueing")
        with transaction.atomic():
            committed = queue_one("kept@example.org")

    # One id only: SQLite may give the committed message the rolled-back one's number.
    assert handed_out == [[committed.pk]]


def test_a_message_queued_in_a_rolled_back_savepoint_is_not_sent(
    db, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        kept = queue_one("kept@example.org")
        with pytest.raises(RuntimeError), transaction.atomic():
            queue_one("gone@example.org")
            raise RuntimeError("one recipient's share failed")

    assert Message.objects.get().pk == kept.pk
    assert [email.to for email in mail.outbox] == [["kept@example.org"]]
    assert Message.objects.get().status == MessageStatus.SENT


def test_nothing_waits_for_a_commit_after_the_batch_went_out(
    db, handed_out, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        queue_one("r@example.org")

    assert handed_out
    assert services._waiting.groups == {}
