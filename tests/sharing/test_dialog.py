"""The Share dialog as alice's browser sees it: every parameter through the view, the service's
rules coming back onto their fields, the confirmation, Share again, and the buttons that work
without scripts (add a recipient, search, choose, favorites, remove)."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from accounts.models import Organization
from accounts.permissions import Perm
from notifications.models import Channel, Message
from sharing.models import Favorite, SenderDefaults, Share
from studies.access import user_study_access
from studies.models import Entry, EntryOrigin
from studies.services.worklists import group_worklist, personal_worklist
from tests.accounts.helpers import HttpsClient
from tests.factories import make_study, share_entry
from tests.sharing.conftest import member

pytestmark = pytest.mark.django_db

DIALOG = reverse("sharing:dialog")
FRAGMENT = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
SHARE_TEMPLATE = "share_notification"


def client_for(user) -> HttpsClient:
    client = HttpsClient()
    client.force_login(user)
    return client


def text_of(response) -> str:
    return unescape(response.content.decode())


def field_errors(response, name: str) -> list[str]:
    """The messages listed beside a form field (``share-<name>_error``, as templates/_field.html
    names them)."""
    html = response.content.decode()
    match = re.search(rf'<ul class="errors" id="share-{re.escape(name)}_error">(.*?)</ul>', html)
    if not match:
        return []
    return [unescape(item) for item in re.findall(r"<li>(.*?)</li>", match.group(1))]


def share_body(study, **overrides) -> dict:
    """What the dialog posts when alice shares ``study`` with one chosen recipient."""
    to = overrides.pop("to", None)
    studies = overrides.pop("studies", [study])
    body = {
        "study": [s.study_uid for s in studies],
        "access": "report_read",
        "reason": "Second opinion",
        "patient_agreed": "on",
        "intent": "share",
    }
    if to is not None:
        kind, value = to
        body["recipient-0-kind"] = kind
        if kind in ("user", "group", "location"):
            body["recipient-0-target"] = str(value)
        else:
            body["recipient-0-text"] = value
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def post(client, body, **headers):
    return client.post(DIALOG, body, **(headers or FRAGMENT))


def share_messages():
    return Message.objects.filter(template=SHARE_TEMPLATE, channel=Channel.EMAIL)


# --- The form ----------------------------------------------------------------------------------


def test_the_dialog_offers_every_option_of_the_manual(alice, study):
    response = client_for(alice).get(DIALOG, {"study": study.study_uid}, **FRAGMENT)
    assert response.status_code == 200
    html = text_of(response)
    assert "<html" not in html  # a fragment for the remote dialog
    for words in (
        "Favorites",
        "Add extra recipient",
        "Detailed search",
        "Images and read access to the report",
        "Images and write access to the report",
        "Images only",
        "Reason for sharing",
        "Never shown to the recipient; recorded in the audit trail.",
        "Language of the message",
        "Automatic (the recipients' language)",
        "Valid until",
        "Unlimited access",
        "Patient agreed",
        "Label",
        "Urgent",
        "Anonymize",
        "Allow further sharing",
        "Message",
        "SMS two-factor",
        "Send mail",
    ):
        assert words in html, words
    assert f'name="study" value="{study.study_uid}"' in html
    assert 'type="date"' in html
    # The sender checks whose study it is: the dialog's body names the patient, not the URL.
    assert "Jane Doe" in html and "CT Chest" in html
    assert "Doe" not in response.request["QUERY_STRING"]
    # Every recipient kind alice's role and the policy allow.
    for kind in ("user", "group", "location", "share_code", "email"):
        assert f'<option value="{kind}"' in html


def test_the_valid_until_default_is_the_organizations_and_never_past_its_maximum(alice, study, org):
    today = timezone.localdate()
    html = text_of(client_for(alice).get(DIALOG, {"study": study.study_uid}, **FRAGMENT))
    assert f'value="{today + timedelta(days=30):%d/%m/%Y}"' in html  # one month

    org.default_share_validity_days = 10
    org.max_share_validity_days = 60
    org.save()
    html = text_of(client_for(alice).get(DIALOG, {"study": study.study_uid}, **FRAGMENT))
    assert f'value="{today + timedelta(days=10):%d/%m/%Y}"' in html
    assert f'max="{(today + timedelta(days=60)).isoformat()}"' in html
    assert f"At most until {date_format(today + timedelta(days=60), 'DATE_FORMAT')}." in html

    org.default_share_validity_days = 90
    org.save()
    html = text_of(client_for(alice).get(DIALOG, {"study": study.study_uid}, **FRAGMENT))
    assert f'value="{today + timedelta(days=60):%d/%m/%Y}"' in html


def test_options_the_policy_disables_are_not_offered_and_still_refused(alice, bob, study, org):
    org.allow_share_anonymize = False
    org.allow_share_two_factor = False
    org.allow_further_sharing = False
    org.allow_unlimited_validity = False
    org.allow_share_email = False
    org.save()
    client = client_for(alice)
    html = text_of(client.get(DIALOG, {"study": study.study_uid}, **FRAGMENT))
    for words in ("Anonymize", "SMS two-factor", "Allow further sharing", "Unlimited access"):
        assert words not in html, words
    assert '<option value="email"' not in html
    assert "Send mail" in html and "Urgent" in html

    for name in ("anonymize", "two_factor", "allow_further_sharing", "unlimited"):
        response = post(client, share_body(study, to=("user", bob.pk), **{name: "on"}))
        assert response.status_code == 400, name
        assert "policy does not allow" in text_of(response), name
    response = post(client, share_body(study, to=("email", "gp@example.net")))
    assert response.status_code == 400
    assert "does not allow sharing with: Email address" in text_of(response)
    assert not Share.objects.exists()


def test_studies_the_user_may_not_see_answer_404_like_missing_ones(alice, bob, carol, study, org):
    hidden = make_study(org, patient_id="P-0099", description="MR Knee")  # no location
    for user, params in (
        (bob, {"study": study.study_uid}),
        (carol, {"study": study.study_uid}),
        (alice, {"study": "1.2.3.4.5.does.not.exist"}),
        (alice, {"study": [study.study_uid, hidden.study_uid]}),
        (alice, {"study": []}),
    ):
        client = client_for(user)
        assert client.get(DIALOG, params, **FRAGMENT).status_code == 404
        body = share_body(study, to=("user", carol.pk)) | params
        assert post(client, body).status_code == 404
    assert not Share.objects.exists()


def test_a_user_without_the_share_permission_is_refused(org, location, study, bob):
    viewer = member("victor", org, location, [Perm.VIEW_STUDIES])
    assert user_study_access(viewer, study) is not None
    client = client_for(viewer)
    response = client.get(DIALOG, {"study": study.study_uid}, **FRAGMENT)
    assert response.status_code == 403
    assert "You may not share studies." in text_of(response)
    assert "<form" not in text_of(response)
    response = post(client, share_body(study, to=("user", bob.pk)))
    assert response.status_code == 403
    assert not Share.objects.exists()


def test_studies_of_two_organizations_are_shared_one_organization_at_a_time(
    alice, study, other_org
):
    foreign = make_study(other_org, patient_id="P-0200")
    share_entry(alice, foreign, level="report_read", can_share=True)
    response = client_for(alice).get(
        DIALOG, {"study": [study.study_uid, foreign.study_uid]}, **FRAGMENT
    )
    assert response.status_code == 400
    assert "Share studies of one organization at a time." in text_of(response)


def test_without_scripts_the_dialog_is_a_page(alice, study):
    response = client_for(alice).get(DIALOG, {"study": study.study_uid})
    html = text_of(response)
    assert response.status_code == 200
    assert "<html" in html and "js/share.js" in html
    assert "<title>Share ·" in html and "Doe" not in html.split("</title>")[0]


def test_without_scripts_sharing_lands_on_the_confirmations_own_page(alice, bob, carol, study):
    client = client_for(alice)
    response = client.post(DIALOG, share_body(study, to=("user", bob.pk)))
    share = Share.objects.get()
    done = reverse("sharing:done", args=[share.pk])
    assert response.status_code == 302 and response.url == done
    page = client.get(done)
    html = text_of(page)
    assert page.status_code == 200 and "<html" in html and "Bob Tester" in html
    # Reloading it shares nothing again; nobody but the sender sees it.
    client.get(done)
    assert Share.objects.count() == 1
    assert client_for(bob).get(done).status_code == 404
    assert client_for(carol).get(done).status_code == 404


# --- Every parameter through the view ----------------------------------------------------------


def test_share_with_a_user_answers_the_confirmation(alice, bob, study):
    response = post(client_for(alice), share_body(study, to=("user", bob.pk)))
    assert response.status_code == 200, field_errors(response, "reason")
    share = Share.objects.get()
    assert share.sender == alice and share.reason == "Second opinion"
    assert share.level == "report_read"
    entry = Entry.objects.get(worklist=personal_worklist(bob), origin=EntryOrigin.SHARE)
    assert entry.study == study
    assert user_study_access(bob, study) is not None


@pytest.mark.parametrize("typed", ["25/12/2030", "2030-12-25", "25-12-2030", "25.12.2030"])
def test_valid_until_typed_or_picked(alice, bob, study, org, typed):
    org.max_share_validity_days = None
    org.save()
    response = post(client_for(alice), share_body(study, to=("user", bob.pk), valid_until=typed))
    assert response.status_code == 200
    assert Share.objects.get().valid_until.isoformat() == "2030-12-25"


def test_valid_until_left_empty_takes_the_organizations_default(alice, bob, study, org):
    org.default_share_validity_days = 10
    org.save()
    post(client_for(alice), share_body(study, to=("user", bob.pk), valid_until=""))
    assert Share.objects.get().valid_until == timezone.localdate() + timedelta(days=10)


def test_valid_until_beyond_the_maximum_is_an_error_on_the_field(alice, bob, study, org):
    org.max_share_validity_days = 60
    org.save()
    too_late = timezone.localdate() + timedelta(days=61)
    response = post(
        client_for(alice),
        share_body(study, to=("user", bob.pk), valid_until=f"{too_late:%d/%m/%Y}"),
    )
    assert response.status_code == 400
    assert field_errors(response, "valid_until") == [
        "Your organization allows shares valid for at most 60 days."
    ]
    # The typed date comes back in the picker's form.
    assert f'value="{too_late:%d/%m/%Y}"' in text_of(response)
    assert not Share.objects.exists()


def test_an_unreadable_date_is_an_error_on_the_field(alice, bob, study):
    response = post(client_for(alice), share_body(study, to=("user", bob.pk), valid_until="31/02"))
    assert response.status_code == 400
    assert field_errors(response, "valid_until") == ["Enter a date as dd/mm/yyyy, or pick one."]


def test_unlimited_access_only_where_the_organization_allows_it(alice, bob, study, org):
    client = client_for(alice)
    response = post(client, share_body(study, to=("user", bob.pk), unlimited="on"))
    assert response.status_code == 200
    assert Share.objects.get().valid_until is None
    assert Entry.objects.get(worklist=personal_worklist(bob)).valid_until is None

    org.allow_unlimited_validity = False
    org.save()
    response = post(client, share_body(study, to=("user", bob.pk), unlimited="on"))
    assert response.status_code == 400
    assert "Your organization's policy does not allow unlimited access." in text_of(response)
    assert Share.objects.count() == 1


def test_reason_and_patient_agreement_are_required(alice, bob, study):
    response = post(
        client_for(alice),
        share_body(study, to=("user", bob.pk), reason="  ", patient_agreed=None),
    )
    assert response.status_code == 400
    assert field_errors(response, "reason") == ["Register a reason for sharing: it is mandatory."]
    assert field_errors(response, "patient_agreed") == [
        "Without the patient's consent the study may not be shared."
    ]
    assert not Share.objects.exists()


def test_images_only_is_refused_for_users_and_allowed_for_groups(alice, bob, study, group):
    client = client_for(alice)
    response = post(client, share_body(study, to=("user", bob.pk), access="images"))
    assert response.status_code == 400
    assert field_errors(response, "access") == [
        "“Images only” is not available for Bob Tester: sharing with a user always includes "
        "the report. Choose an access that includes the report, or remove them from the "
        "recipients."
    ]
    response = post(client, share_body(study, to=("group", group.pk), access="images"))
    assert response.status_code == 200
    assert Entry.objects.get(worklist=group_worklist(group)).level == "images"


def test_write_access_reaches_the_entry(alice, bob, study):
    post(client_for(alice), share_body(study, to=("user", bob.pk), access="report_write"))
    assert user_study_access(bob, study).can_write_report


def test_anonymize_label_and_further_sharing_reach_the_entry(alice, bob, study):
    response = post(
        client_for(alice),
        share_body(
            study,
            to=("user", bob.pk),
            anonymize="on",
            label="Tumour board",
            allow_further_sharing="on",
        ),
    )
    assert response.status_code == 200
    entry = Entry.objects.get(worklist=personal_worklist(bob))
    assert entry.anonymized and entry.label == "Tumour board" and entry.can_share
    access = user_study_access(bob, study)
    assert access.anonymized and not access.can_read_report
    assert "Anonymized" in text_of(response) and "Further sharing allowed" in text_of(response)


def test_urgent_message_and_send_mail_make_the_mail(alice, bob, study):
    response = post(
        client_for(alice),
        share_body(
            study,
            to=("user", bob.pk),
            urgent="on",
            send_mail="on",
            message="Look at the left lobe.",
        ),
    )
    assert response.status_code == 200
    mail = share_messages().get()
    assert mail.recipient == bob.email
    assert mail.subject.startswith("Urgent:")
    assert "Look at the left lobe." in mail.body_text
    assert "Jane" not in mail.subject  # initials only
    assert Entry.objects.get(worklist=personal_worklist(bob)).message == "Look at the left lobe."


def test_without_send_mail_no_mail_is_queued(alice, bob, study):
    post(client_for(alice), share_body(study, to=("user", bob.pk), message="Hello"))
    assert Share.objects.get().send_mail is False
    assert not share_messages().exists()


def test_not_urgent_mail_has_a_plain_subject(alice, bob, study):
    post(client_for(alice), share_body(study, to=("user", bob.pk), send_mail="on"))
    assert not share_messages().get().subject.startswith("Urgent")


def test_the_language_follows_the_recipients_unless_the_sender_chooses(alice, bob, study):
    bob.language = "fr"
    bob.save(update_fields=["language"])
    client = client_for(alice)
    post(client, share_body(study, to=("user", bob.pk), send_mail="on", language=""))
    assert Share.objects.get().language == "fr"
    assert share_messages().get().language == "fr"

    post(client, share_body(study, to=("user", bob.pk), send_mail="on", language="de"))
    assert Share.objects.order_by("-id").first().language == "de"
    assert share_messages().order_by("-id").first().language == "de"


def test_an_unknown_language_is_an_error_on_the_field(alice, bob, study):
    response = post(client_for(alice), share_body(study, to=("user", bob.pk), language="xx"))
    assert response.status_code == 400
    assert field_errors(response, "language")


def test_share_code_and_email_recipients(alice, bob, carol, study):
    worklist = personal_worklist(carol)
    body = share_body(study, to=("share_code", worklist.share_code.lower()))
    body.update({"recipient-1-kind": "email", "recipient-1-text": "gp@example.net"})
    response = post(client_for(alice), body)
    assert response.status_code == 200, text_of(response)
    assert Entry.objects.filter(worklist=worklist, study=study).exists()
    html = text_of(response)
    assert "gp@example.net" in html and "invited" in html
    assert "an invitation to register is on its way" in html


# --- Remembered choices ------------------------------------------------------------------------


def test_two_factor_and_send_mail_are_remembered_for_the_next_dialog(alice, bob, group, study):
    client = client_for(alice)
    html = text_of(client.get(DIALOG, {"study": study.study_uid}, **FRAGMENT))
    assert re.search(r'name="send_mail"[^>]*checked', html)  # first time: mail on
    assert not re.search(r'name="two_factor"[^>]*checked', html)

    bob.mobile = "+32470123456"
    bob.save(update_fields=["mobile"])
    post(client, share_body(study, to=("user", bob.pk), two_factor="on"))
    defaults = SenderDefaults.objects.get(user=alice)
    assert defaults.two_factor is True and defaults.send_mail is False
    html = text_of(client.get(DIALOG, {"study": study.study_uid}, **FRAGMENT))
    assert re.search(r'name="two_factor"[^>]*checked', html)
    assert not re.search(r'name="send_mail"[^>]*checked', html)

    # Only a share with a user sets them (PACSonWEB's tip).
    post(client, share_body(study, to=("group", group.pk), send_mail="on"))
    defaults.refresh_from_db()
    assert defaults.two_factor is True and defaults.send_mail is False


def test_a_refused_share_remembers_nothing(alice, bob, study):
    post(client_for(alice), share_body(study, to=("user", bob.pk), reason="", two_factor="on"))
    assert not SenderDefaults.objects.exists()


# --- The confirmation --------------------------------------------------------------------------


def test_the_confirmation_says_what_with_whom_until_when(alice, bob, group, study, org, location):
    second = make_study(
        org, location=location, patient_id="P-0001", description="CT Abdomen", accession="A2"
    )
    body = share_body(
        study,
        studies=[study, second],
        to=("user", bob.pk),
        valid_until="31/12/2030",
        label="Tumour board",
        urgent="on",
        message="Compare both.",
    )
    body.update({"recipient-1-kind": "group", "recipient-1-target": str(group.pk)})
    org.max_share_validity_days = None
    org.save()
    response = post(client_for(alice), body)
    assert response.status_code == 200
    html = text_of(response)
    assert "The 2 studies are shared." in html
    for words in (
        "CT Chest",
        "CT Abdomen",
        "Bob Tester",
        "Neuroradiology (St. Elsewhere Hospital)",
        "31 Dec 2030",
        "Images and read access to the report",
        "Tumour board",
        "Urgent",
        "Compare both.",
        "Copy this information",
        "Share again",
        "Close",
    ):
        assert words in html, words
    text = re.search(r'<textarea id="share-done-text"[^>]*>(.*?)</textarea>', html, re.S).group(1)
    assert "- CT Chest, 17 May 2024" in text
    assert "- Bob Tester (User)" in text
    assert "Valid until: 31 Dec 2030" in text
    assert "Doe" not in text  # it is pasted into emails
    assert 'data-copy-from="#share-done-text"' in html
    # Share again: the same studies, a fresh form.
    again = re.search(
        r'<form method="get" action="([^"]+)" class="share-again">(.*?)</form>', html, re.S
    )
    assert again.group(1) == DIALOG
    assert re.findall(r'name="study" value="([^"]+)"', again.group(2)) == [
        study.study_uid,
        second.study_uid,
    ]


def test_share_again_opens_the_form_for_the_same_studies_without_recipients(alice, bob, study):
    client = client_for(alice)
    post(client, share_body(study, to=("user", bob.pk)))
    response = client.get(DIALOG, {"study": study.study_uid}, **FRAGMENT)
    html = text_of(response)
    assert response.status_code == 200
    assert 'name="recipient-0-target" value=""' in html
    assert "Bob Tester" not in html


# --- Without scripts: the dialog's own buttons -------------------------------------------------


def test_add_extra_recipient_re_renders_with_one_more_row(alice, bob, study):
    body = share_body(study, to=("user", bob.pk), intent="add_recipient", reason="Kept")
    response = post(client_for(alice), body)
    assert response.status_code == 200
    html = text_of(response)
    assert 'name="recipient-0-kind"' in html and 'name="recipient-1-kind"' in html
    assert "Bob Tester" in html  # the chosen row stays
    assert re.search(r'name="reason"[^>]*>\s*Kept</textarea>', html)  # and what was typed
    assert 'class="errors"' not in html  # no errors for a form still being filled
    assert not Share.objects.exists()


def test_remove_drops_that_row(alice, bob, group, study):
    body = share_body(study, to=("user", bob.pk), remove_row="0")
    body.update({"recipient-1-kind": "group", "recipient-1-target": str(group.pk)})
    html = text_of(post(client_for(alice), body))
    assert 'name="recipient-0-kind"' not in html
    assert f'name="recipient-1-target" value="{group.pk}"' in html


def test_search_lists_results_and_picking_one_fills_the_row(alice, bob, study):
    client = client_for(alice)
    body = share_body(study, intent="search")
    body.update({"recipient-0-kind": "user", "recipient-0-text": "RIZIV-1002"})
    html = text_of(post(client, body))
    assert f'name="pick" value="0:user:{bob.pk}"' in html
    assert "Bob Tester" in html and not Share.objects.exists()

    html = text_of(post(client, body | {"pick": f"0:user:{bob.pk}", "intent": "share"}))
    assert f'name="recipient-0-target" value="{bob.pk}"' in html
    assert not Share.objects.exists()  # picking shares nothing yet


def test_words_without_a_chosen_recipient_are_not_guessed(alice, bob, study):
    body = share_body(study)
    body.update({"recipient-0-kind": "user", "recipient-0-text": "Bob"})
    response = post(client_for(alice), body)
    assert response.status_code == 400
    html = text_of(response)
    assert "Choose one of the results, or remove this recipient." in html
    assert f'name="pick" value="0:user:{bob.pk}"' in html
    assert not Share.objects.exists()


def test_no_recipient_is_an_error_beside_the_recipients(alice, study):
    response = post(client_for(alice), share_body(study))
    assert response.status_code == 400
    assert field_errors(response, "recipients") == ["Choose at least one recipient."]


def test_detailed_search_by_kind_and_criteria(alice, bob, group, study):
    body = share_body(study, intent="detailed_search")
    body.update({"find-kind": "group", "find-name": "neuro"})
    html = text_of(post(client_for(alice), body))
    assert f'name="pick" value="new:group:{group.pk}"' in html
    body.update({"find-kind": "user", "find-name": "", "find-physician_number": "1002"})
    html = text_of(post(client_for(alice), body))
    assert f'name="pick" value="new:user:{bob.pk}"' in html


def test_favorites_button_lists_them_and_picking_adds_a_recipient(alice, bob, group, study):
    Favorite.objects.create(owner=alice, kind="group", group=group)
    client = client_for(alice)
    response = post(client, share_body(study, intent="favorites"))
    html = text_of(response)
    assert 'id="share-favorites" data-share-favorites>' in html  # shown
    assert f'value="new:group:{group.pk}"' in html

    body = share_body(study, to=("user", bob.pk), pick=f"new:group:{group.pk}")
    html = text_of(post(client, body))
    assert f'name="recipient-1-target" value="{group.pk}"' in html
    assert "In your favorites" in html


# --- Stars -------------------------------------------------------------------------------------


def test_a_starred_recipient_becomes_a_favorite_only_once_shared(alice, bob, study):
    client = client_for(alice)
    body = share_body(study, to=("user", bob.pk), **{"recipient-0-star": "on"})
    response = post(client, body | {"intent": "add_recipient"})
    assert response.status_code == 200
    assert not Favorite.objects.exists()  # still editing
    response = post(client, body | {"reason": ""})
    assert response.status_code == 400
    assert not Favorite.objects.exists()  # refused: nothing shared, nothing starred
    response = post(client, body)
    assert response.status_code == 200
    favorite = Favorite.objects.get()
    assert (favorite.owner, favorite.kind, favorite.user) == (alice, "user", bob)


def test_an_unreachable_recipient_is_refused(alice, study):
    closed = Organization.objects.create(name="Closed Clinic", searchable=False)
    stranger = member("stan", closed, closed.locations.create(name="Desk"), [Perm.VIEW_STUDIES])
    response = post(client_for(alice), share_body(study, to=("user", stranger.pk)))
    assert response.status_code == 400
    assert "No such recipient" in text_of(response)
    assert "Stan" not in text_of(response)
    assert not Share.objects.exists()


def test_a_recipient_sharing_further_is_offered_no_more_than_they_hold(bob, carol, study):
    until = timezone.now() + timedelta(days=5)
    share_entry(bob, study, level="report_read", can_share=True, anonymized=True, valid_until=until)
    client = client_for(bob)
    html = text_of(client.get(DIALOG, {"study": study.study_uid}, **FRAGMENT))
    last_day = timezone.localdate(until)
    assert f'value="{last_day:%d/%m/%Y}"' in html and f'max="{last_day.isoformat()}"' in html
    assert "Unlimited access" not in html
    assert "The study was shared with you anonymized: it stays anonymized." in html
    # The pseudonym, never the patient's name, even on the sender's own screen.
    assert "Jane" not in html and "Anonymous" in html

    response = post(client, share_body(study, to=("user", carol.pk), access="report_write"))
    assert response.status_code == 400
    assert field_errors(response, "access") == ["You cannot give more access than you were given."]
    response = post(client, share_body(study, to=("user", carol.pk)))
    assert response.status_code == 200
    assert Entry.objects.get(worklist=personal_worklist(carol)).anonymized


def test_a_recipient_not_allowed_to_share_further_is_refused(bob, carol, study):
    share_entry(bob, study, level="report_read", can_share=False)
    response = client_for(bob).get(DIALOG, {"study": study.study_uid}, **FRAGMENT)
    assert response.status_code == 403
    assert "You may not share this study." in text_of(response)
