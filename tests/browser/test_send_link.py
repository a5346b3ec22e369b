"""Send Link in a real browser: alice right-clicks a CT in the directory, sends a secure link
with a password and two uses, copies it; two recipients open it with the password and see the
images; a third is refused. Then alice deletes a link from the study page's Guest links."""

from __future__ import annotations

import re

import pytest

from guestlinks.models import GuestLink, LinkState
from tests.browser.conftest import ingest_ct_study, log_in, log_in_verified

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STUDY_UID = "1.2.826.0.1.3680043.10.4343.1"
PASSWORD = "Tulip-4711"
SCREENSHOTS = {
    "form": "/tmp/portal-send-link-form.png",
    "errors": "/tmp/portal-send-link-errors.png",
    "result": "/tmp/portal-send-link-result.png",
    "qr": "/tmp/portal-send-link-qr.png",
    "recipient": "/tmp/portal-send-link-recipient.png",
    "refused": "/tmp/portal-send-link-refused.png",
    "study_links": "/tmp/portal-study-guest-links.png",
    "delete": "/tmp/portal-study-guest-link-delete.png",
    "deleted": "/tmp/portal-study-guest-link-deleted.png",
    "admin_list": "/tmp/portal-admin-guest-links.png",
    "admin_revoke": "/tmp/portal-admin-revoke.png",
    "admin_done": "/tmp/portal-admin-revoked.png",
}


@pytest.fixture
def ct_study(org, location):
    return ingest_ct_study(
        org, location, study_uid=STUDY_UID, patient_id="PID-4712", accession="ACC-4343", slices=6
    )


@pytest.fixture(autouse=True)
def _site_url(settings, live_server):
    """Links are absolute addresses on the portal's SITE_URL: here, the live server."""
    settings.SITE_URL = live_server.url


def styled(page) -> None:
    """Dialog fragments bring their own stylesheet; screenshots wait until it applies."""
    page.wait_for_function(
        "() => [...document.styleSheets].some("
        "s => s.href && s.href.includes('/css/guestlinks.css') && s.cssRules.length)"
    )


def frame_painted(page) -> bool:
    return page.evaluate(
        "() => { const img = document.querySelector('[data-frame]');"
        " return !!img && img.complete && img.naturalWidth > 0; }"
    )


def reach_viewer(recipient, study_uid: str) -> None:
    """After the gates: the viewer, or first the guest's list of studies when the sender wrote
    a message (shown there), then the viewer; either way the first frame is painted."""
    viewer = re.compile(rf"/studies/{re.escape(study_uid)}/")
    recipient.wait_for_url(re.compile(rf"(/l/studies/|/studies/{re.escape(study_uid)}/)$"))
    if "/l/studies/" in recipient.url:
        assert "Please look at the left lower lobe." in recipient.content()
        recipient.get_by_role("link", name="Open").click()
    recipient.wait_for_url(viewer)
    recipient.wait_for_function(
        "() => { const img = document.querySelector('[data-frame]');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )


def open_as_recipient(chromium, live_server, link: str, *, password: str | None):
    """A fresh browser (no session, no cookies) opens the link; returns its page."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(link)
    if password is not None:
        page.fill("input[name=password]", password)
        page.get_by_role("button", name="Open study").click()
    return context, page


def test_send_a_secure_link_and_open_it_twice(page_on, chromium, live_server, alice, ct_study):
    page = page_on
    log_in(page)

    row = page.locator(f'tr.study-row[data-id="{ct_study}"]')
    row.click(button="right")
    page.get_by_role("menu").wait_for()
    page.get_by_role("menuitem", name="Send Link").click()

    dialog = page.locator("#remote-dialog")
    dialog.wait_for(state="visible")
    assert dialog.locator("[data-dialog-title]").inner_text() == "Send Link"
    form = dialog.locator("form.gl-send-form")
    form.wait_for()
    assert "authorization cannot be removed once the secure link is sent" in form.inner_text()
    styled(page)
    page.screenshot(path=SCREENSHOTS["form"])

    # Without the acknowledgement the server refuses and the dialog says why.
    form.get_by_label("Limit number of uses to").fill("2")
    form.get_by_role("button", name="Get Link").click()
    dialog.locator(".gl-ack.has-errors").wait_for()
    assert "Tick the box to confirm" in dialog.inner_text()
    assert GuestLink.objects.count() == 0
    page.screenshot(path=SCREENSHOTS["errors"])

    form = dialog.locator("form.gl-send-form")
    assert form.get_by_label("Limit number of uses to").input_value() == "2"
    form.get_by_label(re.compile("I understand that authorization cannot be removed")).check()
    form.get_by_label("Send via email to").fill("gp@example.org")
    form.get_by_label("Require user to enter this password").fill(PASSWORD)
    form.get_by_label("Message").fill("Please look at the left lower lobe.")
    form.get_by_role("button", name="Get Link").click()

    result = dialog.locator("[data-link-created]")
    result.wait_for()
    link = result.locator("#get-link-url").input_value()
    assert re.fullmatch(rf"{re.escape(live_server.url)}/l/[A-Za-z0-9_-]{{43}}", link)
    assert PASSWORD not in dialog.inner_html()
    page.screenshot(path=SCREENSHOTS["result"])

    result.get_by_role("button", name="Copy to clipboard").click()
    page.wait_for_function(
        "() => document.querySelector('#remote-dialog [data-copy-status]').textContent.length"
    )
    assert "Copied" in result.locator("[data-copy-status]").inner_text()
    try:
        clipboard = page.evaluate("navigator.clipboard.readText()")
    except Exception:
        clipboard = None
    if clipboard is not None:
        assert clipboard == link

    mailto = result.get_by_role("link", name="Click to send link by email").get_attribute("href")
    assert mailto.startswith("mailto:gp@example.org?subject=")
    assert "M%C3%BCller" not in mailto and "Hans" not in mailto

    result.get_by_text("Show QR code").click()
    qr = result.locator("svg.qr-code")
    qr.wait_for()
    box = qr.bounding_box()
    assert box["width"] >= 150 and box["height"] >= 150
    page.screenshot(path=SCREENSHOTS["qr"])
    result.get_by_role("button", name="Close").click()
    assert not dialog.is_visible()

    stored = GuestLink.objects.get()
    assert stored.max_uses == 2 and stored.password_hash and stored.email == "gp@example.org"

    # First recipient: the password, then the viewer with its images.
    first, recipient = open_as_recipient(chromium, live_server, link, password=None)
    assert "Shared study" in recipient.content()
    assert "Müller" not in recipient.content()
    recipient.screenshot(path=SCREENSHOTS["recipient"])
    recipient.fill("input[name=password]", PASSWORD)
    recipient.get_by_role("button", name="Open study").click()
    reach_viewer(recipient, ct_study)
    assert frame_painted(recipient)
    assert recipient.locator("[data-guest-links-open]").count() == 0
    first.close()

    # Second recipient: the second use.
    second, recipient = open_as_recipient(chromium, live_server, link, password=PASSWORD)
    reach_viewer(recipient, ct_study)
    second.close()

    # Third: no uses left, the one generic refusal.
    third, recipient = open_as_recipient(chromium, live_server, link, password=None)
    assert "This link is not valid" in recipient.content()
    assert recipient.locator("input[name=password]").count() == 0
    recipient.screenshot(path=SCREENSHOTS["refused"])
    third.close()

    stored.refresh_from_db()
    assert stored.uses == 2
    assert page.console_errors == [] or all("400" in e for e in page.console_errors)


def test_guest_links_on_the_study_page_new_link_and_trash_can(
    page_on, live_server, alice, ct_study
):
    page = page_on
    log_in(page)
    page.goto(f"/studies/{ct_study}/")
    page.wait_for_function("() => document.querySelector('[data-frame]').naturalWidth > 0")

    page.get_by_role("button", name=re.compile("Guest links")).click()
    panel = page.locator("#guest-links-dialog")
    panel.wait_for(state="visible")
    assert "No guest links have been made for this study yet." in panel.inner_text()

    # New Guest Link: the Send Link dialog on top; the list refreshes when it closes.
    panel.get_by_role("button", name="New Guest Link").click()
    dialog = page.locator("#remote-dialog")
    form = dialog.locator("form.gl-send-form")
    form.wait_for()
    form.get_by_label(re.compile("I understand that authorization cannot be removed")).check()
    form.get_by_label("Link will expire in").first.wait_for()
    form.get_by_label("days").fill("3")
    form.get_by_label("Password is the patient's date of birth").check()
    form.get_by_label("Max password attempts").fill("3")
    form.get_by_role("button", name="Get Link").click()
    dialog.locator("[data-link-created]").wait_for()
    assert "Enter an email address to show a QR code." in dialog.inner_text()
    assert dialog.get_by_role("button", name="Show QR code").is_disabled()
    link = dialog.locator("#get-link-url").input_value()
    dialog.locator("[data-link-created]").get_by_role("button", name="Close").click()

    panel.locator(".gl-link").first.wait_for()
    assert panel.locator(f'input[value="{link}"]').count() == 1
    assert "Password: patient's date of birth" in panel.inner_text()
    assert page.locator("[data-guest-links-open] .gl-count").inner_text() == "1"
    page.screenshot(path=SCREENSHOTS["study_links"])

    # The trash can asks first; Cancel keeps the link.
    panel.get_by_role("button", name="Delete guest link").click()
    confirm = page.locator("#guest-link-delete-dialog")
    confirm.wait_for(state="visible")
    page.screenshot(path=SCREENSHOTS["delete"])
    confirm.get_by_role("button", name="Cancel").click()
    assert GuestLink.objects.get().state == LinkState.ACTIVE

    panel.get_by_role("button", name="Delete guest link").click()
    confirm.get_by_role("button", name="Delete link").click()
    panel.locator(".gl-status-deleted").wait_for()
    assert GuestLink.objects.get().state == LinkState.DELETED
    assert page.locator("[data-guest-links-open] .gl-count").count() == 0
    page.screenshot(path=SCREENSHOTS["deleted"])
    assert panel.locator(f'input[value="{link}"]').count() == 0
    assert page.console_errors == []

    # The deleted link no longer opens.
    page.goto(link)
    assert "This link is not valid" in page.content()


def test_an_administrator_revokes_a_link_in_the_admin(page_on, live_server, settings, alice, dana):

    from guestlinks.selectors import LinkTarget
    from guestlinks.services.creation import LinkOptions, create_link
    from tests.factories import make_study

    membership = alice.memberships.get()
    study = make_study(membership.organization, location=membership.locations.get())
    created = create_link(
        sender=alice,
        target=LinkTarget(study=study),
        options=LinkOptions(email="gp@example.org", max_uses=3),
        acknowledged=True,
    )
    # Dana's session passed the password and the one-time code (the admin requires both).
    page = page_on
    log_in_verified(page, dana, live_server.url)
    page.goto("/admin/guestlinks/guestlink/")
    row = page.locator("#result_list tbody tr").first
    assert "CT Chest" in row.inner_text() and "0 / 3" in row.inner_text()
    page.screenshot(path=SCREENSHOTS["admin_list"])
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "revoke_selected")
    page.get_by_role("button", name="Go").click()
    page.wait_for_url(re.compile(r"/admin/guestlinks/guestlink/$"))
    page.get_by_label("Reason").fill("Sent to the wrong practice")
    page.screenshot(path=SCREENSHOTS["admin_revoke"])
    page.get_by_role("button", name="Revoke link").click()
    page.locator(".messagelist .success").wait_for()
    assert "1 guest link revoked" in page.locator(".messagelist").inner_text()
    created.link.refresh_from_db()
    assert created.link.state == LinkState.REVOKED
    assert created.link.end_reason == "Sent to the wrong practice"
    page.screenshot(path=SCREENSHOTS["admin_done"])
    page.goto(created.url)
    assert "This link is not valid" in page.content()
