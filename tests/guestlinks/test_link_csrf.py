"""Link pages send Referrer-Policy: no-referrer, so browsers post their forms with
`Origin: null`. Those posts must work, and still need the CSRF token."""

import pytest
from django.urls import reverse

from guestlinks.models import GuestLink
from tests.accounts.helpers import HttpsClient
from tests.guestlinks.conftest import link_path

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(settings):
    from tests.accounts.helpers import plain_static_storage

    plain_static_storage(settings)
    return HttpsClient(enforce_csrf_checks=True)


def csrf_token(browser, path) -> str:
    browser.get(path)
    return browser.cookies["csrftoken"].value


def test_open_study_posted_from_a_no_referrer_page_is_accepted(browser, study, make_link):
    link, token = make_link(study, max_uses=2)
    secret = csrf_token(browser, link_path(token))

    response = browser.post(link_path(token), {"csrfmiddlewaretoken": secret}, HTTP_ORIGIN="null")

    assert response.status_code == 303
    assert GuestLink.objects.get(pk=link.pk).uses == 1


def test_a_null_origin_without_the_csrf_token_is_still_refused(browser, study, make_link):
    link, token = make_link(study, max_uses=2)
    browser.get(link_path(token))

    response = browser.post(link_path(token), {}, HTTP_ORIGIN="null")

    assert response.status_code == 403
    assert GuestLink.objects.get(pk=link.pk).uses == 0


def test_other_pages_still_refuse_a_null_origin(browser, alice):
    secret = csrf_token(browser, reverse("accounts:login"))

    response = browser.post(
        reverse("accounts:login"),
        {"csrfmiddlewaretoken": secret, "username": "alice", "password": "x"},
        HTTP_ORIGIN="null",
    )

    assert response.status_code == 403
