"""Message texts at rest: encrypted under a key kept outside the database, read back in clear
by the ORM, readable after a key rotation while the old key is a fallback, never sent when no
key can read them, and converted in place by the migration (both ways)."""

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit.models import Action, AuditEvent
from notifications.delivery import deliver, erase_sent_bodies
from notifications.encryption import UNREADABLE_NOTICE, derive_key
from notifications.models import Message, MessageStatus
from notifications.services import retry_messages
from tests.conftest import make_user
from tests.notifications.conftest import LINK

pytestmark = pytest.mark.django_db

TOKEN = LINK.rsplit("/", 1)[1]
OLD_KEY = "outbox-key-retired-" + "o" * 32
NEW_KEY = "outbox-key-current-" + "n" * 32
TEXTS = ("subject", "body_text", "body_html")


def stored(message) -> dict[str, str]:
    """The message's texts as the database holds them."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(quote(name) for name in TEXTS)} "  # noqa: S608
            f"FROM {quote(Message._meta.db_table)} WHERE id = %s",
            [message.pk],
        )
        return dict(zip(TEXTS, cursor.fetchone(), strict=True))


def fresh(message) -> Message:
    return Message.objects.get(pk=message.pk)


def test_texts_open_only_with_the_key_kept_outside_the_database(queue, settings):
    settings.OUTBOX_KEY = ""
    message = queue(template="guest_link")

    body = stored(message)["body_text"]

    assert TOKEN not in body
    assert LINK in Fernet(derive_key(settings.SECRET_KEY)).decrypt(body.encode()).decode()
    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(body.encode())
    # The ORM reads the text back, as every user of Message did before.
    assert LINK in fresh(message).body_text and LINK in fresh(message).body_html


def test_outbox_key_replaces_the_secret_key_and_reads_what_was_queued_before(queue, settings):
    settings.OUTBOX_KEY = ""
    before = queue()
    settings.OUTBOX_KEY = NEW_KEY
    after = queue()

    body = stored(after)["body_text"].encode()
    assert LINK in Fernet(derive_key(NEW_KEY)).decrypt(body).decode()
    assert deliver(before.pk) == MessageStatus.SENT
    assert deliver(after.pk) == MessageStatus.SENT
    assert all(LINK in email.body for email in mail.outbox)


def test_message_encrypted_with_a_retired_outbox_key_delivers_while_it_is_a_fallback(
    queue, settings
):
    settings.OUTBOX_KEY = OLD_KEY
    message = queue(template="guest_link")
    settings.OUTBOX_KEY = NEW_KEY
    settings.OUTBOX_KEY_FALLBACKS = [OLD_KEY]

    assert deliver(message.pk) == MessageStatus.SENT

    [email] = mail.outbox
    assert LINK in email.body and email.subject == fresh(message).subject


def test_rotating_the_secret_key_keeps_messages_readable_through_its_fallbacks(queue, settings):
    settings.OUTBOX_KEY = ""
    old_secret = settings.SECRET_KEY
    message = queue()
    settings.SECRET_KEY = "rotated-secret-key-for-the-tests-" + "r" * 30
    settings.SECRET_KEY_FALLBACKS = [old_secret]

    assert deliver(message.pk) == MessageStatus.SENT
    assert LINK in mail.outbox[0].body


def test_message_no_key_can_read_is_given_up_unsent_and_sent_once_the_key_is_back(queue, settings):
    settings.OUTBOX_KEY = OLD_KEY
    message = queue(template="guest_link")
    ciphertexts = stored(message)
    settings.OUTBOX_KEY = NEW_KEY
    settings.OUTBOX_KEY_FALLBACKS = []

    unreadable = fresh(message)
    assert unreadable.body_text == UNREADABLE_NOTICE
    unreadable.save()  # saving the row keeps what no key here can read
    assert stored(message) == ciphertexts

    assert deliver(message.pk) == MessageStatus.DEAD
    assert mail.outbox == []
    assert "cannot be decrypted" in fresh(message).last_error
    assert AuditEvent.objects.filter(action=Action.MESSAGE_DEAD, target_id=str(message.pk))
    assert stored(message) == ciphertexts

    settings.OUTBOX_KEY_FALLBACKS = [OLD_KEY]
    admin = make_user("root", is_staff=True, is_superuser=True)
    assert retry_messages(message_ids=[message.pk], actor=admin) == [message.pk]
    assert deliver(message.pk) == MessageStatus.SENT
    assert LINK in mail.outbox[0].body


def test_erased_bodies_stay_empty_in_the_database(queue, settings):
    message = queue()
    deliver(message.pk)
    Message.objects.filter(pk=message.pk).update(sent_at=timezone.now() - timedelta(days=8))

    assert erase_sent_bodies(older_than_days=7) == 1

    assert stored(message)["body_text"] == "" and stored(message)["body_html"] == ""
    assert stored(message)["subject"].startswith("gAAAAA")
    assert fresh(message).body_text == ""


@pytest.mark.django_db(transaction=True)
def test_migration_encrypts_the_messages_already_there_and_decrypts_them_going_back():
    before, after = (
        [("notifications", "0001_initial")],
        [("notifications", "0002_encrypt_message_texts")],
    )
    texts = {
        "subject": "Dr. Alice Tester sent you a secure link to a medical study",
        "body_text": f"Open the study:\n{LINK}\n",
        "body_html": f'<a href="{LINK}">{LINK}</a>',
    }
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        old_message = executor.loader.project_state(before).apps.get_model(
            "notifications", "Message"
        )
        queued = old_message.objects.create(
            channel="email",
            recipient="dr.smith@example.org",
            language="en",
            template="guest_link",
            **texts,
        )
        erased = old_message.objects.create(
            channel="sms",
            recipient="+32470123456",
            language="en",
            template="sms_code",
            subject="",
            body_text="",
            body_html="",
            status="sent",
        )

        executor = MigrationExecutor(connection)
        executor.migrate(after)
        # The model as it was then: later migrations add columns this database does not have yet.
        new_message = executor.loader.project_state(after).apps.get_model(
            "notifications", "Message"
        )

        encrypted = stored(queued)
        assert all(value.startswith("gAAAAA") for value in encrypted.values())
        assert TOKEN not in " ".join(encrypted.values())
        read_back = new_message.objects.get(pk=queued.pk)
        assert {name: getattr(read_back, name) for name in TEXTS} == texts
        assert stored(erased) == {"subject": "", "body_text": "", "body_html": ""}

        MigrationExecutor(connection).migrate(before)

        assert stored(queued) == texts
        assert stored(erased) == {"subject": "", "body_text": "", "body_html": ""}
    finally:
        call_command("migrate", "notifications", verbosity=0)
