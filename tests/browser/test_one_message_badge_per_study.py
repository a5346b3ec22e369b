"""One "Message" badge per study in a real browser (issue 11, point 1): alice shares a CT with
bob and with his Neuroradiology group, the same message both times. Bob's directory shows one red
badge for it; the viewer lists a "Message" entry with the series, which leads to the message,
shown once with its sender; back in the directory the one badge is green."""

from __future__ import annotations

import re

import pytest

from studies.models import Study
from tests.browser.conftest import ingest_ct_study, log_in
from tests.sharing.conftest import share

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

UID = "1.2.826.0.1.3680043.10.4611.1"
MESSAGE = "Please compare with the prior, left lower lobe."
SCREENSHOTS = {
    "directory": "/tmp/portal-one-badge-directory.png",
    "viewer": "/tmp/portal-one-badge-viewer.png",
    "phone": "/tmp/portal-one-badge-viewer-phone.png",
}


@pytest.fixture
def shared_twice(org, location, alice, bob, group):
    ingest_ct_study(
        org, location, study_uid=UID, patient_id="PID-4611", accession="A-4611", slices=3
    )
    study = Study.objects.get(study_uid=UID)
    share(alice, study, ("user", bob.pk), message=MESSAGE)
    share(alice, study, ("group", group.pk), message=MESSAGE)
    return study


def badges(page):
    return page.locator(f'tr.study-row[data-id="{UID}"] .badges .badge', has_text="Message")


def test_one_badge_for_a_study_shared_twice_and_its_message_once(page_on, shared_twice):
    page = page_on
    log_in(page, "bob")
    row = page.locator(f'tr.study-row[data-id="{UID}"]')
    row.wait_for()
    assert badges(page).count() == 1
    assert "unread" in badges(page).get_attribute("class").split()
    # Red, as PACSonWEB's label before the study is opened.
    color = badges(page).evaluate("el => getComputedStyle(el).backgroundColor")
    assert color == "rgb(198, 40, 40)"
    page.screenshot(path=SCREENSHOTS["directory"])

    row.dblclick()
    page.wait_for_url(re.compile(rf"/studies/{re.escape(UID)}/"))
    strip = page.get_by_role("navigation", name="Series")
    entry = strip.get_by_role("link", name=re.compile("Message"))
    assert entry.is_visible()
    assert "From Alice Tester" in entry.inner_text()
    # The series themselves are still there and still work.
    assert strip.locator("[data-series-index]").count() == 1

    panel = page.locator("#messages")
    assert panel.locator(".message-text").count() == 1
    assert panel.inner_text().count(MESSAGE) == 1
    assert "From Alice Tester" in panel.inner_text()
    entry.click()
    page.wait_for_function("() => location.hash === '#messages'")
    assert panel.evaluate("el => el.matches(':target')")
    assert panel.is_visible()
    page.screenshot(path=SCREENSHOTS["viewer"])

    page.goto("/studies/")
    assert badges(page).count() == 1
    assert "read" in badges(page).get_attribute("class").split()
    assert page.console_errors == []


def test_on_a_phone_the_message_entry_leads_below_the_image(chromium, live_server, shared_twice):
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": 390, "height": 844}, locale="en-GB"
    )
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        log_in(page, "bob")
        page.goto(f"/studies/{UID}/")
        entry = page.get_by_role("navigation", name="Series").get_by_role(
            "link", name=re.compile("Message")
        )
        entry.click()
        panel = page.locator("#messages")
        page.wait_for_function("() => location.hash === '#messages'")
        assert panel.is_visible()
        box = panel.bounding_box()
        assert box is not None and box["y"] < 844  # scrolled into view
        page.screenshot(path=SCREENSHOTS["phone"])
    finally:
        context.close()
