"""Issue 11, point 1: a study reached through several shares shows one "Message" badge, red
while any of its messages is unread, and each distinct message once with its sender; the viewer
shows them in the side panel and as a "Message" entry of the series list (PACSonWEB: the message
is "available within the exam as a separate series")."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.urls import reverse

from studies.models import Entry
from studies.selectors import distinct_messages, study_rows
from tests.accounts.helpers import HttpsClient, plain_static_storage
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db

DIRECTORY = reverse("studies:directory")
NODULE = "Please look at the nodule in the left lower lobe."
COMPARE = "Compare with the March CT, please."
BADGE = re.compile(r'<span class="badge (unread|read)"[^>]*>Message</span>')


@pytest.fixture(autouse=True)
def _plain_static(settings):
    plain_static_storage(settings)


def client_for(user) -> HttpsClient:
    client = HttpsClient()
    client.force_login(user)
    return client


def badges(client) -> list[str]:
    return BADGE.findall(client.get(DIRECTORY).content.decode())


def viewer(client, study) -> str:
    response = client.get(reverse("studies:study", args=[study.study_uid]))
    assert response.status_code == 200
    return unescape(response.content.decode())


@pytest.fixture
def twice_shared(alice, bob, group, study):
    """alice shares the study with bob, and with his Neuroradiology group, with one message."""
    share(alice, study, ("user", bob.pk), message=NODULE)
    share(alice, study, ("group", group.pk), message=NODULE)
    return study


def test_two_shares_with_one_message_show_one_red_badge(bob, twice_shared):
    assert Entry.objects.filter(study=twice_shared, message=NODULE).count() == 2
    assert badges(client_for(bob)) == ["unread"]


def test_the_viewer_shows_the_message_once_with_its_sender(bob, twice_shared):
    html = viewer(client_for(bob), twice_shared)
    assert html.count(NODULE) == 1
    assert html.count("From Alice Tester,") == 1
    # The "Message" entry of the series list leads to the messages.
    entry = re.search(
        r'<a class="series-thumb message-series" href="#messages"[^>]*>(.*?)</a>', html, re.S
    )
    assert entry and "Message" in entry.group(1) and "From Alice Tester" in entry.group(1)
    assert 'id="messages"' in html
    strip = re.search(r'<nav class="series-strip".*?</nav>', html, re.S).group(0)
    assert "message-series" in strip


def test_opening_the_study_turns_the_one_badge_green_until_a_new_message(alice, bob, twice_shared):
    client = client_for(bob)
    viewer(client, twice_shared)
    assert badges(client) == ["read"]
    # The same message again in a new share: still one badge, red again, still once in the viewer.
    share(alice, twice_shared, ("user", bob.pk), message=NODULE)
    assert badges(client) == ["unread"]
    assert viewer(client, twice_shared).count(NODULE) == 1
    assert badges(client) == ["read"]


def test_each_distinct_message_once_with_its_own_sender(alice, bob, dana, twice_shared):
    share(dana, twice_shared, ("user", bob.pk), message=COMPARE)
    # Another sender with the same words: theirs too, with their name.
    share(dana, twice_shared, ("user", bob.pk), message=NODULE)
    client = client_for(bob)
    assert badges(client) == ["unread"]
    html = viewer(client, twice_shared)
    assert html.count(COMPARE) == 1 and html.count(NODULE) == 2
    assert html.count("From Alice Tester,") == 1 and html.count("From Dana Tester,") == 2
    assert "3 messages" in html  # the series list entry


def test_a_share_without_a_message_adds_no_badge_and_no_series_entry(alice, bob, study):
    share(alice, study, ("user", bob.pk))
    client = client_for(bob)
    assert badges(client) == []
    assert 'class="badge shared"' in client.get(DIRECTORY).content.decode()
    html = viewer(client, study)
    assert "message-series" not in html and 'id="messages"' not in html


def test_the_row_counts_messages_from_its_entries(bob, twice_shared):
    (row,) = study_rows(bob, [twice_shared])
    assert len(row.shared_entries) == 2
    (message,) = row.messages
    assert (message.text, message.sender.username, message.read) == (NODULE, "alice", False)
    assert row.unread_messages


def test_distinct_messages_keeps_newest_first_and_unread_if_any_entry_is(bob, twice_shared):
    entries = list(
        Entry.objects.filter(study=twice_shared, origin="share").select_related("added_by")
    )
    older, newer = sorted(entries, key=lambda e: e.pk)
    Entry.objects.filter(pk=older.pk).update(message="  " + NODULE.replace(" ", "  ") + "\n")
    older.refresh_from_db()
    newer.opened_at = newer.added_at
    (message,) = distinct_messages([older, newer])
    assert not message.read  # the older entry is still unread
    assert message.sent_at == newer.added_at
