"""A recipient has one name wherever a share is shown: the API, the Shares page and the admin
all ask ``sharing.selectors.recipient_name``."""

from html import unescape

import pytest
from django.urls import reverse

from sharing.admin import recipient_label
from sharing.selectors import recipient_name
from tests.accounts.helpers import HttpsAPIClient, HttpsClient, plain_static_storage, sign_in
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db


def test_an_email_share_is_named_by_its_address_even_when_the_address_has_an_account(
    settings, alice, bob, group, study
):
    plain_static_storage(settings)
    made = share(alice, study, ("user", bob.pk), ("group", group.pk), ("email", bob.email))
    expected = [str(bob), str(group), bob.email]
    assert [recipient_name(r) for r in made.recipients.all()] == expected

    api = HttpsAPIClient()
    api.force_authenticate(alice)
    (listed,) = api.get("/api/v1/shares/", {"direction": "sent"}).json()
    assert [r["name"] for r in listed["recipients"]] == expected

    page = unescape(sign_in(HttpsClient(), alice).get(reverse("sharing:shares")).content.decode())
    assert all(name in page for name in expected)
    assert recipient_label(made.recipients.get(kind="email")).endswith(f" · {bob.email}")
