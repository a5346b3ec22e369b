"""Share in a real browser (issue 5's story): alice selects two studies, right-clicks, picks
Share, finds bob by his physician number, gives a reason, the patient's agreement and a message,
shares and copies the confirmation. Bob logs in: both studies are in his worklist with a red
Message badge; he opens one, and back in the directory its badge is green."""

from __future__ import annotations

import re

import pytest

from sharing.models import Favorite, Share
from tests.browser.conftest import ingest_ct_study, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FIRST_UID = "1.2.826.0.1.3680043.10.4545.1"
SECOND_UID = "1.2.826.0.1.3680043.10.4545.2"
MESSAGE = "Please compare with the prior, left lower lobe."
SCREENSHOTS = {
    "form": "/tmp/portal-share-form.png",
    "results": "/tmp/portal-share-results.png",
    "chosen": "/tmp/portal-share-chosen.png",
    "filled": "/tmp/portal-share-filled.png",
    "done": "/tmp/portal-share-done.png",
    "recipient": "/tmp/portal-share-recipient-directory.png",
    "read": "/tmp/portal-share-recipient-read.png",
    "controls": "/tmp/portal-share-controls.png",
    "no_script": "/tmp/portal-share-no-script.png",
}


@pytest.fixture
def two_studies(org, location):
    first = ingest_ct_study(
        org, location, study_uid=FIRST_UID, patient_id="PID-4545", accession="ACC-4545", slices=3
    )
    second = ingest_ct_study(
        org, location, study_uid=SECOND_UID, patient_id="PID-4545", accession="ACC-4546", slices=2
    )
    return first, second


def styled(page) -> None:
    """The dialog's fragment brings its own stylesheet; wait until it applies."""
    page.wait_for_function(
        "() => [...document.styleSheets].some("
        "s => s.href && s.href.includes('/css/sharing.css') && s.cssRules.length)"
    )


def badge_of(page, study_uid: str):
    return page.locator(f'tr.study-row[data-id="{study_uid}"] .badges .badge', has_text="Message")


def test_share_two_studies_with_a_user_who_reads_the_message(
    page_on, chromium, live_server, alice, bob, two_studies
):
    page = page_on
    log_in(page, "alice")

    first = page.locator(f'tr.study-row[data-id="{FIRST_UID}"]')
    second = page.locator(f'tr.study-row[data-id="{SECOND_UID}"]')
    first.click()
    second.click(modifiers=["Control"])
    assert first.get_attribute("aria-selected") == "true"
    assert second.get_attribute("aria-selected") == "true"
    second.click(button="right")
    page.get_by_role("menu").wait_for()
    page.get_by_role("menuitem", name="Share", exact=True).click()

    dialog = page.locator("#remote-dialog")
    dialog.wait_for(state="visible")
    assert dialog.locator("[data-dialog-title]").inner_text() == "Share"
    form = dialog.locator("form.share-form")
    form.wait_for()
    # Both studies, and whose they are (in the dialog's body only).
    assert form.locator('input[name="study"]').count() == 2
    assert "Hans Müller" in form.locator(".share-subject").inner_text()
    styled(page)
    page.screenshot(path=SCREENSHOTS["form"])

    # Find bob by his physician number as one types.
    query = form.locator('input[name="recipient-0-text"]')
    query.fill("RIZIV-1002")
    result = form.locator("[data-share-results] [data-share-pick]", has_text="Bob Tester")
    result.wait_for()
    assert "RIZIV-1002" in result.inner_text()
    page.screenshot(path=SCREENSHOTS["results"])
    result.click()
    chosen = form.locator("[data-share-chosen]").first
    chosen.wait_for(state="visible")
    assert "Bob Tester" in chosen.inner_text()
    assert form.locator('input[name="recipient-0-target"]').input_value() == str(bob.pk)
    page.screenshot(path=SCREENSHOTS["chosen"])

    form.get_by_label("Reason for sharing").fill("Second opinion on the nodule")
    form.get_by_label("Patient agreed").check()
    form.get_by_role("textbox", name=re.compile(r"^Message")).fill(MESSAGE)
    page.screenshot(path=SCREENSHOTS["filled"])
    form.get_by_role("button", name="Share", exact=True).click()

    done = dialog.locator("[data-share-done]")
    done.wait_for()
    assert "The 2 studies are shared." in done.inner_text()
    assert "Bob Tester" in done.inner_text()
    share = Share.objects.get()
    assert set(share.studies.values_list("study_uid", flat=True)) == {FIRST_UID, SECOND_UID}
    assert share.message == MESSAGE
    page.screenshot(path=SCREENSHOTS["done"])

    done.get_by_role("button", name="Copy this information").click()
    page.wait_for_function(
        "() => document.querySelector('#remote-dialog [data-copy-status]').textContent.length"
    )
    assert "Copied" in done.locator("[data-copy-status]").inner_text()
    expected = done.locator("#share-done-text").input_value()
    assert "Bob Tester" in expected and "CT Thorax" in expected
    # English spells the month: "3 Jan 2027" is never read as 1 March.
    assert f"Valid until: {share.valid_until:%-d %b %Y}" in expected
    assert "Müller" not in expected  # pasted into emails: no patient name
    try:
        clipboard = page.evaluate("navigator.clipboard.readText()")
    except Exception:  # a browser that refuses reading the clipboard; the status said copied
        clipboard = None
    if clipboard is not None:
        assert clipboard == expected
    done.get_by_role("link", name="Close").click()
    assert not dialog.is_visible()

    # Bob, in a browser of his own.
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": 1440, "height": 900}, locale="en-GB"
    )
    try:
        recipient = context.new_page()
        recipient.set_default_timeout(15_000)
        log_in(recipient, "bob")
        for uid in (FIRST_UID, SECOND_UID):
            badge = badge_of(recipient, uid)
            badge.wait_for()
            assert "unread" in badge.get_attribute("class").split()
        recipient.screenshot(path=SCREENSHOTS["recipient"])

        recipient.locator(f'tr.study-row[data-id="{FIRST_UID}"]').dblclick()
        recipient.wait_for_url(re.compile(rf"/studies/{re.escape(FIRST_UID)}/"))
        assert MESSAGE in recipient.content()

        recipient.goto("/studies/")
        assert "read" in badge_of(recipient, FIRST_UID).get_attribute("class").split()
        assert "unread" in badge_of(recipient, SECOND_UID).get_attribute("class").split()
        recipient.screenshot(path=SCREENSHOTS["read"])
    finally:
        context.close()
    assert page.console_errors == [] or all("400" in e for e in page.console_errors)


def test_the_dialogs_controls_work_without_a_round_trip(
    page_on, live_server, alice, bob, group, two_studies
):
    """Add extra recipient, favorites, the kind of a row, removing a row, the star and
    Unlimited access all act in the page; only Share posts."""
    Favorite.objects.create(owner=alice, kind="group", group=group)
    page = page_on
    log_in(page, "alice")
    posts = []
    page.on(
        "request",
        lambda request: posts.append(request.url) if request.method == "POST" else None,
    )
    page.locator(f'tr.study-row[data-id="{FIRST_UID}"]').click(button="right")
    page.get_by_role("menuitem", name="Share", exact=True).click()
    form = page.locator("#remote-dialog form.share-form")
    form.wait_for()
    rows = form.locator("[data-share-rows] > [data-share-row]")
    assert rows.count() == 1

    form.get_by_role("button", name="Add extra recipient").click()
    assert rows.count() == 2
    # A favorite fills the first empty row.
    form.get_by_role("button", name="Favorites").click()
    favorites = form.locator("[data-share-favorites]")
    favorites.wait_for(state="visible")
    favorites.get_by_role("button", name=re.compile(r"^Group Neuroradiology")).click()
    first_row = rows.nth(0)
    assert "Neuroradiology" in first_row.locator("[data-share-chosen]").inner_text()
    assert first_row.locator("[data-share-is-favorite]").is_visible()
    assert first_row.locator('input[name$="-target"]').input_value() == str(group.pk)

    # The second row: an email address.
    second_row = rows.nth(1)
    second_row.locator("[data-share-kind]").select_option("email")
    query = second_row.locator("[data-share-query]")
    assert query.get_attribute("placeholder") == "name@example.org"
    assert not second_row.locator("[data-share-search]").is_visible()
    query.fill("gp@example.net")

    # A third row, removed again.
    form.get_by_role("button", name="Add extra recipient").click()
    assert rows.count() == 3
    rows.nth(2).get_by_role("button", name="Remove this recipient").click()
    assert rows.count() == 2

    # A fourth: bob, starred.
    form.get_by_role("button", name="Add extra recipient").click()
    bob_row = rows.nth(2)
    bob_row.locator("[data-share-query]").fill("tester")
    bob_row.locator("[data-share-pick]", has_text="Bob Tester").click()
    hint = form.locator("[data-share-star-hint]")
    assert not hint.is_visible()
    bob_row.get_by_text("Add to favorites").click()
    assert bob_row.locator("[data-share-star]").is_checked()
    assert hint.is_visible()
    page.screenshot(path=SCREENSHOTS["controls"])

    date = form.locator('input[name="valid_until"]')
    unlimited = form.get_by_label("Unlimited access")
    unlimited.check()
    assert date.is_disabled()
    unlimited.uncheck()
    assert date.is_enabled()
    unlimited.check()

    form.get_by_label("Reason for sharing").fill("Tumour board")
    form.get_by_label("Patient agreed").check()
    assert posts == []  # nothing above needed the server
    form.get_by_role("button", name="Share", exact=True).click()
    done = page.locator("#remote-dialog [data-share-done]")
    done.wait_for()
    assert "invited" in done.inner_text()
    share = Share.objects.get()
    assert share.valid_until is None
    assert [r.kind for r in share.recipients.order_by("id")] == ["group", "email", "user"]
    assert {(f.kind, f.target) for f in Favorite.objects.filter(owner=alice)} == {
        ("group", group),
        ("user", bob),
    }

    # Share again: the same study, no recipients.
    done.get_by_role("button", name="Share again").click()
    form = page.locator("#remote-dialog form.share-form")
    form.wait_for()
    assert form.locator('input[name="study"]').input_value() == FIRST_UID
    assert form.locator("[data-share-rows] > [data-share-row]").count() == 1
    assert form.locator('input[name$="-target"]').input_value() == ""


def test_the_actions_button_shares_the_whole_selection(page_on, alice, two_studies):
    """CIMAR's way: select the studies, then the Actions menu (a selected row's button)."""
    page = page_on
    log_in(page, "alice")
    for uid in (FIRST_UID, SECOND_UID):
        page.locator(f'tr.study-row[data-id="{uid}"] [data-select-row]').check()
    page.locator(f'tr.study-row[data-id="{FIRST_UID}"] [data-menu-button]').click()
    page.get_by_role("menuitem", name="Share", exact=True).click()
    form = page.locator("#remote-dialog form.share-form")
    form.wait_for()
    studies = form.locator('input[name="study"]')
    assert sorted(studies.nth(i).input_value() for i in range(studies.count())) == [
        FIRST_UID,
        SECOND_UID,
    ]


def test_without_javascript_the_share_page_still_shares(
    chromium, live_server, alice, bob, two_studies
):
    context = chromium.new_context(
        base_url=live_server.url, java_script_enabled=False, locale="en-GB"
    )
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        log_in(page, "alice")
        page.goto(f"/shares/dialog/?study={FIRST_UID}")
        assert page.title().startswith("Share")
        form = page.locator("form.share-form")
        form.locator('input[name="recipient-0-text"]').fill("RIZIV-1002")
        form.locator("[data-share-search]").first.click()
        form = page.locator("form.share-form")
        page.screenshot(path=SCREENSHOTS["no_script"], full_page=True)
        form.locator("[data-share-pick]", has_text="Bob Tester").click()
        form = page.locator("form.share-form")
        assert form.locator('input[name="recipient-0-target"]').input_value() == str(bob.pk)
        form.get_by_role("button", name="Add extra recipient").click()
        form = page.locator("form.share-form")
        assert form.locator("[data-share-rows] > [data-share-row]").count() == 2
        form.get_by_label("Reason for sharing").fill("Second opinion")
        form.get_by_label("Patient agreed").check()
        form.get_by_role("button", name="Share", exact=True).click()
        page.locator("[data-share-done]").wait_for()
        assert "The study is shared." in page.content()
        assert Share.objects.get().recipients.get().user == bob
    finally:
        context.close()
