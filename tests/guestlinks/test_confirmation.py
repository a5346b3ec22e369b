"""Two-step email confirmation: the first email asks the recipient to confirm, the confirmation
page's POST (never its GET) sends the second email, with the link. Both emails go through a real
SMTP server (aiosmtpd, in this process) and the outbox's Celery task run eagerly."""

from __future__ import annotations

import email
import email.policy
import logging
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings as django_settings
from django.urls import reverse

from audit.models import Action, AuditEvent
from guestlinks.models import ConfirmationToken, GuestLink, LinkState
from guestlinks.services import opening
from notifications.models import Message, MessageStatus
from portal.digests import secret_digest
from portal.logging import mask_secrets
from tests.accounts.helpers import HttpsClient
from tests.guestlinks.conftest import link_path
from tests.servers import free_port

pytestmark = pytest.mark.django_db

RECIPIENT = "jan.peeters@example.org"


class Mailbox:
    """What the SMTP server accepted: (recipients, subject, text body)."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], str, str]] = []
        self._changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
        with self._changed:
            self.received.append((list(envelope.rcpt_tos), str(message["Subject"]), text))
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[list[str], str, str]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.received) >= count, timeout), (
                f"the SMTP server received {len(self.received)} of {count} emails"
            )
            return list(self.received)


@pytest.fixture
def mailbox(settings, tasks_in_process) -> Iterator[Mailbox]:
    """A real SMTP server, and the portal's email settings pointing at it."""
    box = Mailbox()
    port = free_port()
    # aiosmtpd logs every SMTP command at INFO: a failing test's output should show ours.
    mail_log = logging.getLogger("mail.log")
    previous_level = mail_log.level
    mail_log.setLevel(logging.WARNING)
    controller = Controller(box, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 10
    try:
        yield box
    finally:
        controller.stop()
        mail_log.setLevel(previous_level)


def only_url(text: str) -> str:
    """The one guest-link address in an email (the footer names the portal too)."""
    (url,) = re.findall(r"https?://\S+/l/\S+", text)
    return url


def path_of(url: str) -> str:
    assert url.startswith(django_settings.SITE_URL)
    return urlsplit(url).path


def test_two_step_confirmation_sends_both_emails_and_opens_the_link(
    study, make_link, alice, mailbox, django_capture_on_commit_callbacks
):
    link, token = make_link(
        study,
        created_by=alice,
        email=RECIPIENT,
        require_email_confirmation=True,
        message="The CT from last week.",
        expires_in=timedelta(days=7),
    )
    with django_capture_on_commit_callbacks(execute=True):
        url = opening.start_confirmation(link)

    # The first email: a confirmation address, not the link.
    ((to, subject, text),) = mailbox.wait_for(1)
    assert to == [RECIPIENT]
    assert subject == "Confirm your email address to receive a shared study"
    assert "Alice Tester wants to send you a secure link" in text
    assert only_url(text) == url
    confirm_path = path_of(url)
    confirmation_token = confirm_path.split("/")[2]
    assert confirm_path == reverse("guest:confirm", args=[confirmation_token])
    # In logs and referrers the confirmation token is masked like a link's.
    assert confirmation_token not in mask_secrets(f'"GET {confirm_path} HTTP/1.1" 200 812')
    assert token not in text
    stored = ConfirmationToken.objects.get(link=link)
    assert stored.digest == secret_digest(confirmation_token, purpose="guestlink-confirm")
    assert confirmation_token not in stored.digest

    recipient = HttpsClient()
    # Until confirmed, the link page only says to check the email.
    assert "Check your email" in recipient.get(link_path(token)).content.decode()

    # A GET (a mail scanner, a preview) confirms nothing.
    page = recipient.get(confirm_path)
    assert page.status_code == 200
    assert page["Referrer-Policy"] == "no-referrer"
    html = page.content.decode()
    assert "Confirm" in html and "j•••@example.org" in html
    assert "Doe" not in html and "CT Chest" not in html
    link.refresh_from_db()
    assert link.confirmed_at is None
    assert len(mailbox.received) == 1

    with django_capture_on_commit_callbacks(execute=True):
        confirmed = recipient.post(confirm_path)
    assert confirmed.status_code == 200
    assert "We sent you the link" in confirmed.content.decode()

    # The second email: the link itself.
    _first, (to, subject, text) = mailbox.wait_for(2)
    assert to == [RECIPIENT]
    assert subject == "Alice Tester sent you a secure link to a medical study"
    assert "The CT from last week." in text
    assert path_of(only_url(text)) == link_path(token)
    link.refresh_from_db()
    assert link.confirmed_at is not None
    assert ConfirmationToken.objects.get(link=link).used_at is not None
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.SENT}

    # The link from the second email opens the study.
    opened = recipient.post(link_path(token), {"action": "open"})
    assert opened.status_code == 303
    assert recipient.get(opened["Location"]).status_code == 200

    # Confirming again sends nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        again = recipient.post(confirm_path)
    assert "Already confirmed" in again.content.decode()
    assert len(mailbox.received) == 2

    events = list(AuditEvent.objects.filter(target_type="guest_link").order_by("id"))
    trail = [(e.action, e.details.get("step")) for e in events]
    assert trail == [
        (Action.LINK_EMAILED, "confirmation"),
        (Action.LINK_OPENED, None),
        (Action.LINK_CONFIRMED, None),
        (Action.LINK_EMAILED, "link"),
        (Action.LINK_USED, None),
    ]
    assert events[0].actor_id == alice.pk
    assert events[2].actor_label == "anonymous recipient"
    for event in events:
        assert token not in str(event.details) and confirmation_token not in str(event.details)


def test_create_link_with_confirmation_sends_only_the_first_email(
    study, alice, mailbox, django_capture_on_commit_callbacks
):
    """The sender's side calls start_confirmation: the link itself waits for the confirmation."""
    from guestlinks.selectors import LinkTarget
    from guestlinks.services.creation import LinkOptions, create_link

    with django_capture_on_commit_callbacks(execute=True):
        created = create_link(
            sender=alice,
            target=LinkTarget(study=study),
            options=LinkOptions(email=RECIPIENT, require_email_confirmation=True),
            acknowledged=True,
        )
    ((_to, subject, text),) = mailbox.wait_for(1)
    assert subject == "Confirm your email address to receive a shared study"
    assert created.token not in text

    with django_capture_on_commit_callbacks(execute=True):
        HttpsClient().post(path_of(only_url(text)))
    _first, (_to, _subject, second) = mailbox.wait_for(2)
    assert path_of(only_url(second)) == link_path(created.token)


def test_unknown_and_dead_confirmations_answer_like_dead_links(study, make_link, db):
    client = HttpsClient()
    link, _token = make_link(study, email=RECIPIENT, require_email_confirmation=True)
    url = opening.start_confirmation(link)
    reference = client.get(link_path("x" * 43))

    unknown = client.get(reverse("guest:confirm", args=["y" * 43]))
    assert (unknown.status_code, unknown.content) == (404, reference.content)

    GuestLink.objects.filter(pk=link.pk).update(state=LinkState.REVOKED)
    for response in (client.get(path_of(url)), client.post(path_of(url))):
        assert (response.status_code, response.content) == (404, reference.content)
    link.refresh_from_db()
    assert link.confirmed_at is None


def test_an_expired_link_cannot_be_confirmed(study, make_link, db):
    link, _token = make_link(
        study,
        email=RECIPIENT,
        require_email_confirmation=True,
        expires_in=timedelta(hours=-1),
    )
    url = opening.start_confirmation(link)
    assert HttpsClient().post(path_of(url)).status_code == 404
    link.refresh_from_db()
    assert link.confirmed_at is None
    assert not Message.objects.filter(template="guest_link").exists()


def test_a_link_without_an_address_cannot_be_confirmed_by_email(study, make_link):
    link, _token = make_link(study, require_email_confirmation=True)
    with pytest.raises(ValueError):
        opening.start_confirmation(link)
