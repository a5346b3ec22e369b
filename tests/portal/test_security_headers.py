"""Headers every page carries: a strict Content-Security-Policy, no sniffing, no caching of
pages that may show patient data, HSTS over HTTPS, and HTTPS only."""

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from tests.accounts.helpers import PASSWORD, HttpsClient, make_device, verified_login
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

REQUIRED_CSP = ["object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"]


def assert_strict_csp(response):
    policy = response["Content-Security-Policy"]
    directives = [part.strip() for part in policy.split(";")]
    for directive in REQUIRED_CSP:
        assert directive in directives, f"{directive} missing from {policy}"
    assert "script-src 'self'" in directives
    assert "style-src 'self'" in directives
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy


def html_pages(client, alice):
    """The HTML pages of accounts and the error pages, anonymous and logged in."""
    pages = {
        "login": client.get(reverse("accounts:login")),
        "not found": client.get("/no-such-page/"),
    }
    client.force_login(alice)
    pages["two-factor setup"] = client.get(reverse("accounts:two_factor"))
    pages["password change"] = client.get(reverse("accounts:password_change"))
    pages["password changed"] = client.get(reverse("accounts:password_change_done"))
    root = make_user("root", is_staff=True, is_superuser=True)
    verified_login(client, root, make_device(root))
    pages["admin index"] = client.get(reverse("admin:index"))
    pages["admin user list"] = client.get(reverse("admin:accounts_user_changelist"))
    return pages


def test_every_html_page_carries_a_strict_csp_and_nosniff(client, alice):
    for name, response in html_pages(client, alice).items():
        assert response.status_code == (404 if name == "not found" else 200), name
        assert response["Content-Type"].startswith("text/html"), name
        assert_strict_csp(response)
        assert response["X-Content-Type-Options"] == "nosniff", name
        assert response["X-Frame-Options"] == "DENY", name
        assert response["Referrer-Policy"] == "same-origin", name


def test_login_page_and_logged_in_pages_are_never_cached(client, alice):
    login_page = client.get(reverse("accounts:login"))
    client.post(reverse("accounts:login"), {"username": "alice", "password": PASSWORD})
    logged_in_page = client.get(reverse("accounts:password_change"))

    assert logged_in_page.status_code == 200
    for response in (login_page, logged_in_page):
        assert "no-store" in response["Cache-Control"]


def test_api_responses_are_never_cached_either(alice):
    from tests.accounts.helpers import HttpsAPIClient

    api = HttpsAPIClient()
    api.force_authenticate(alice)

    response = api.get(reverse("api-me"))

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert response["X-Content-Type-Options"] == "nosniff"


@override_settings(SECURE_HSTS_SECONDS=31536000, SECURE_SSL_REDIRECT=False)
def test_hsts_is_sent_over_https():
    secure = HttpsClient().get(reverse("accounts:login"))
    plain = Client().get(reverse("accounts:login"))

    hsts = secure["Strict-Transport-Security"]
    assert hsts.startswith("max-age=31536000")
    assert "includeSubDomains" in hsts
    # Over plain HTTP the header means nothing to browsers and is left out.
    assert "Strict-Transport-Security" not in plain


def test_plain_http_is_redirected_to_https(db):
    response = Client().get(reverse("accounts:login"))

    assert response.status_code == 301
    assert response.url == "https://testserver/accounts/login/"


def test_session_and_csrf_cookies_are_secure(client, alice):
    client.get(reverse("accounts:login"))
    response = client.post(reverse("accounts:login"), {"username": "alice", "password": PASSWORD})

    session_cookie = response.cookies["sessionid"]
    assert session_cookie["secure"] and session_cookie["httponly"]
    assert session_cookie["samesite"] == "Lax"
    # Expires with the browser: a shared ward computer forgets the session when closed.
    assert not session_cookie["max-age"] and not session_cookie["expires"]
    csrf_cookie = client.cookies["csrftoken"]
    assert csrf_cookie["secure"]
