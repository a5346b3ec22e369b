"""Issue 13's viewer goal in Chromium: a 200-slice CT series scrolled end to end, one arrow key
per slice, in at most 5 seconds; every frame asked of the server once (JPEG, versioned, kept by
the browser), the first one included."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.browser.conftest import ingest_ct_study, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STUDY_UID = "1.2.826.0.1.3680043.10.4343.200"
SLICES = 200
SECONDS_ALLOWED = 5.0


@pytest.fixture
def long_series(org, location):
    return ingest_ct_study(
        org,
        location,
        study_uid=STUDY_UID,
        patient_id="PID-200",
        accession="ACC-200",
        slices=SLICES,
        size=256,
    )


def test_a_200_slice_series_scrolls_end_to_end_within_five_seconds(page_on, alice, long_series):
    page = page_on
    asked: Counter[str] = Counter()
    types: set[str] = set()

    def on_response(response):
        if "/rendered" in response.url:
            asked[response.url] += 1
            types.add(response.headers.get("content-type", ""))

    page.on("response", on_response)
    log_in(page)
    page.goto(f"/studies/{STUDY_UID}/")
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-frame]');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    page.locator("[data-canvas]").focus()

    started = time.monotonic()
    for number in range(2, SLICES + 1):
        page.keyboard.press("ArrowDown")
        page.wait_for_function(
            "(n) => { const c = document.querySelector('[data-counter]');"
            " const i = document.querySelector('[data-frame]');"
            " return c.textContent.startsWith(n + ' /') && i.complete && i.naturalWidth > 0; }",
            arg=number,
        )
    elapsed = time.monotonic() - started
    print(f"scrolled {SLICES} slices in {elapsed:.2f} s")

    assert page.locator("[data-counter]").inner_text() == f"{SLICES} / {SLICES}"
    assert elapsed <= SECONDS_ALLOWED, f"{SLICES} slices took {elapsed:.1f} s"
    # Every slice's frame was asked for, each once: no second fetch of the first frame, none
    # of a frame the background fetch had already brought.
    assert len(asked) == SLICES
    assert max(asked.values()) == 1, [url for url, n in asked.items() if n > 1][:3]
    assert types == {"image/jpeg"}
    assert page.console_errors == []
