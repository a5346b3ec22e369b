"""A guest page speaks the language its link was sent in, unless the guest picks another in
the language menu (issue 12)."""

import pytest
from django.urls import reverse

from accounts.models import User
from tests.guestlinks.conftest import link_path

pytestmark = pytest.mark.django_db


def page_language(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.headers["Content-Language"]


def test_a_guest_page_speaks_its_links_language_until_the_guest_picks_another(
    guest, make_link, study
):
    link, token = make_link(study, language="de")

    assert page_language(guest.get(link_path(token), HTTP_ACCEPT_LANGUAGE="fr")) == "de"

    # The guest picks Dutch on the page (a no-referrer page posts with Origin: null).
    guest.post(
        reverse("accounts:language"),
        {"language": "nl", "next": link_path(token)},
        HTTP_ORIGIN="null",
    )
    assert page_language(guest.get(link_path(token))) == "nl"
    link.refresh_from_db()
    assert link.language == "de"
    assert not User.objects.filter(language="nl").exists()
