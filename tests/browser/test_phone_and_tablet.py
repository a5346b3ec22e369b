"""Phones and tablets, measured at 390x844 and 1024x1366 with touch: the header's links are
reachable through its Menu button, the viewer shows the image first and a vertical swipe pages
through the images (two fingers change the window), and the directory's table fits a tablet."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import ingest_ct_study, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STUDY_UID = "1.2.826.0.1.3680043.10.4343.21"
PHONE = {"width": 390, "height": 844}
TABLET = {"width": 1024, "height": 1366}


@pytest.fixture
def ct_study(org, location):
    return ingest_ct_study(
        org, location, study_uid=STUDY_UID, patient_id="PID-21", accession="ACC-21", slices=8
    )


@pytest.fixture
def device(chromium, live_server):
    contexts = []

    def open_page(viewport):
        context = chromium.new_context(
            base_url=live_server.url,
            viewport=viewport,
            has_touch=True,
            is_mobile=viewport["width"] < 600,
            locale="en-GB",
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.console_errors = []
        page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
        return page

    yield open_page
    for context in contexts:
        context.close()


def in_viewport(page, locator) -> bool:
    box = locator.bounding_box()
    size = page.viewport_size
    return (
        box is not None
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= size["width"]
        and box["y"] + box["height"] <= size["height"]
    )


def test_the_phone_header_folds_its_links_behind_a_menu(device, alice, ct_study):
    page = device(PHONE)
    log_in(page)
    toggle = page.get_by_role("button", name="Menu")
    assert toggle.is_visible() and in_viewport(page, toggle)
    assert toggle.get_attribute("aria-expanded") == "false"
    shares = page.get_by_role("link", name="Shares")
    assert not shares.is_visible()

    toggle.tap()
    assert toggle.get_attribute("aria-expanded") == "true"
    password = page.get_by_role("link", name="Password")
    log_out = page.get_by_role("button", name="Log out")
    for item in (shares, password, log_out):
        assert item.is_visible() and in_viewport(page, item)
    # Nothing of the page is pushed sideways off the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    page.keyboard.press("Escape")
    assert toggle.get_attribute("aria-expanded") == "false"
    toggle.tap()
    shares.tap()
    page.wait_for_url(re.compile(r"/shares/$"))
    assert page.console_errors == []


def swipe(cdp, start: list[tuple[float, float]], dy: float, dx: float = 0, steps: int = 8):
    def send(kind, points):
        cdp.send(
            "Input.dispatchTouchEvent",
            {
                "type": kind,
                "touchPoints": [{"x": x, "y": y, "id": n} for n, (x, y) in enumerate(points)],
            },
        )

    send("touchStart", start)
    for i in range(1, steps + 1):
        send("touchMove", [(x + dx * i / steps, y + dy * i / steps) for x, y in start])
    send("touchEnd", [])


def test_the_phone_viewer_shows_the_image_first_and_a_swipe_pages(device, alice, ct_study):
    page = device(PHONE)
    log_in(page)
    page.goto(f"/studies/{STUDY_UID}/")
    frame = page.locator("[data-frame]")
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-frame]');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    box = page.locator("[data-canvas]").bounding_box()
    # The image starts on the first screen, with most of it visible.
    assert box["y"] < PHONE["height"] / 2
    assert box["y"] + box["height"] / 2 < PHONE["height"]
    counter = page.locator("[data-counter]")
    readout = page.locator("[data-window-readout]")
    assert counter.inner_text() == "1 / 8"
    window_before = readout.inner_text()

    cdp = page.context.new_cdp_session(page)
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.75
    swipe(cdp, [(x, y)], dy=-40)  # up: next images, about three
    page.wait_for_function("() => document.querySelector('[data-counter]').textContent !== '1 / 8'")
    after_up = int(counter.inner_text().split(" / ")[0])
    assert after_up > 1
    assert readout.inner_text() == window_before  # the window did not change
    swipe(cdp, [(x, y - 60)], dy=30)  # down: back
    assert int(counter.inner_text().split(" / ")[0]) < after_up
    assert frame.get_attribute("src")

    # Two fingers change the window, and leave the image where it is.
    shown = counter.inner_text()
    swipe(cdp, [(x - 40, y - 40), (x + 40, y - 40)], dy=-30, dx=60)
    page.wait_for_function(
        "(before) => document.querySelector('[data-window-readout]').textContent !== before",
        arg=window_before,
    )
    assert counter.inner_text() == shown
    assert page.console_errors == []


def test_the_directory_fits_a_tablet(device, alice, ct_study):
    page = device(TABLET)
    log_in(page)
    table = page.locator(".table-wrap")
    widths = table.evaluate("(el) => [el.scrollWidth, el.clientWidth]")
    assert widths[0] <= widths[1], widths
    assert page.evaluate("document.documentElement.scrollWidth") <= TABLET["width"]
    # What is folded is still there, under the patient's name.
    row = page.locator(f'tr.study-row[data-id="{STUDY_UID}"]')
    assert "PID-21" in row.locator(".folded-facts").inner_text()
    assert row.locator(".col-accession").is_hidden()
    assert row.locator(".col-date").is_visible() and row.locator(".col-description").is_visible()
