"""Every `aria-describedby`, `aria-labelledby`, `aria-controls` and `<label for>` of the forms'
pages names an element of the page (issue 15): a screen reader reads a field's help text and its
errors through them, and a reference to an id the page lacks reads nothing. The pages are read
as they are served, blank and after a post with errors, when each field carries its own."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from tests.accounts.helpers import HttpsClient, sign_in
from tests.factories import make_study
from tests.guestlinks.conftest import link_path, make_link  # noqa: F401 - a fixture
from tests.sharing.conftest import share
from tests.sharing.test_invitation import invitation_token

pytestmark = pytest.mark.django_db

FRAGMENT = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
REFERRING_ATTRIBUTES = ("aria-describedby", "aria-labelledby", "aria-controls")


class _References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.references: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        for name in REFERRING_ATTRIBUTES:
            for target in (attributes.get(name) or "").split():
                self.references.append((tag, name, target))
        if tag == "label" and attributes.get("for"):
            self.references.append((tag, "for", attributes["for"]))

    handle_startendtag = handle_starttag


def dangling_references(html: str) -> list[str]:
    """`tag attribute="id"` for each reference naming an id the page does not have."""
    page = _References()
    page.feed(html)
    return [
        f'{tag} {name}="{target}"'
        for tag, name, target in page.references
        if target not in page.ids
    ]


def assert_references_hold(response, page: str) -> None:
    assert response.status_code in (200, 400, 403), (page, response.status_code)
    assert dangling_references(response.content.decode()) == [], page


@pytest.fixture
def study(org, location):
    return make_study(org, location=location)


@pytest.fixture
def clinician(alice):
    return sign_in(HttpsClient(), alice)


def test_the_detector_finds_a_reference_to_a_missing_id():
    """The checks below can fail: a reference to an id the page lacks is found."""
    assert dangling_references('<input aria-describedby="a_helptext b_error"><p id="a_helptext">')
    assert dangling_references('<label for="share-reason">Reason</label>')
    assert not dangling_references('<label for="x">X</label><input id="x">')


def test_the_share_dialog_names_only_ids_it_has(clinician, study):
    dialog = reverse("sharing:dialog")
    for headers in (FRAGMENT, {}):
        response = clinician.get(dialog, {"study": study.study_uid}, **headers)
        assert_references_hold(response, "Share dialog")

    refused = clinician.post(
        dialog,
        {
            "study": study.study_uid,
            "intent": "share",
            "recipient-0-kind": "email",
            "recipient-0-text": "not an address",
            "valid_until": "31/02/2020",
            "label": "x" * 500,
            "access": "nonsense",
        },
        **FRAGMENT,
    )
    assert refused.status_code == 400
    assert 'aria-invalid="true"' in refused.content.decode()
    assert_references_hold(refused, "Share dialog with errors")


def test_the_send_link_dialog_names_only_ids_it_has(clinician, study):
    dialog = reverse("guestlinks:dialog")
    for headers in (FRAGMENT, {}):
        response = clinician.get(dialog, {"study": study.study_uid}, **headers)
        assert_references_hold(response, "Send Link dialog")

    refused = clinician.post(
        dialog,
        {
            "study": study.study_uid,
            "email": "gp@@example",
            "mobile": "12",
            "max_uses": "two",
            "expires_in_days": "-3",
            "max_password_attempts": "none",
        },
        **FRAGMENT,
    )
    assert refused.status_code == 400
    assert 'aria-invalid="true"' in refused.content.decode()
    assert_references_hold(refused, "Send Link dialog with errors")


def test_the_account_pages_name_only_ids_they_have(alice):
    visitor = HttpsClient()
    login = reverse("accounts:login")
    assert_references_hold(visitor.get(login), "login")
    assert_references_hold(
        visitor.post(login, {"username": alice.username, "password": "wrong"}), "failed login"
    )

    clinician = sign_in(HttpsClient(), alice)
    password = reverse("accounts:password_change")
    assert_references_hold(clinician.get(password), "password change")
    assert_references_hold(
        clinician.post(password, {"old_password": "wrong", "new_password1": "a"}),
        "password change with errors",
    )
    assert_references_hold(clinician.get(reverse("accounts:two_factor")), "two-factor")


def test_the_clinicians_pages_name_only_ids_they_have(clinician, study):
    for page, path in (
        ("directory", reverse("studies:directory")),
        ("study", reverse("studies:study", args=[study.study_uid])),
        ("Shares", reverse("sharing:shares")),
        ("Guest links of the study", reverse("guestlinks:study_links", args=[study.study_uid])),
    ):
        assert_references_hold(clinician.get(path), page)


def test_the_guest_link_pages_name_only_ids_they_have(study, make_link):  # noqa: F811
    _link, token = make_link(study, password="Tulip-4711")
    guest = HttpsClient()
    assert_references_hold(guest.get(link_path(token)), "guest link")
    assert_references_hold(
        guest.post(link_path(token), {"password": "wrong"}), "guest link, wrong password"
    )


def test_the_invitation_and_share_code_pages_name_only_ids_they_have(
    alice, bob, study, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        share(alice, study, ("email", "gp@example.net"))
    invitation = reverse("sharing:invitation", args=[invitation_token("gp@example.net")])
    invited = HttpsClient()
    assert_references_hold(invited.get(invitation), "invitation")
    assert_references_hold(
        invited.post(invitation, {"action": "register", "password1": "a", "password2": "b"}),
        "invitation with errors",
    )

    bob.mobile = "+32470123456"
    bob.save(update_fields=["mobile"])
    guarded = share(alice, study, ("user", bob.pk), two_factor=True).recipients.get()
    recipient = sign_in(HttpsClient(), bob)
    assert_references_hold(
        recipient.get(reverse("sharing:two_factor", args=[guarded.pk])), "share's SMS code"
    )
