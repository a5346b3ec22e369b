"""A clinician's path through the portal in a real browser: log in, find a patient's study in the
directory, copy its link from the context menu, open it and scroll through its images."""

from __future__ import annotations

import io
import re

import pytest

from studies.services.ingestion import ingest_files
from studies.synthetic import make_series, to_bytes
from tests.browser.conftest import ingest_ct_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STUDY_UID = "1.2.826.0.1.3680043.10.4242.1"
SCREENSHOTS = {
    "directory": "/tmp/portal-directory.png",
    "menu": "/tmp/portal-directory-menu.png",
    "copy_link": "/tmp/portal-copy-link.png",
    "viewer": "/tmp/portal-viewer.png",
}


@pytest.fixture
def ct_study(org, location):
    return ingest_ct_study(
        org, location, study_uid=STUDY_UID, patient_id="PID-4711", accession="ACC-4242", slices=8
    )


@pytest.fixture
def neighbours(org, location):
    """A few other patients, so the directory looks like a directory."""
    for index, (name, pid, description, modality) in enumerate(
        [
            ("Janssens^Els", "PID-1001", "MR Brain", "MR"),
            ("Dubois^Marc", "PID-1002", "CT Abdomen", "CT"),
            ("Peeters^An", "PID-1003", "CT Head", "CT"),
        ]
    ):
        datasets = make_series(
            patient_name=name,
            patient_id=pid,
            birth_date="19800101",
            sex="F",
            study_uid=f"1.2.826.0.1.3680043.10.4243.{index}",
            study_date=f"2024041{index}",
            study_description=description,
            accession=f"ACC-10{index}",
            modality=modality,
            series_number=1,
            series_description="Axial",
            slices=2,
            rows=32,
            columns=32,
            body_part="HEAD" if "Head" in description or "Brain" in description else "ABDOMEN",
        )
        ingest_files(
            files=[(f"{i}.dcm", io.BytesIO(to_bytes(ds))) for i, ds in enumerate(datasets)],
            organization=org,
            location=location,
        )


def frame_loaded(page) -> bool:
    return page.evaluate(
        "() => { const img = document.querySelector('[data-frame]');"
        " return img.complete && img.naturalWidth > 0; }"
    )


def test_find_copy_link_and_view_a_study(page_on, live_server, alice, ct_study, neighbours):
    page = page_on

    # Log in through the login page; the directory comes next.
    page.goto("/studies/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/studies/"))
    assert page.title().startswith("Patient Study Directory")
    assert page.locator("tr.study-row").count() == 4
    page.screenshot(path=SCREENSHOTS["directory"])

    # Search by name, without accents: the name stays out of the address bar.
    page.fill("input[name=q]", "muller")
    page.click(".search-panel button[type=submit]")
    page.wait_for_url(re.compile(r"/studies/\?s="))
    assert "muller" not in page.url.lower()
    rows = page.locator("tr.study-row")
    assert rows.count() == 1
    row = page.locator(f'tr.study-row[data-id="{ct_study}"]')
    assert "Hans Müller" in row.inner_text()

    # Right-click the row: the context menu from the server's registry, inside the viewport.
    row.click(button="right")
    menu = page.get_by_role("menu")
    menu.wait_for()
    items = menu.get_by_role("menuitem")
    assert items.all_inner_texts()[:3] == ["Open", "Share", "Copy Link"]
    assert row.get_attribute("aria-selected") == "true"
    box = menu.bounding_box()
    assert box["x"] >= 0 and box["y"] >= 0
    assert box["x"] + box["width"] <= 1440 and box["y"] + box["height"] <= 900

    # Keyboard: the menu has focus, arrows move, Escape closes and gives focus back.
    assert page.evaluate("document.activeElement.textContent") == "Open"
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.textContent") == "Share"
    page.keyboard.press("Escape")
    assert page.get_by_role("menu").count() == 0

    # Shift+F10 on the focused row opens it too.
    row.focus()
    page.keyboard.press("Shift+F10")
    page.get_by_role("menu").wait_for()
    page.screenshot(path=SCREENSHOTS["menu"])
    page.get_by_role("menuitem", name="Copy Link").click()

    dialog = page.locator("#copy-link-dialog")
    dialog.wait_for(state="visible")
    link = dialog.locator("input[data-copy-link-url]").input_value()
    assert link == f"{live_server.url}/studies/{ct_study}/"
    dialog.get_by_role("button", name="Copy", exact=True).click()
    page.wait_for_function(
        "() => document.querySelector('#copy-link-dialog [data-copy-status]').textContent.length"
    )
    assert "Copied" in dialog.locator("[data-copy-status]").inner_text()
    page.screenshot(path=SCREENSHOTS["copy_link"])
    try:
        clipboard = page.evaluate("navigator.clipboard.readText()")
    except Exception:
        clipboard = None
    if clipboard is not None:
        assert clipboard == link
    page.keyboard.press("Escape")
    assert not dialog.is_visible()

    # Open the link: the viewer, with its first frame painted.
    page.goto(link)
    assert page.title().startswith("Viewer")
    assert "Müller" not in page.title()
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-frame]');"
        " return img.complete && img.naturalWidth > 0; }"
    )
    counter = page.locator("[data-counter]")
    image = page.locator("[data-frame]")
    assert counter.inner_text() == "1 / 8"
    first_src = image.get_attribute("src")

    # The arrow key steps to the next frame.
    page.keyboard.press("ArrowDown")
    assert counter.inner_text() == "2 / 8"
    second_src = image.get_attribute("src")
    assert second_src != first_src
    page.wait_for_function("() => document.querySelector('[data-frame]').naturalWidth > 0")

    # So does the mouse wheel over the image.
    canvas = page.locator("[data-canvas]").bounding_box()
    page.mouse.move(canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2)
    page.mouse.wheel(0, 120)
    page.wait_for_function("() => document.querySelector('[data-counter]').textContent === '3 / 8'")
    assert image.get_attribute("src") not in (first_src, second_src)

    # End goes to the last frame; the slider follows.
    page.keyboard.press("End")
    assert counter.inner_text() == "8 / 8"
    assert page.locator("[data-slider]").input_value() == "8"
    page.keyboard.press("Home")
    page.keyboard.press("PageDown")
    assert counter.inner_text() == "2 / 8"

    # Dragging changes the window: the frame is requested again with ?window=center,width.
    cx, cy = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 80, cy - 30, steps=6)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('[data-frame]').src.includes('window=')")
    assert re.search(r"window=-?\d+,\d+", image.get_attribute("src"))
    assert "C " in page.locator("[data-window-readout]").inner_text()
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-frame]');"
        " return img.complete && img.naturalWidth > 0; }"
    )

    # A preset sets a known window.
    page.select_option("[data-window-preset]", value="-600,1500")
    page.wait_for_function(
        "() => document.querySelector('[data-frame]').src.includes('window=-600,1500')"
    )
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-frame]');"
        " return img.complete && img.naturalWidth > 0; }"
    )
    page.select_option("[data-window-preset]", value="")
    page.wait_for_function("() => !document.querySelector('[data-frame]').src.includes('window=')")
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-frame]');"
        " return img.complete && img.naturalWidth > 0; }"
    )
    page.screenshot(path=SCREENSHOTS["viewer"])
    assert frame_loaded(page)
    assert page.console_errors == []


@pytest.fixture
def note_item(settings):
    """A dialog item as another app would register it, served by tests/browser/dialog_urls."""
    from studies.menu import MenuItem, register_menu_item, unregister_menu_item

    settings.ROOT_URLCONF = "tests.browser.dialog_urls"
    item = MenuItem(
        key="test_note",
        label="Add note",
        applies_to={"study"},
        url_name="test_note_dialog",
        kind="dialog",
        order=40,
        multiple=True,
    )
    register_menu_item(item)
    yield item
    unregister_menu_item(item.key)


def test_dialog_items_load_submit_and_confirm_in_place(
    page_on, live_server, alice, neighbours, note_item
):
    page = page_on
    page.goto("/accounts/login/?next=/studies/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/studies/$"))

    rows = page.locator("tr.study-row")
    assert rows.count() == 3
    # Select two studies: a click, then Ctrl+click; the status line counts them.
    rows.nth(0).click()
    rows.nth(2).click(modifiers=["Control"])
    assert page.locator("[data-selection-status]").inner_text() == "2 studies selected"
    # Shift+click selects the range from the last clicked row; Ctrl+click toggles one row.
    selected = page.locator("tr.study-row[aria-selected=true]")
    rows.nth(1).click(modifiers=["Shift"])
    assert selected.count() == 2
    rows.nth(0).click()
    assert selected.count() == 1
    rows.nth(2).click(modifiers=["Shift"])
    assert selected.count() == 3
    rows.nth(1).click(modifiers=["Control"])
    assert selected.count() == 2

    # The Actions button opens the same menu; the item receives the whole selection.
    rows.nth(2).locator("[data-menu-button]").click()
    page.get_by_role("menuitem", name="Add note").click()
    dialog = page.locator("#remote-dialog")
    dialog.wait_for(state="visible")
    assert dialog.locator("[data-dialog-title]").inner_text() == "Add note"
    dialog.locator(".selected-count").wait_for()
    assert dialog.locator(".selected-count").inner_text() == "2 studies selected"

    # Submitting without a note re-renders the form with its error, inside the dialog.
    dialog.get_by_role("button", name="Save note").click()
    dialog.locator(".errors").wait_for()
    assert dialog.locator(".errors").inner_text() == "Write a note."
    assert "/studies/" in page.url and "test-dialogs" not in page.url

    dialog.locator("#note").fill("Discuss at tumour board")
    dialog.get_by_role("button", name="Save note").click()
    dialog.locator(".confirmation").wait_for()
    assert dialog.locator(".confirmation").inner_text() == "Noted for 2 studies."
    dialog.get_by_role("button", name="Copy", exact=True).click()
    page.wait_for_function(
        "() => document.querySelector('#remote-dialog [data-copy-status]').textContent.length"
    )
    assert dialog.locator("[data-copy-status]").inner_text() == "Copied."
    dialog.get_by_role("button", name="Done").click()
    assert not dialog.is_visible()
    # The browser logs the form's 400 answer; nothing else may have gone wrong.
    assert [e for e in page.console_errors if "400 (Bad Request)" not in e] == []
