"""Dates are typed day first, as dd/mm/yyyy, whatever the browser's own locale (issue 12): in an
American browser, whose native date box would read mm/dd/yyyy, alice searches the directory by a
range of study dates and shares a study until a date she types, and the calendar button writes
the day it picks back into the box in the same form."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sharing.models import Share
from tests.browser.conftest import ingest_ct_study, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STUDY_UID = "1.2.826.0.1.3680043.10.4747.1"  # studied on 17 May 2024


@pytest.fixture
def ct_study(org, location):
    return ingest_ct_study(
        org, location, study_uid=STUDY_UID, patient_id="PID-4747", accession="ACC-4747", slices=2
    )


@pytest.fixture
def american_page(chromium, live_server):
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": 1440, "height": 900}, locale="en-US"
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def search_dates(page, start: str, end: str) -> None:
    page.get_by_label("From").fill(start)
    page.get_by_label("To", exact=True).fill(end)
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()


def test_a_typed_range_reads_day_first_in_an_american_browser(american_page, alice, ct_study):
    page = american_page
    log_in(page)
    row = page.locator(f'tr.study-row[data-id="{STUDY_UID}"]')

    # 31/05/2024 exists only day first: read month first it would be refused.
    search_dates(page, "01/05/2024", "31/05/2024")
    assert page.locator(".field.dates .errors").count() == 0
    assert row.count() == 1
    assert page.get_by_label("To", exact=True).input_value() == "31/05/2024"

    # 05/06/2024 is the 5th of June (after the study), not the 6th of May (before it).
    search_dates(page, "05/06/2024", "30/06/2024")
    assert row.count() == 0
    assert (
        "No studies" in page.locator("main").inner_text()
        or page.locator("tr.study-row").count() == 0
    )


def test_the_calendar_writes_its_day_back_as_dd_mm_yyyy(american_page, alice, ct_study):
    page = american_page
    log_in(page)
    box = page.locator(".date-range [data-date-input]").first
    button = box.locator("[data-date-picker-button]")
    assert button.is_visible()
    assert box.locator("[data-date-text]").get_attribute("placeholder") == "dd/mm/yyyy"

    # The native calendar cannot be clicked in a headless browser: pick its day as it would.
    box.locator("[data-date-picker]").evaluate(
        "(picker) => { picker.value = '2024-05-17';"
        " picker.dispatchEvent(new Event('change', { bubbles: true })); }"
    )

    assert box.locator("[data-date-text]").input_value() == "17/05/2024"


def test_a_share_lasts_until_the_day_typed(american_page, alice, bob, ct_study):
    page = american_page
    log_in(page)
    until = timezone.localdate() + timedelta(days=12)
    page.locator(f'tr.study-row[data-id="{STUDY_UID}"]').click(button="right")
    page.get_by_role("menuitem", name="Share", exact=True).click()
    form = page.locator("#remote-dialog form.share-form")
    form.wait_for()
    row = form.locator("[data-share-rows] > [data-share-row]").first
    row.locator("[data-share-query]").fill("tester")
    row.locator("[data-share-pick]", has_text="Bob Tester").click()
    date = form.locator('input[name="valid_until"]')
    date.fill(f"{until:%d/%m/%Y}")
    form.get_by_label("Reason for sharing").fill("Second opinion")
    form.get_by_label("Patient agreed").check()
    form.get_by_role("button", name="Share", exact=True).click()
    page.locator("#remote-dialog [data-share-done]").wait_for()

    assert Share.objects.get().valid_until == until
