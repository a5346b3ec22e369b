"""The language menu on every page, the language kept on a user's account, and guest pages in
the language of their link (issue 12)."""

import pytest
from django.conf import settings
from django.urls import reverse

from tests.accounts.helpers import HttpsClient, sign_in

pytestmark = pytest.mark.django_db

LANGUAGE = reverse("accounts:language")
LOGIN = reverse("accounts:login")


def choose(client, language: str, next_path: str = LOGIN, **extra):
    return client.post(LANGUAGE, {"language": language, "next": next_path}, **extra)


def page_language(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.headers["Content-Language"]


@pytest.mark.parametrize("language", ["en", "nl", "fr"])
def test_every_page_has_the_menu_with_each_language_named_in_itself(client, language):
    """Whatever the page's language: a Dutch page lists "English", not "Engels"."""
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    page = client.get(LOGIN).text

    assert f'action="{LANGUAGE}"' in page
    for code, name in settings.LANGUAGES:
        assert f'<option value="{code}" lang="{code}"' in page
        assert f">{name}</option>" in page
    assert f'<option value="{language}" lang="{language}" selected>' in page


def test_a_visitor_picks_dutch_and_the_next_pages_are_dutch(client):
    assert page_language(client.get(LOGIN)) == "en"

    response = choose(client, "nl")

    assert response.status_code == 302
    assert response.url == LOGIN
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "nl"
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    page = client.get(LOGIN)
    assert page_language(page) == "nl"
    assert '<html lang="nl">' in page.text
    assert '<option value="nl" lang="nl" selected>' in page.text


def test_the_choice_of_a_logged_in_user_is_kept_on_the_account_and_applied_at_login(alice):
    laptop = sign_in(HttpsClient(), alice)
    choose(laptop, "fr", reverse("studies:directory"))
    alice.refresh_from_db()
    assert alice.language == "fr"

    # Another device, whose browser asks for German: the account's language wins once logged in.
    phone = HttpsClient(HTTP_ACCEPT_LANGUAGE="de")
    assert page_language(phone.get(LOGIN)) == "de"
    sign_in(phone, alice)
    assert page_language(phone.get(reverse("studies:directory"))) == "fr"


def test_an_unknown_language_is_refused_and_nothing_changes(alice):
    browser = sign_in(HttpsClient(), alice)

    response = choose(browser, "xx", reverse("studies:directory"))

    assert response.status_code == 302
    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies
    alice.refresh_from_db()
    assert alice.language == "en"
    page = browser.get(response.url)
    assert "This language is not available." in page.text


@pytest.mark.parametrize("elsewhere", ["https://evil.example/", "//evil.example/x", "javascript:x"])
def test_the_menu_never_sends_anyone_to_another_site(client, elsewhere):
    response = choose(client, "de", elsewhere)

    assert response.status_code == 302
    assert response.url == reverse("home")


def test_the_menu_only_takes_posts(client):
    assert client.get(LANGUAGE, {"language": "nl"}).status_code == 405
