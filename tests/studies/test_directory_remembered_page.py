"""The directory page itself is remembered for the session that asked for it
(``portal.remembered_pages``, issue 13): the same page again is not rendered again, yet each
answer carries its own CSRF token and its own audit event; another session renders its own; a
page with a one-time message is its request's alone; and what a page shows changes at the next
request after anything it rests on changes (the tests of ``test_directory_remembered`` hold for
the remembered page too)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import Action, AuditEvent
from portal import decisions
from studies.models import AccessLevel
from studies.views import directory as directory_views
from tests.accounts.helpers import HttpsClient, without_random_values
from tests.factories import make_study, share_entry

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture
def renders(monkeypatch) -> list[str]:
    """The directory pages rendered (not answered from memory), by the user they were for."""
    rendered: list[str] = []
    real = directory_views._directory_page

    def counted(request, listing, form):
        rendered.append(request.user.username)
        return real(request, listing, form)

    monkeypatch.setattr(directory_views, "_directory_page", counted)
    return rendered


def directory_answered_once(client, user, org, location):
    """The user's directory, listing one study (of Peeters), answered once: its address and the
    answer."""
    make_study(org, location=location, family_name="Peeters")
    client.force_login(user)
    directory = reverse("studies:directory")
    return directory, client.get(directory)


def queried_rows() -> list[int]:
    return [
        event.details["rows"]
        for event in AuditEvent.objects.filter(action=Action.STUDIES_QUERIED).order_by("pk")
    ]


def test_the_same_page_again_is_answered_from_memory_with_its_own_token_and_audit_event(
    alice, org, location, renders
):
    make_study(org, location=location, family_name="Peeters")
    # A browser's client, whose forms must carry a valid token.
    client = HttpsClient(enforce_csrf_checks=True, HTTP_ORIGIN="https://testserver")
    client.force_login(alice)
    directory = reverse("studies:directory")

    first = client.get(directory)
    again = client.get(directory)

    assert first.status_code == again.status_code == 200
    assert renders == ["alice"]
    assert again.content.count(b'data-menu-target="study"') == 1
    assert b"Peeters" in again.content
    # Every answer is audited with the rows it listed.
    assert queried_rows() == [1, 1]
    # Each answer has a token of its own (masked afresh), and the remembered page's works.
    tokens = set(TOKEN.findall(first.content.decode())) | set(TOKEN.findall(again.content.decode()))
    assert len(tokens) == 2
    (remembered_token,) = set(TOKEN.findall(again.content.decode()))
    searched = client.post(
        reverse("studies:search"), {"q": "peeters", "csrfmiddlewaretoken": remembered_token}
    )
    assert searched.status_code == 302


def test_another_session_of_the_same_user_renders_its_own_page(alice, org, location, renders):
    make_study(org, location=location)
    one, other = HttpsClient(), HttpsClient()
    one.force_login(alice)
    other.force_login(alice)
    directory = reverse("studies:directory")

    one.get(directory)
    other.get(directory)
    one.get(directory)

    assert renders == ["alice", "alice"]


def test_a_page_with_a_message_is_rendered_for_its_request_alone(client, alice, renders):
    client.force_login(alice)
    expired = f"{reverse('studies:directory')}?s=forgotten"

    for _ in range(2):
        page = client.get(expired).content.decode()
        assert "That search has expired" in page

    assert renders == ["alice", "alice"]
    # The plain page after it neither shows the message nor was it answered from memory.
    plain = client.get(reverse("studies:directory")).content.decode()
    assert "That search has expired" not in plain
    assert renders == ["alice", "alice", "alice"]


def test_opening_a_shared_study_turns_its_message_badge_read_at_the_next_page(
    client, carol, org, location
):
    study = make_study(org, location=location)
    share_entry(carol, study, level=AccessLevel.REPORT_READ, message="Please review")
    client.force_login(carol)
    directory = reverse("studies:directory")
    assert 'class="badge unread"' in client.get(directory).content.decode()

    assert client.get(reverse("studies:study", args=[study.study_uid])).status_code == 200

    page = client.get(directory).content.decode()
    assert 'class="badge read"' in page and 'class="badge unread"' not in page


def test_the_page_follows_the_users_language_at_once(client, alice, renders):
    client.force_login(alice)
    directory = reverse("studies:directory")
    assert "Patient Study Directory" in client.get(directory).content.decode()

    alice.language = "nl"
    alice.save(update_fields=["language"])

    assert "Overzicht patiëntonderzoeken" in client.get(directory).content.decode()
    assert renders == ["alice", "alice"]


def test_a_page_rendered_afresh_asks_when_the_users_access_ends_once(client, alice, org, location):
    """The page and its search are both remembered until the first of the user's dated shares
    ends; rendering the page afresh (its search too) reads that once."""
    make_study(org, location=location)
    client.force_login(alice)

    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("studies:directory")).status_code == 200

    ends = [q["sql"] for q in queries if 'MIN("studies_entry"."valid_until")' in q["sql"]]
    assert len(ends) == 1, ends


def test_a_page_this_process_answered_is_taken_from_it_with_the_ask_ahead_alone(
    client, alice, org, location, renders, counting_cache
):
    """Going from one search's page to another and back: the ask-ahead (one round trip) reads
    the generations, and the page this process answered before carries a current one, so the
    cache is not asked for it again."""
    directory, first = directory_answered_once(client, alice, org, location)
    client.get(f"{directory}?sort=name")
    counting_cache.asked = 0

    again = client.get(directory)

    assert again.status_code == 200
    assert counting_cache.asked == 1
    assert renders == ["alice", "alice"]
    assert without_random_values(again.content.decode()) == without_random_values(
        first.content.decode()
    )
    assert queried_rows() == [1, 1, 1]


def test_a_page_this_process_answered_is_not_taken_once_what_it_shows_changed(
    client, alice, org, location, renders, counting_cache
):
    directory, _first = directory_answered_once(client, alice, org, location)
    client.get(f"{directory}?sort=name")

    make_study(org, location=location, patient_id="P-0002", family_name="Janssens")
    page = client.get(directory).content.decode()

    assert "Janssens" in page and "Peeters" in page
    assert renders == ["alice", "alice", "alice"]


def pages_asked(cache) -> list[str]:
    return [key for key in cache.answers_asked if "directory-page" in key]


def test_a_reload_takes_the_page_this_process_keeps_without_carrying_it_from_the_cache(
    client, alice, org, location, renders, counting_cache
):
    """The last page answered is among what the ask-ahead asks for, since the last request asked
    for it; this process keeps a copy of it, so the ask-ahead leaves it out and the reload is
    answered from that copy."""
    directory, first = directory_answered_once(client, alice, org, location)
    counting_cache.asked, counting_cache.answers_asked = 0, []

    again = client.get(directory)

    assert counting_cache.asked == 1
    assert pages_asked(counting_cache) == []
    assert renders == ["alice"]
    assert without_random_values(again.content.decode()) == without_random_values(
        first.content.decode()
    )


def test_a_page_another_process_answered_comes_with_the_ask_ahead(
    client, alice, org, location, renders, counting_cache
):
    directory, _first = directory_answered_once(client, alice, org, location)
    # As in another process, which never answered this page.
    decisions._near_answers.clear()
    counting_cache.asked, counting_cache.answers_asked = 0, []

    assert b"Peeters" in client.get(directory).content

    assert counting_cache.asked == 1
    assert len(pages_asked(counting_cache)) == 1
    assert renders == ["alice"]


def test_a_page_kept_from_before_a_change_is_asked_of_the_cache_which_holds_it_anew(
    client, alice, org, location, renders, counting_cache
):
    """This process keeps the page as it was before a new study; another process has answered
    it since, the new study listed. The copy here is not used: the cache is asked for the page
    and answers the current one, not rendered again."""
    directory, _first = directory_answered_once(client, alice, org, location)
    before = dict(decisions._near_answers._by_key)
    make_study(org, location=location, patient_id="P-0002", family_name="Janssens")
    client.get(directory)
    for key, page in before.items():
        decisions._near_answers.note(key, page)
    counting_cache.asked, counting_cache.answers_asked = 0, []

    page = client.get(directory).content.decode()

    assert "Janssens" in page and "Peeters" in page
    assert renders == ["alice", "alice"]
    assert counting_cache.asked == 2
    assert len(pages_asked(counting_cache)) == 1


def test_a_page_is_taken_from_the_process_only_after_the_generations_were_read_ahead(
    counting_cache, monkeypatch
):
    """Without an ask-ahead in the request (no generations read yet), the page is asked of the
    cache, which knows whether it still holds; the pages kept are bounded."""
    monkeypatch.setattr(decisions._near_answers, "limit", 2)

    def page(number):
        return lambda: (f"page {number}", None)

    for _ in range(2):
        with decisions.kept_for_request():
            assert decisions.remember("page:user:1:a", page(1), near=True) == "page 1"
    assert counting_cache.asked == 2

    with decisions.kept_for_request():
        decisions.remember("page:user:1:b", page(2), near=True)
        decisions.remember("page:user:1:c", page(3), near=True)
    # Full at the third: every page kept was forgotten, and the third kept.
    kept = {key: decisions._near_answers.get(f"page:user:1:{key}") for key in "abc"}
    assert [key for key, page in kept.items() if page is not None] == ["c"]
