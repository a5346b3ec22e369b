"""Every message in every language: the recipient's language throughout, patient initials only in
subjects, "Urgent" where the sender asked for it, and SMS short enough for two segments."""

from datetime import UTC, date, datetime

import pytest
from django.utils import translation

from notifications.models import Channel
from notifications.services import render_message, sms_segments
from tests.notifications.conftest import LINK, share_context

LANGUAGES = ("en", "fr", "nl", "de")
GREETING = {"en": "Hello,", "fr": "Bonjour,", "nl": "Goedendag,", "de": "Guten Tag,"}
EMAIL_TEMPLATES = (
    "share_notification",
    "guest_link",
    "email_confirmation",
    "registration_invitation",
)
FULL_CONTEXT = share_context(
    urgent=True,
    expires_at=datetime(2024, 6, 17, 14, 0, tzinfo=UTC),
    max_uses=3,
    password_required=True,
    login_required=True,
    email="dr.new@example.org",
    patient_name="DOE^JANE",  # a careless caller: the subject must still show initials only
)


def render(template, language, channel=Channel.EMAIL, **context):
    return render_message(
        channel=channel,
        template=template,
        context={**FULL_CONTEXT, **context},
        language=language,
    )


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", EMAIL_TEMPLATES)
def test_email_is_written_in_the_recipients_language(template, language):
    subject, text, html = render(template, language)

    assert GREETING[language] in text
    assert GREETING[language] in html
    assert LINK in text and f'href="{LINK}"' in html
    assert "\n" not in subject and subject.strip() == subject
    assert "Jane" not in subject and "DOE" not in subject
    assert f'<html lang="{language}">' in html
    if language != "en":
        assert subject != render(template, "en")[0]
        assert "Hello," not in text


@pytest.mark.parametrize("template", EMAIL_TEMPLATES)
def test_texts_of_the_same_email_agree_on_the_language_in_french(template):
    _subject, text, html = render(template, "fr")

    with translation.override("fr"):
        footer = translation.gettext("This message was sent automatically; replies are not read.")
    assert footer == "Ce message a été envoyé automatiquement ; les réponses ne sont pas lues."
    assert footer in text and footer in html


@pytest.mark.parametrize(
    ("language", "subject"),
    [
        ("en", "Urgent: Dr. Alice Tester shared a study with you (J. D.)"),
        ("fr", "Urgent : Dr. Alice Tester a partagé un examen avec vous (J. D.)"),
        ("nl", "Dringend: Dr. Alice Tester heeft een onderzoek met u gedeeld (J. D.)"),
        ("de", "Dringend: Dr. Alice Tester hat eine Untersuchung für Sie freigegeben (J. D.)"),
    ],
)
def test_urgent_share_says_so_first_in_the_subject(language, subject):
    assert render("share_notification", language)[0] == subject


def test_share_that_is_not_urgent_has_no_prefix():
    subject, text, html = render("share_notification", "en", urgent=False)

    assert subject == "Dr. Alice Tester shared a study with you (J. D.)"
    assert "URGENT" not in text and "URGENT" not in html


def test_share_notification_says_who_what_when_and_the_message():
    _subject, text, html = render("share_notification", "en", urgent=False)

    assert "Dr. Alice Tester has shared a study with you on Study Portal:" in text
    assert "- J. D. · CT Chest · 17 May 2024" in text
    assert "Please look at the left lower lobe." in text and "left lower lobe" in html
    assert "You have access until 17 Jun 2024." in text


def test_share_of_several_studies_lists_each_and_counts_them_in_the_subject():
    studies = [
        {"patient_initials": "J. D.", "study_description": "CT Chest", "study_date": "2024-05-17"},
        {
            "patient_initials": "A. B.",
            "study_description": "MR Knee",
            "study_date": date(2023, 1, 2),
        },
    ]
    subject, text, html = render("share_notification", "nl", urgent=False, studies=studies)

    assert subject == "Dr. Alice Tester heeft 2 onderzoeken met u gedeeld"
    assert "- J. D. · CT Chest · 2024-05-17" in text
    assert "- A. B. · MR Knee · 02/01/2023" in text
    assert "Onderzoeken openen" in html


def test_dates_follow_the_language():
    # As the manuals write them; in English the month is spelled, so no reader swaps day and month.
    for language in ("fr", "de", "nl"):
        assert "17/05/2024" in render("share_notification", language)[1]
    assert "17 May 2024" in render("share_notification", "en")[1]


MINIMAL_CONTEXT = {
    "sender_name": "Dr. Alice Tester",
    "link": LINK,
    "patient_initials": "J. D.",
    "study_description": "CT Chest",
    "study_date": date(2024, 5, 17),
    "email": "dr.new@example.org",
}


@pytest.mark.parametrize("template", EMAIL_TEMPLATES)
def test_optional_parts_are_left_out_when_not_given(template):
    _subject, text, _html = render_message(
        channel=Channel.EMAIL, template=template, context=MINIMAL_CONTEXT, language="en"
    )

    assert "Message from" not in text
    assert "until" not in text
    assert "password" not in text
    assert "URGENT" not in text
    assert "\n\n\n" not in text


def test_guest_link_never_carries_the_password():
    subject, text, html = render("guest_link", "en", password="s3cret-pass")

    assert "s3cret-pass" not in subject + text + html
    assert "the sender will give it to you separately" in text


def test_sender_message_is_escaped_in_html_and_kept_as_typed_in_text():
    _subject, text, html = render("guest_link", "en", message="<b>CT</b> & MR")

    assert "<b>CT</b> & MR" in text
    assert "&lt;b&gt;CT&lt;/b&gt; &amp; MR" in html


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Study Portal: Your code is 482913. It expires in 10 minutes."),
        ("fr", "Study Portal : Votre code est 482913. Il expire dans 10 minutes."),
        ("nl", "Study Portal: Uw code is 482913. Deze verloopt over 10 minuten."),
        ("de", "Study Portal: Ihr Code lautet 482913. Er läuft in 10 Minuten ab."),
    ],
)
def test_sms_code_is_one_short_segment_without_patient_data(language, expected):
    subject, text, html = render_message(
        channel=Channel.SMS, template="sms_code", context={"code": "482913"}, language=language
    )

    assert (subject, html) == ("", "")
    assert text.startswith(expected)
    assert sms_segments(text) == 1


def test_sms_code_counts_minutes_in_the_singular():
    text = render_message(
        channel=Channel.SMS,
        template="sms_code",
        context={"code": "1234", "minutes": 1},
        language="en",
    )[1]
    assert "It expires in 1 minute." in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_guest_link_by_sms_fits_in_two_segments(language):
    _subject, text, _html = render("guest_link", language, channel=Channel.SMS)

    assert LINK in text
    assert GREETING[language] not in text  # the short SMS form, not the email
    assert sms_segments(text) <= 2


def test_sms_segments_count_gsm_and_unicode_texts():
    assert sms_segments("a" * 160) == 1
    assert sms_segments("a" * 161) == 2
    assert sms_segments("a" * 306) == 2
    assert sms_segments("€" * 80) == 1  # two septets each
    assert sms_segments("ê" * 70) == 1  # UCS-2
    assert sms_segments("ê" * 71) == 2
