"""Issue 11, point 6: a guest's viewer offers no "Copy Link". That internal link opens only for
signed-in users who may see the study in the portal, so it is useless to someone who reached the
study through a guest link, logged in or not; users who hold the study themselves keep it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.accounts.helpers import HttpsClient
from tests.guestlinks.conftest import link_path

pytestmark = pytest.mark.django_db

COPY_LINK = "data-copy-link="


def viewer(study) -> str:
    return reverse("studies:study", args=[study.study_uid])


def open_link(client, token):
    response = client.post(link_path(token), {"action": "open"})
    assert response.status_code == 303
    return client.get(response["Location"], follow=True)


def test_an_anonymous_guest_sees_no_copy_link(guest, study, make_link):
    _link, token = make_link(study)
    page = open_link(guest, token)
    assert page.status_code == 200 and study.description in page.content.decode()
    assert COPY_LINK not in page.content.decode()


def test_a_logged_in_guest_sees_no_copy_link(guest, study, make_link, carol):
    """carol works at another organization: only the link opens alice's study for her."""
    _link, token = make_link(study)
    guest.force_login(carol)
    page = open_link(guest, token)
    html = page.content.decode()
    assert page.status_code == 200 and study.description in html
    assert COPY_LINK not in html  # no button opens the (hidden) Copy Link dialog
    # The rest of the header is hers as before.
    assert reverse("studies:directory") in html


def test_a_user_who_holds_the_study_keeps_copy_link(guest, study, make_link, alice):
    client = HttpsClient()
    client.force_login(alice)
    assert COPY_LINK in client.get(viewer(study)).content.decode()
    # Also after opening a guest link to it in the same browser: her own access is the better.
    _link, token = make_link(study)
    assert COPY_LINK in open_link(client, token).content.decode()
