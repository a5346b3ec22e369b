"""The Send Link dialog, the Get Link result, the study page's Guest links and the trash can, as
alice's browser sees them (HTML fragments fetched by static/js/dialog.js)."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from django.urls import reverse

from audit.models import Action, AuditEvent
from guestlinks.models import GuestLink, LinkState, TargetKind
from guestlinks.passwords import check_link_password
from guestlinks.selectors import LinkTarget
from guestlinks.services.creation import LinkOptions, create_link
from notifications.models import Channel, Message
from studies.models import Folder
from studies.services.worklists import location_worklist
from tests.accounts.helpers import HttpsClient

pytestmark = pytest.mark.django_db

DIALOG = reverse("guestlinks:dialog")
FRAGMENT_HEADERS = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
ACK = "I understand that authorization cannot be removed once the secure link is sent."


def client_for(user) -> HttpsClient:
    client = HttpsClient()
    client.force_login(user)
    return client


def text_of(response) -> str:
    return unescape(response.content.decode())


def link_box(response) -> str:
    match = re.search(r'<input id="get-link-url"[^>]*value="([^"]+)"', response.content.decode())
    assert match, "no link box in the result"
    return unescape(match.group(1))


def mailto_of(response) -> str:
    match = re.search(r'href="(mailto:[^"]*)" data-mailto', response.content.decode())
    assert match, "no mailto link in the result"
    return unescape(match.group(1))


def post_dialog(client, study, **data):
    body = {"study": study.study_uid, **data}
    return client.post(DIALOG, body, **FRAGMENT_HEADERS)


# --- The form ------------------------------------------------------------------------------------


def test_the_dialog_offers_every_option_of_the_manual(alice, study):
    response = client_for(alice).get(DIALOG, {"study": study.study_uid}, **FRAGMENT_HEADERS)
    assert response.status_code == 200
    html = text_of(response)
    assert "<html" not in html  # a fragment for the remote dialog
    assert ACK in html
    for label in (
        "Send via email to",
        "Mobile phone (SMS with the link)",
        "Limit number of uses to",
        "Link will expire in",
        "User must log in to see images",
        "Require user to enter this password",
        "for security reasons the portal never sends it",
        "Password is the patient's date of birth",
        "Max password attempts",
        "Require confirmation via email",
        "Require a code sent by SMS",
        "Include priors",
        "Message",
        "Get Link",
    ):
        assert label in html, label
    assert f'name="study" value="{study.study_uid}"' in html
    assert "Empty: 7 days. At most 90 days." in html
    # The sender checks whose study it is (the dialog, not the address, names the patient).
    assert "Jane Doe" in html and "CT Chest" in html
    assert "Doe" not in response.request["QUERY_STRING"]


def test_options_the_policy_disables_are_not_offered(alice, study, org):
    org.allow_link_password = False
    org.allow_link_email = False
    org.allow_link_expiry = False
    org.save()
    html = text_of(client_for(alice).get(DIALOG, {"study": study.study_uid}, **FRAGMENT_HEADERS))
    assert "Require user to enter this password" not in html
    assert "Max password attempts" not in html
    assert "Send via email to" not in html
    assert "Require confirmation via email" not in html
    assert "Link will expire in" not in html
    assert "The link expires after 7 days." in html
    assert "Mobile phone (SMS with the link)" in html


def test_a_worklist_dialog_has_no_date_of_birth_option(alice, study, location):
    worklist = location_worklist(location)
    folder = Folder.objects.create(worklist=worklist, name="Tumour board")
    client = client_for(alice)
    for params, words in (
        ({"worklist": worklist.pk}, "Worklist “Radiology”"),
        ({"folder": folder.pk}, "Folder “Tumour board”"),
    ):
        response = client.get(DIALOG, params, **FRAGMENT_HEADERS)
        assert response.status_code == 200
        html = text_of(response)
        assert words in html
        assert "Password is the patient's date of birth" not in html


def test_targets_the_user_cannot_see_answer_404(alice, bob, carol, study):
    for user in (bob, carol):
        response = client_for(user).get(DIALOG, {"study": study.study_uid}, **FRAGMENT_HEADERS)
        assert response.status_code == 404
    client = client_for(alice)
    assert client.get(DIALOG, {"study": "1.2.3.999"}).status_code == 404
    assert client.get(DIALOG, {"worklist": "abc"}).status_code == 404
    assert client.get(DIALOG).status_code == 404


def test_a_role_without_create_links_is_told_why(viewer_only, study):
    response = client_for(viewer_only).get(DIALOG, {"study": study.study_uid}, **FRAGMENT_HEADERS)
    assert response.status_code == 403
    assert "does not include “Study links: create guest links”" in text_of(response)
    response = post_dialog(client_for(viewer_only), study, acknowledged="on")
    assert response.status_code == 403
    assert not GuestLink.objects.exists()


def test_logged_out_visitors_go_to_the_login_page(study):
    response = HttpsClient().get(DIALOG, {"study": study.study_uid})
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))


# --- Posting -------------------------------------------------------------------------------------


def test_the_acknowledgement_is_enforced_by_the_server(alice, study):
    response = post_dialog(client_for(alice), study, email="gp@example.org", max_uses="2")
    assert response.status_code == 400
    html = text_of(response)
    assert "Tick the box to confirm" in html
    assert 'value="gp@example.org"' in html  # what was typed stays
    assert not GuestLink.objects.exists()
    assert not Message.objects.exists()


def test_an_option_the_policy_disables_is_refused_even_if_posted(alice, study, org):
    org.allow_link_password = False
    org.save()
    response = post_dialog(client_for(alice), study, acknowledged="on", password="Tulip-4711")
    assert response.status_code == 400
    assert "policy does not allow passwords" in text_of(response)
    assert not GuestLink.objects.exists()


def test_invalid_email_and_phone_are_shown_on_their_fields(alice, study):
    response = post_dialog(
        client_for(alice), study, acknowledged="on", email="gp@@example", mobile="12"
    )
    assert response.status_code == 400
    html = text_of(response)
    assert 'id="send-link-email_error"' in html
    assert "“gp@@example” is not a valid email address." in html
    assert 'id="send-link-mobile_error"' in html
    assert not GuestLink.objects.exists()


def test_a_number_that_is_not_a_number_is_a_field_error(alice, study):
    response = post_dialog(client_for(alice), study, acknowledged="on", max_uses="two")
    assert response.status_code == 400
    assert 'id="send-link-max_uses_error"' in text_of(response)


def test_get_link_with_email_password_and_two_uses(
    alice, study, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        response = post_dialog(
            client_for(alice),
            study,
            acknowledged="on",
            email="gp@example.org",
            password="Tulip-4711",
            max_uses="2",
            expires_in_days="2",
            expires_in_hours="6",
            max_password_attempts="3",
            login_required="on",
            include_priors="on",
            message="Please look at the left lung.",
            language="nl",
        )
    assert response.status_code == 200
    html = text_of(response)
    link = GuestLink.objects.get()
    url = link_box(response)
    assert url.startswith("http://127.0.0.1:8000/l/")
    assert "The secure link is ready." in html
    assert "An email with the link is on its way to gp@example.org." in html
    assert 'data-copy-from="#get-link-url"' in html
    assert "Copy to clipboard" in html
    assert "Tulip-4711" not in html
    assert "give it to the recipient yourself" in html

    # Every option reached the link.
    assert link.max_uses == 2 and link.max_password_attempts == 3
    assert link.login_required and link.include_priors
    assert check_link_password("Tulip-4711", link.password_hash)
    assert link.language == "nl"
    assert round((link.expires_at - link.created_at).total_seconds() / 3600) == 54

    # The mailto: is addressed, its subject carries no patient data, its body the link.
    mailto = mailto_of(response)
    parts = urlsplit(mailto)
    assert parts.scheme == "mailto" and unquote(parts.path) == "gp@example.org"
    query = parse_qs(parts.query)
    assert query["subject"] == ["Beveiligde link naar een medisch onderzoek"]  # the link's language
    assert url in query["body"][0]
    assert "Doe" not in mailto and "Jane" not in mailto and "CT Chest" not in mailto

    # The QR code is an inline SVG of that mailto:, with no style attribute (CSP).
    svg = re.search(r"<svg [^>]*class=\"qr-code\".*?</svg>", html, re.S).group(0)
    assert "style=" not in svg and "<script" not in svg
    assert "Show QR code" in html and "disabled" not in html.split("Show QR code")[0][-200:]

    message = Message.objects.get()
    assert message.channel == Channel.EMAIL and url in message.body_text
    assert AuditEvent.objects.filter(action=Action.LINK_CREATED).count() == 1


def test_without_an_email_the_qr_code_is_disabled_with_a_hint(alice, study):
    response = post_dialog(client_for(alice), study, acknowledged="on")
    assert response.status_code == 200
    html = text_of(response)
    assert "qr-code" not in html
    assert "Enter an email address to show a QR code." in html
    assert re.search(r"<button type=\"button\" class=\"button\" disabled[^>]*>", html)
    mailto = mailto_of(response)
    assert mailto.startswith("mailto:?subject=")
    assert link_box(response) in unquote(mailto)
    assert not Message.objects.exists()


def test_the_date_of_birth_password_through_the_dialog(alice, study):
    response = post_dialog(client_for(alice), study, acknowledged="on", password_is_birth_date="on")
    assert response.status_code == 200
    assert "The password is the patient's date of birth (YYYYMMDD)" in text_of(response)
    assert check_link_password("19700131", GuestLink.objects.get().password_hash)


def test_expiry_beyond_the_policy_is_refused_in_the_dialog(alice, study):
    response = post_dialog(client_for(alice), study, acknowledged="on", expires_in_days="120")
    assert response.status_code == 400
    assert "at most 90 days" in text_of(response)


def test_confirmation_via_email_through_the_dialog(alice, study):
    response = post_dialog(
        client_for(alice),
        study,
        acknowledged="on",
        email="gp@example.org",
        require_email_confirmation="on",
    )
    assert response.status_code == 200
    assert "A confirmation email is on its way to gp@example.org" in text_of(response)
    assert Message.objects.get().template == "email_confirmation"


def test_sms_and_code_through_the_dialog(alice, study):
    response = post_dialog(
        client_for(alice), study, acknowledged="on", mobile="0470 12 34 56", sms_code="on"
    )
    assert response.status_code == 200
    assert "An SMS with the link is on its way to +32470123456." in text_of(response)
    link = GuestLink.objects.get()
    assert link.sms_code_required and link.mobile == "+32470123456"


def test_a_worklist_link_through_the_dialog(alice, study, location):
    worklist = location_worklist(location)
    response = client_for(alice).post(
        DIALOG, {"worklist": worklist.pk, "acknowledged": "on"}, **FRAGMENT_HEADERS
    )
    assert response.status_code == 200
    assert GuestLink.objects.get().target_kind == TargetKind.WORKLIST


# --- The Send Link menu item ---------------------------------------------------------------------


def test_the_directory_menu_offers_send_link_to_those_who_may(alice, no_links, study):
    html = client_for(alice).get(reverse("studies:directory")).content.decode()
    assert '"key": "send_link"' in html and DIALOG in html
    html = client_for(no_links).get(reverse("studies:directory")).content.decode()
    assert '"key": "send_link"' not in html


# --- The study page ------------------------------------------------------------------------------


def make(user, study, **options):
    return create_link(
        sender=user,
        target=LinkTarget(study=study),
        options=LinkOptions(**options),
        acknowledged=True,
    )


def study_page(user, study):
    return client_for(user).get(reverse("studies:study", args=[study.study_uid]))


def test_the_study_page_lists_the_links_for_alice(alice, study):
    first = make(alice, study, max_uses=2, password="Tulip-4711", email="gp@example.org")
    response = study_page(alice, study)
    html = text_of(response)
    assert "data-guest-links-open" in html
    assert "New Guest Link" in html
    assert first.url in html
    assert "Emailed to gp@example.org" in html and "Password" in html
    assert "2 of 2" in html
    assert "Delete guest link" in html
    assert 'id="remote-dialog"' in html
    assert "js/guestlinks-study.js" in html
    assert "Tulip-4711" not in html


def test_view_only_members_see_the_list_without_trash_can_or_new_link(alice, viewer_only, study):
    created = make(alice, study)
    html = text_of(study_page(viewer_only, study))
    assert created.url in html
    assert "Delete guest link" not in html
    assert "data-new-guest-link" not in html


def test_members_without_link_permissions_see_no_guest_links(alice, no_links, study):
    created = make(alice, study)
    html = text_of(study_page(no_links, study))
    assert "data-guest-links-open" not in html
    assert created.url not in html


def test_the_list_fragment(alice, bob, no_links, study):
    created = make(alice, study)
    url = reverse("guestlinks:study_links", args=[study.study_uid])
    response = client_for(alice).get(url, **FRAGMENT_HEADERS)
    assert response.status_code == 200 and created.url in text_of(response)
    assert client_for(no_links).get(url).status_code == 403
    assert client_for(bob).get(url).status_code == 404


# --- The trash can -------------------------------------------------------------------------------


def test_the_trash_can_deletes_at_once(alice, study, guest):
    created = make(alice, study, max_uses=3)
    url = reverse("guestlinks:delete", args=[created.link.pk])
    client = client_for(alice)
    assert client.get(url).status_code == 405

    response = client.post(url, **FRAGMENT_HEADERS)
    assert response.status_code == 200
    html = text_of(response)
    assert "Deleted" in html and created.url not in html
    assert GuestLink.objects.get().state == LinkState.DELETED
    assert AuditEvent.objects.filter(action=Action.LINK_DELETED).count() == 1
    refused = guest.get(reverse("guest:link", args=[created.token]))
    assert refused.status_code == 404
    assert "This link is not valid" in text_of(refused)


def test_the_trash_can_without_scripts_returns_to_the_study_page(alice, study):
    created = make(alice, study)
    response = client_for(alice).post(reverse("guestlinks:delete", args=[created.link.pk]))
    assert response.status_code == 302
    assert response.url == reverse("studies:study", args=[study.study_uid]) + "#guest-links"


def test_the_trash_can_needs_the_permission(alice, bob, viewer_only, study):
    created = make(alice, study)
    url = reverse("guestlinks:delete", args=[created.link.pk])
    assert client_for(viewer_only).post(url).status_code == 403
    assert client_for(bob).post(url).status_code == 404
    assert client_for(alice).post(reverse("guestlinks:delete", args=[99999])).status_code == 404
    assert GuestLink.objects.get().state == LinkState.ACTIVE
