"""Removing a share asks first, in a real browser (issue 11, point 2): alice's Shares page names
the patient and the study; Remove… leads to a question that says who loses access to what;
"Keep the share" changes nothing; "Remove the share" ends bob's access at once. The same without
JavaScript."""

from __future__ import annotations

import re

import pytest

from sharing.models import Share
from studies.access import user_study_access
from studies.models import Study
from tests.browser.conftest import ingest_ct_study, log_in
from tests.sharing.conftest import share

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

UID = "1.2.826.0.1.3680043.10.4612.1"
SCREENSHOTS = {
    "list": "/tmp/portal-shares-list.png",
    "question": "/tmp/portal-shares-remove-question.png",
    "removed": "/tmp/portal-shares-removed.png",
}


@pytest.fixture
def shared(org, location, alice, bob):
    ingest_ct_study(
        org, location, study_uid=UID, patient_id="PID-4612", accession="A-4612", slices=2
    )
    study = Study.objects.get(study_uid=UID)
    return share(alice, study, ("user", bob.pk), message="Second opinion, please.")


def bobs_access(bob):
    return user_study_access(bob, Study.objects.get(study_uid=UID))


def test_remove_asks_first_and_then_ends_access(page_on, bob, shared):
    page = page_on
    log_in(page, "alice")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Shares").click()
    page.wait_for_url(re.compile(r"/shares/$"))
    row = page.locator("table.shares-list tbody tr").first
    assert "Hans Müller" in row.inner_text() and "CT Thorax" in row.inner_text()
    assert "Bob Tester" in row.inner_text() and "Running" in row.inner_text()
    page.screenshot(path=SCREENSHOTS["list"], full_page=True)

    # Keep the share: nothing happens.
    row.get_by_role("link", name="Remove…").click()
    page.wait_for_url(re.compile(rf"/shares/{shared.pk}/remove/$"))
    question = page.locator("section.remove-share")
    assert question.get_by_role("heading", name="Remove this share?").is_visible()
    text = question.inner_text()
    assert "Bob Tester" in text and "Hans Müller" in text and "CT Thorax" in text
    assert "lose their access" in text
    page.screenshot(path=SCREENSHOTS["question"], full_page=True)
    question.get_by_role("link", name="Keep the share").click()
    page.wait_for_url(re.compile(r"/shares/$"))
    assert Share.objects.get().removed_at is None
    assert bobs_access(bob) is not None

    # Remove it.
    page.locator("table.shares-list").get_by_role("link", name="Remove…").click()
    page.get_by_role("button", name="Remove the share").click()
    page.wait_for_url(re.compile(r"/shares/$"))
    assert f"Share {shared.pk} removed" in page.locator(".messages").inner_text()
    assert "Removed" in page.locator("table.shares-list tbody tr").first.inner_text()
    assert page.locator("table.shares-list").get_by_role("link", name="Remove…").count() == 0
    assert bobs_access(bob) is None
    page.screenshot(path=SCREENSHOTS["removed"], full_page=True)
    assert page.console_errors == []


def test_without_javascript_the_question_still_protects_the_share(
    chromium, live_server, bob, shared
):
    context = chromium.new_context(
        base_url=live_server.url, java_script_enabled=False, locale="en-GB"
    )
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        log_in(page, "alice")
        page.goto("/shares/")
        page.get_by_role("link", name="Remove…").click()
        assert page.get_by_role("heading", name="Remove this share?").is_visible()
        assert bobs_access(bob) is not None
        page.get_by_role("button", name="Remove the share").click()
        page.wait_for_url(re.compile(r"/shares/$"))
        assert bobs_access(bob) is None
    finally:
        context.close()


def test_the_share_code_copy_button_copies(page_on, alice, location, shared):
    from studies.services.worklists import location_worklist

    code = location_worklist(location).share_code
    page = page_on
    log_in(page, "alice")
    page.goto("/shares/")
    section = page.locator("section.share-codes")
    assert section.locator(f'input[value="{code}"]').is_visible()
    section.get_by_role("button", name="Copy").first.click()
    page.wait_for_function(
        "() => document.querySelector('section.share-codes [data-copy-status]').textContent.length"
    )
    assert "copied" in section.locator("[data-copy-status]").inner_text()
    try:
        clipboard = page.evaluate("navigator.clipboard.readText()")
    except Exception:  # a browser that refuses reading the clipboard; the status said copied
        clipboard = None
    if clipboard is not None:
        assert clipboard == code
