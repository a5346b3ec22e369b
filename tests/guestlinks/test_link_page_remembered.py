"""A link page before its gates is remembered once for every link that shows the same
(``portal.remembered_pages``, issue 13): rendering it was a quarter of its GET. Each answer
still carries its own address (which holds the link's token, so the cache never does) and its
own CSRF token; what the page shows follows the link's state at once; a logged-in visitor's
page, a page with a query and one in another language are their own."""

from __future__ import annotations

import pickle
import re

import pytest
from django.core.cache import caches

from guestlinks.models import GuestLink
from portal import remembered_pages
from portal.remembered_pages import RememberedPage, render_page
from tests.accounts.helpers import HttpsClient, without_random_values
from tests.conftest import make_user
from tests.guestlinks.conftest import link_path

pytestmark = pytest.mark.django_db

CSRF_VALUE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
NEXT_VALUE = re.compile(r'name="next" value="([^"]+)"')


def test_links_with_the_same_gates_share_one_rendering_each_with_its_own_address(
    guest, study, make_link
):
    _, first = make_link(study, password="open-sesame-42")
    _, second = make_link(study, password="open-sesame-42")

    rendered = guest.get(link_path(first))
    remembered = guest.get(link_path(second))
    again = guest.get(link_path(first))

    assert rendered.templates[0].name == "guestlinks/recipient/link.html"
    assert remembered.templates == [] and again.templates == []
    for response, token, other in ((remembered, second, first), (again, first, second)):
        html = response.content.decode()
        assert response.status_code == 200
        assert NEXT_VALUE.findall(html) == [link_path(token)]
        assert other not in html
    # Answered from memory, the page is the one a rendering gives, but for its CSRF tokens.
    assert without_random_values(again.content.decode()) == without_random_values(
        rendered.content.decode()
    )


def test_the_cache_never_holds_a_links_token(guest, study, make_link):
    tokens = [make_link(study)[1] for _ in range(3)]
    for token in tokens:
        assert guest.get(link_path(token)).status_code == 200

    # The test settings' cache is Django's local-memory cache: its pickled values are in hand.
    stored = caches["default"]._cache  # type: ignore[attr-defined]
    assert any(b"guest-link-page" in key.encode() for key in stored)
    for token in tokens:
        assert not any(token in key for key in stored)
        assert not any(token.encode() in value for value in stored.values())
        # Pickled by Django's cache itself, in this process: nothing untrusted is read.
        assert not any(token in str(pickle.loads(value)) for value in stored.values())  # noqa: S301


def test_each_remembered_answer_carries_a_csrf_token_that_opens_the_link(study, make_link):
    _, token = make_link(study)
    browser = HttpsClient(enforce_csrf_checks=True, HTTP_ORIGIN="https://testserver")
    HttpsClient().get(link_path(token))  # remembered by another visitor's answer

    page = browser.get(link_path(token))
    opened = browser.post(
        link_path(token),
        {"action": "open", "csrfmiddlewaretoken": CSRF_VALUE.search(page.content.decode())[1]},
    )

    assert page.templates == []
    assert opened.status_code == 303


def test_the_page_shows_the_links_state_at_once(guest, study, make_link):
    link, token = make_link(study, password="open-sesame-42", max_password_attempts=3)
    assert "3 attempts left" in guest.get(link_path(token)).content.decode()

    wrong = guest.post(link_path(token), {"action": "open", "password": "guess"})
    assert "2 attempts left" in wrong.content.decode()

    page = guest.get(link_path(token)).content.decode()
    assert "2 attempts left" in page and "3 attempts left" not in page
    GuestLink.objects.filter(pk=link.pk).update(password_hash="")
    page = guest.get(link_path(token)).content.decode()
    assert 'name="password"' not in page


def test_a_logged_in_visitors_page_is_their_own(guest, org, study, make_link):
    _, token = make_link(study)
    colleague = make_user("connie", first_name="Connie", last_name="Colleague")
    browser = HttpsClient()
    browser.force_login(colleague)

    theirs = browser.get(link_path(token))
    anonymous = guest.get(link_path(token))

    assert theirs.templates and "Connie Colleague" in theirs.content.decode()
    assert anonymous.templates, "the logged-in page was not remembered for others"
    assert "Connie" not in anonymous.content.decode()


def test_a_page_with_a_query_or_in_another_language_is_its_own(guest, study, make_link):
    _, english = make_link(study)
    _, dutch = make_link(study, language="nl")
    guest.get(link_path(english))

    with_query = guest.get(link_path(english) + "?from=mail&x=1")
    in_dutch = guest.get(link_path(dutch))

    assert with_query.templates
    assert NEXT_VALUE.findall(with_query.content.decode()) == [
        link_path(english) + "?from=mail&amp;x=1"
    ]
    assert in_dutch.templates
    assert 'lang="nl"' in in_dutch.content.decode()
    assert NEXT_VALUE.findall(in_dutch.content.decode()) == [link_path(dutch)]


def test_an_address_that_would_need_escaping_is_rendered_for_its_request(guest, study, make_link):
    """Under a deployment's prefix that is not plain text, the page is rendered every time,
    with its address escaped as the template escapes it."""
    _, token = make_link(study)
    guest.get(link_path(token))

    prefixed = guest.get(link_path(token), SCRIPT_NAME="/a&b")

    assert prefixed.status_code == 200 and prefixed.templates
    assert NEXT_VALUE.findall(prefixed.content.decode()) == [f"/a&amp;b{link_path(token)}"]


def test_a_remembered_page_takes_only_values_that_need_no_escaping(rf):
    request = rf.get("/l/x")
    page = RememberedPage(pieces=("<a href='", "'>"), holes=("page_path",))

    assert (
        page.response(request, page_path="/l/abc_DEF-123").content == b"<a href='/l/abc_DEF-123'>"
    )
    with pytest.raises(ValueError, match="escaping"):
        page.response(request, page_path='/l/"><script>')


def test_a_rendered_page_has_a_hole_wherever_its_context_names_one(rf):
    request = rf.get("/l/x")
    request.user = make_user("rita")
    page = render_page(request, "_language_menu.html", {"return_to": "ignored"}, holes=())

    assert page.holes == ("csrf_token",)
    filled = page.response(request).content.decode()
    assert CSRF_VALUE.search(filled)[1] not in ("", "NOTPROVIDED")


def test_a_release_that_remembers_pages_in_another_shape_renders_them_again(
    guest, study, make_link, monkeypatch
):
    """During a deploy two releases share the cache: a page remembered in the shape of one is
    never read by the other."""
    _, token = make_link(study)
    guest.get(link_path(token))
    assert guest.get(link_path(token)).templates == []

    monkeypatch.setattr(remembered_pages, "_SHAPE", "another-shape")

    assert guest.get(link_path(token)).templates
