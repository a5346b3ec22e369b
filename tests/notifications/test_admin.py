"""The outbox in the admin: staff read what was sent and why something failed, without seeing
codes or links unless they are superusers, and may queue failed or dead messages again."""

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from audit.models import Action, AuditEvent
from notifications.models import Channel, Message, MessageStatus
from tests.conftest import make_user
from tests.notifications.conftest import LINK

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:notifications_message_changelist")


def change_url(message) -> str:
    return reverse("admin:notifications_message_change", args=[message.pk])


@pytest.fixture
def root(db):
    return make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def operator(db):
    """Staff who look after the outbox: may read messages and retry them, nothing more."""
    user = make_user("operator", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="notifications",
            codename__in=["view_message", "change_message"],
        )
    )
    return user


@pytest.fixture
def reader(db):
    user = make_user("reader", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_message"))
    return user


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def retry(client, *messages):
    return client.post(
        CHANGELIST,
        {"action": "retry", "_selected_action": [m.pk for m in messages]},
        follow=True,
    )


def test_list_shows_status_attempts_and_errors_but_no_sms_code(queue, root, verified_client):
    email = queue()
    queue("+32470123456", channel=Channel.SMS, template="sms_code")
    Message.objects.filter(pk=email.pk).update(
        status=MessageStatus.FAILED, attempts=2, last_error="451 4.3.0 Try again later"
    )
    client = verified_client(root)

    response = client.get(CHANGELIST)

    assert response.status_code == 200
    assert "451 4.3.0 Try again later" in response.text
    assert email.subject in response.text
    assert "482913" not in response.text  # the code, even for a superuser
    assert "Study Portal: Your code is ••••••." in response.text


def test_list_filters_and_searches_by_recipient(queue, root, verified_client):
    queue("dr.smith@example.org")
    other = queue("dr.jones@example.org")
    client = verified_client(root)

    response = client.get(CHANGELIST, {"q": "jones", "status__exact": "queued"})

    assert [m.pk for m in response.context["cl"].result_list] == [other.pk]


def test_superuser_reads_the_body_in_clear(queue, root, verified_client):
    sms = queue("+32470123456", channel=Channel.SMS, template="sms_code")
    client = verified_client(root)

    response = client.get(change_url(sms))

    assert response.status_code == 200
    assert "482913" in response.text


def test_other_staff_read_bodies_with_codes_and_links_masked(queue, operator, verified_client):
    sms = queue("+32470123456", channel=Channel.SMS, template="sms_code")
    email = queue()
    client = verified_client(operator)

    sms_page = client.get(change_url(sms))
    email_page = client.get(change_url(email))

    assert sms_page.status_code == email_page.status_code == 200
    assert "482913" not in sms_page.text
    assert "Your code is ••••••." in sms_page.text
    assert LINK not in email_page.text
    assert "[link]" in email_page.text
    assert "[redacted]" in email_page.text  # the stored context


def test_messages_cannot_be_added_changed_or_deleted(queue, root, verified_client):
    message = queue()
    client = verified_client(root)

    assert client.get(reverse("admin:notifications_message_add")).status_code == 403
    assert client.post(change_url(message), {"status": "sent"}).status_code == 403
    delete = reverse("admin:notifications_message_delete", args=[message.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Message.objects.get(pk=message.pk).status == MessageStatus.QUEUED


def test_retry_queues_dead_and_failed_messages_again_and_audits_it(
    queue, operator, verified_client, django_capture_on_commit_callbacks, monkeypatch
):
    dead = queue("dead@example.org")
    failed = queue("failed@example.org")
    sent = queue("sent@example.org")
    Message.objects.filter(pk=dead.pk).update(
        status=MessageStatus.DEAD, attempts=4, last_error="Gave up after 4 attempts: 451"
    )
    Message.objects.filter(pk=failed.pk).update(status=MessageStatus.FAILED, attempts=2)
    Message.objects.filter(pk=sent.pk).update(status=MessageStatus.SENT, attempts=1)
    published = []
    monkeypatch.setattr("notifications.services.publish", published.extend)
    client = verified_client(operator)

    with django_capture_on_commit_callbacks(execute=True):
        response = retry(client, dead, failed, sent)

    assert response.status_code == 200
    assert messages_of(response) == [
        "2 messages queued again.",
        "1 message was left alone: only failed or undeliverable messages can be retried.",
    ]
    for message in (dead, failed):
        message.refresh_from_db()
        assert (message.status, message.attempts) == (MessageStatus.QUEUED, 0)
    assert Message.objects.get(pk=sent.pk).status == MessageStatus.SENT
    assert sorted(published) == sorted([dead.pk, failed.pk])
    events = AuditEvent.objects.filter(action=Action.MESSAGE_RETRIED).order_by("id")
    assert [(e.target_type, e.target_id, e.actor_id) for e in events] == [
        ("message", str(dead.pk), operator.pk),
        ("message", str(failed.pk), operator.pk),
    ]
    assert events[0].details == {
        "channel": "email",
        "template": "share_notification",
        "previous_status": "dead",
        "attempts": 4,
    }


def test_retried_message_is_delivered(
    queue, root, verified_client, django_capture_on_commit_callbacks
):
    message = queue()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.DEAD, attempts=4)
    client = verified_client(root)

    with django_capture_on_commit_callbacks(execute=True):
        retry(client, message)

    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.SENT, 1)


def test_staff_who_may_only_read_are_not_offered_the_retry(queue, reader, verified_client):
    message = queue()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.DEAD)
    client = verified_client(reader)

    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert page.context["action_form"] is None  # no action this user may take

    retry(client, message)
    assert Message.objects.get(pk=message.pk).status == MessageStatus.DEAD
    assert not AuditEvent.objects.filter(action=Action.MESSAGE_RETRIED).exists()


def test_staff_without_permission_do_not_see_the_outbox(queue, dana, verified_client):
    client = verified_client(dana)

    assert client.get(CHANGELIST).status_code == 403
