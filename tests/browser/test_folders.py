"""Folders in a real browser: alice makes a folder from the Radiology worklist's menu, drags a CT
onto it, opens the folder, right-clicks it for Send Link (which says what the link opens), and
deletes it after confirming; the study stays in the worklist."""

from __future__ import annotations

import re

import pytest

from studies.models import Entry, Folder
from tests.browser.conftest import ingest_ct_study, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STUDY_UID = "1.2.826.0.1.3680043.10.4343.7"
OTHER_UID = "1.2.826.0.1.3680043.10.4343.8"


@pytest.fixture
def ct_studies(org, location):
    return [
        ingest_ct_study(org, location, study_uid=uid, patient_id=pid, accession=acc, slices=2)
        for uid, pid, acc in ((STUDY_UID, "PID-71", "ACC-71"), (OTHER_UID, "PID-72", "ACC-72"))
    ]


@pytest.fixture(autouse=True)
def _site_url(settings, live_server):
    settings.SITE_URL = live_server.url


def menu_item(page, target, name):
    target.click(button="right")
    page.get_by_role("menu").wait_for()
    page.get_by_role("menuitem", name=name).click()
    dialog = page.locator("#remote-dialog")
    dialog.wait_for(state="visible")
    dialog.locator("[data-dialog-content] form").first.wait_for()
    return dialog


def test_make_a_folder_drag_a_study_in_and_send_a_link_to_it(page_on, alice, location, ct_studies):
    page = page_on
    log_in(page)

    worklist_node = page.locator('.tree-node[data-menu-target="worklist"]', has_text="Radiology")
    dialog = menu_item(page, worklist_node, "New folder…")
    dialog.get_by_label("Folder name").fill("Tumour board")
    dialog.get_by_role("button", name="Create folder").click()
    page.wait_for_url(re.compile(r"/studies/\?folder=\d+$"))
    folder = Folder.objects.get(name="Tumour board")
    assert folder.worklist.location_id == location.pk
    assert "Tumour board" in page.locator("#directory-title + .scope").inner_text()

    # Back to every study: drag the first CT onto the folder in the side tree.
    page.goto("/studies/")
    row = page.locator(f'tr.study-row[data-id="{STUDY_UID}"]')
    folder_node = page.locator(f'.tree-node[data-drop-target="folder:{folder.pk}"]')
    with page.expect_navigation():
        row.drag_to(folder_node)
    entry = Entry.objects.get(worklist=folder.worklist, study__study_uid=STUDY_UID)
    assert entry.folder_id == folder.pk
    assert Entry.objects.get(study__study_uid=OTHER_UID).folder_id is None

    # The folder shows the study it holds, and only that one.
    folder_node.click()
    page.wait_for_url(re.compile(rf"folder={folder.pk}"))
    assert page.locator(f'tr.study-row[data-id="{STUDY_UID}"]').count() == 1
    assert page.locator(f'tr.study-row[data-id="{OTHER_UID}"]').count() == 0

    # Right-click the folder: Send Link says what a link to it would open.
    dialog = menu_item(page, folder_node, "Send Link")
    dialog.locator("form.gl-send-form").wait_for()
    assert re.search(r"1 study of 1 patient", dialog.inner_text())
    dialog.get_by_role("button", name="Close").first.click()

    # Delete the folder: asked first, and the study stays in the worklist.
    dialog = menu_item(page, folder_node, "Delete folder…")
    assert "Its study stays in the worklist" in dialog.inner_text()
    dialog.get_by_role("button", name="Delete folder").click()
    page.wait_for_url(re.compile(rf"/studies/\?worklist={folder.worklist_id}$"))
    assert not Folder.objects.exists()
    assert page.locator(f'tr.study-row[data-id="{STUDY_UID}"]').count() == 1
    assert page.console_errors == []


def test_move_to_folder_from_the_studies_menu(page_on, alice, location, ct_studies):
    from studies.services.folders import create_folder
    from studies.services.worklists import location_worklist

    folder = create_folder(user=alice, worklist=location_worklist(location), name="Teaching file")
    page = page_on
    log_in(page)
    page.locator(f'tr.study-row[data-id="{STUDY_UID}"]').click()
    page.locator(f'tr.study-row[data-id="{OTHER_UID}"]').click(modifiers=["Control"])
    dialog = menu_item(
        page, page.locator(f'tr.study-row[data-id="{OTHER_UID}"]'), "Move to folder…"
    )
    assert "2 studies selected" in dialog.inner_text()
    dialog.get_by_label("Move to").select_option(f"folder:{folder.pk}")
    dialog.get_by_role("button", name="Move").click()
    page.wait_for_url(re.compile(rf"folder={folder.pk}$"))
    assert Entry.objects.filter(folder=folder).count() == 2
    assert page.locator("tr.study-row").count() == 2
