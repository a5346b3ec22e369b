"""A logged-in session's user is remembered (``accounts.backends.PortalBackend``, issue 13):
pages after the first do not read the user's row again, and anything saved on the user (being
deactivated, a new password) ends the session at its very next request, as Django's own backend
does."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.accounts.helpers import HttpsClient, password_login, statements_of_get

pytestmark = pytest.mark.django_db

USER_READ = 'FROM "accounts_user" WHERE "accounts_user"."id" ='


def test_the_next_pages_do_not_read_the_user_again(alice):
    client = password_login(alice)
    directory = reverse("studies:directory")
    client.get(directory)

    status, reads = statements_of_get(client, directory, USER_READ)

    assert status == 200
    assert reads == []


def test_a_deactivated_user_is_logged_out_at_the_next_request(alice):
    client = password_login(alice)
    directory = reverse("studies:directory")
    assert client.get(directory).status_code == 200

    alice.is_active = False
    alice.save(update_fields=["is_active"])

    response = client.get(directory)
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))


def test_a_password_changed_elsewhere_ends_the_session_at_the_next_request(alice):
    client = password_login(alice)
    directory = reverse("studies:directory")
    assert client.get(directory).status_code == 200

    alice.set_password("another-horse-battery-staple")
    alice.save(update_fields=["password"])

    response = client.get(directory)
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))
    # The new password logs in, through the same backend.
    alice.refresh_from_db()
    again = HttpsClient()
    assert (
        again.post(
            reverse("accounts:login"),
            {"username": alice.username, "password": "another-horse-battery-staple"},
        ).status_code
        == 302
    )
