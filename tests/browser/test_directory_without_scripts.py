"""The directory's rows in a browser without scripts show their links (the study, Share, Send
Link...) in place of the Actions button, and the links lead to the pages; with scripts the row
shows the Actions button and its menu instead (issue 15)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ingest_ct_study, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STUDY_UID = "1.2.826.0.1.3680043.10.4343.16"


@pytest.fixture
def ct_study(org, location):
    return ingest_ct_study(
        org, location, study_uid=STUDY_UID, patient_id="PID-4716", accession="ACC-4316", slices=2
    )


def test_without_scripts_a_row_leads_to_share_and_the_study(
    page_on, chromium, live_server, alice, ct_study
):
    log_in(page_on)
    row = page_on.locator(f'tr.study-row[data-id="{ct_study}"]')
    assert row.locator("[data-row-links]").is_hidden()
    assert row.locator("[data-menu-button]").is_visible()

    context = chromium.new_context(base_url=live_server.url, java_script_enabled=False)
    try:
        context.add_cookies(page_on.context.cookies())
        page = context.new_page()
        page.goto("/studies/")
        row = page.locator(f'tr.study-row[data-id="{ct_study}"]')
        assert row.locator("[data-menu-button]").is_hidden()
        row.get_by_role("link", name="Share", exact=True).click()
        page.wait_for_url(f"**/shares/dialog/?study={ct_study}")
        assert page.locator("form.share-form").is_visible()

        page.go_back()
        page.locator(f'tr.study-row[data-id="{ct_study}"] a.patient-name').click()
        page.wait_for_url(f"**/studies/{ct_study}/")
    finally:
        context.close()
