"""Issue 11, point 4: "Images only" is not available when sharing with a user (PACSonWEB), nor
with an email address (its owner registers as a user). The refusal names the recipients that make
it unavailable, and says it once: the access field's hint steps aside while its error shows."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.models import Membership, Organization
from sharing.models import Share
from tests.accounts.helpers import HttpsAPIClient, HttpsClient
from tests.conftest import make_user
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db

DIALOG = reverse("sharing:dialog")
FRAGMENT = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
GP = "gp@example.net"


def dialog_post(user, study, *rows):
    body = {
        "study": [study.study_uid],
        "access": "images",
        "reason": "Second opinion",
        "patient_agreed": "on",
        "intent": "share",
    }
    for n, (kind, value) in enumerate(rows):
        body[f"recipient-{n}-kind"] = kind
        field = "target" if kind in ("user", "group", "location") else "text"
        body[f"recipient-{n}-{field}"] = str(value)
    client = HttpsClient()
    client.force_login(user)
    return client.post(DIALOG, body, **FRAGMENT)


def access_errors(response) -> list[str]:
    html = response.content.decode()
    match = re.search(r'<ul class="errors" id="share-access_error">(.*?)</ul>', html, re.S)
    if not match:
        return []
    return [unescape(item) for item in re.findall(r"<li>(.*?)</li>", match.group(1))]


def test_an_email_recipient_is_named_once(alice, study):
    response = dialog_post(alice, study, ("email", GP))
    assert response.status_code == 400
    assert access_errors(response) == [
        f"“Images only” is not available for {GP}: sharing with a user always includes the "
        "report. Choose an access that includes the report, or remove them from the recipients."
    ]
    page = unescape(response.content.decode())
    assert page.count("“Images only” is not available") == 1
    assert "not available when sharing with a user" not in page  # the hint stepped aside
    assert not Share.objects.exists()


def test_only_the_users_and_addresses_are_named_not_the_group(alice, bob, group, study):
    response = dialog_post(alice, study, ("group", group.pk), ("user", bob.pk), ("email", GP))
    (error,) = access_errors(response)
    assert error.startswith(f"“Images only” is not available for Bob Tester, {GP}:")
    assert "Neuroradiology" not in error


def test_the_hint_is_shown_when_there_is_no_error(alice, study):
    client = HttpsClient()
    client.force_login(alice)
    html = unescape(client.get(DIALOG, {"study": study.study_uid}, **FRAGMENT).content.decode())
    assert html.count("“Images only” is not available when sharing with a user.") == 1


def test_the_service_and_the_api_name_the_recipient(alice, study):
    with pytest.raises(ValidationError) as refused:
        share(alice, study, ("email", GP), access="images")
    (message,) = refused.value.message_dict["access"]
    assert GP in message

    api = HttpsAPIClient()
    api.force_authenticate(alice)
    response = api.post(
        "/api/v1/shares/",
        {
            "studies": [study.study_uid],
            "recipients": [{"email": GP}],
            "access": "images",
            "reason": "Second opinion",
            "patient_agreed": True,
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["access"] == [message]


def test_a_user_the_sender_cannot_reach_is_not_named(alice, study):
    """An id typed into the API must not reveal whose it is."""
    hidden = Organization.objects.create(name="Closed Clinic", searchable=False)
    stranger = make_user("sam", first_name="Samuel", last_name="Secret")
    Membership.objects.create(user=stranger, organization=hidden, role=alice.memberships.get().role)
    with pytest.raises(ValidationError) as refused:
        share(alice, study, ("user", stranger.pk), access="images")
    (message,) = refused.value.message_dict["access"]
    assert message == "“Images only” is not available when sharing with a user."
    assert "Secret" not in message and "Samuel" not in message
