"""The development outbox page: in DEBUG only, each user reads the messages sent to them (staff
read all), with the links ready to click."""

import pytest
from django.urls import reverse

from notifications.models import Channel
from tests.accounts.helpers import sign_in
from tests.notifications.conftest import LINK

pytestmark = pytest.mark.django_db

OUTBOX = reverse("notifications:outbox")


def test_outbox_does_not_exist_on_a_real_installation(browser, alice, settings):
    settings.DEBUG = False
    browser.force_login(alice)

    assert browser.get(OUTBOX).status_code == 404


def test_outbox_does_not_exist_for_anonymous_visitors_either(browser, settings):
    settings.DEBUG = False

    assert browser.get(OUTBOX).status_code == 404


def test_outbox_asks_for_a_login_in_debug(browser, settings):
    settings.DEBUG = True

    response = browser.get(OUTBOX)

    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))


def test_user_reads_only_the_messages_sent_to_them(browser, settings, queue, alice, bob):
    settings.DEBUG = True
    alice.mobile = "+32470123456"
    alice.save(update_fields=["mobile"])
    to_alice = queue("ALICE@example.org")
    code_for_alice = queue("+32470123456", channel=Channel.SMS, template="sms_code")
    queue("bob@example.org", sender_name="Dr. Someone Else")
    browser.force_login(alice)

    response = browser.get(OUTBOX)

    assert response.status_code == 200
    assert list(response.context["outbox"]) == [code_for_alice, to_alice]
    assert to_alice.subject in response.text
    assert "482913" in response.text
    assert f'<a href="{LINK}"' in response.text  # ready to click
    assert "Dr. Someone Else" not in response.text
    assert "no-store" in response["Cache-Control"]


def test_staff_read_every_message(browser, settings, queue, dana):
    settings.DEBUG = True
    queue("someone@example.org")
    queue("+32470123456", channel=Channel.SMS, template="sms_code")
    sign_in(browser, dana)

    response = browser.get(OUTBOX)

    assert len(response.context["outbox"]) == 2


def test_a_sender_reads_the_messages_their_links_and_shares_sent(
    browser, settings, alice, dana, carol, org, location
):
    """The README's promise: in the demo, a sender follows the link they sent from the outbox.
    Someone else's link to the same address stays out of it."""
    from guestlinks.selectors import LinkTarget
    from guestlinks.services.creation import LinkOptions, create_link
    from tests.factories import make_study
    from tests.sharing.conftest import share

    settings.DEBUG = True
    study = make_study(org, location=location)
    create_link(
        sender=alice,
        target=LinkTarget(study=study),
        options=LinkOptions(email="gp@example.org"),
        acknowledged=True,
    )
    share(alice, study, ("email", "colleague@example.org"))
    # dana's link to the same GP is hers, not alice's.
    create_link(
        sender=dana,
        target=LinkTarget(study=study),
        options=LinkOptions(email="gp@example.org", message="From dana"),
        acknowledged=True,
    )

    browser.force_login(alice)
    listed = list(browser.get(OUTBOX).context["outbox"])

    assert {m.recipient for m in listed} == {"gp@example.org", "colleague@example.org"}
    assert all(m.concerning_type in ("guest_link", "share") for m in listed)
    assert len([m for m in listed if m.recipient == "gp@example.org"]) == 1
    assert not [m for m in listed if "From dana" in (m.body_text or "")]
    browser.force_login(carol)
    assert list(browser.get(OUTBOX).context["outbox"]) == []
