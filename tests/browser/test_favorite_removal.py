"""Issue 11: alice removes a favorite in the Share dialog. It disappears at once (the script asks
the REST API, no form post), and it is still gone when she opens the dialog again."""

from __future__ import annotations

import re

import pytest

from sharing.models import Favorite
from tests.browser.conftest import ingest_ct_study, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STUDY_UID = "1.2.826.0.1.3680043.10.4545.31"
SCREENSHOT = "/tmp/portal-favorite-removed.png"


def open_share_dialog(page):
    page.locator(f'tr.study-row[data-id="{STUDY_UID}"]').click(button="right")
    page.get_by_role("menu").wait_for()
    page.get_by_role("menuitem", name="Share", exact=True).click()
    form = page.locator("#remote-dialog form.share-form")
    form.wait_for()
    form.get_by_role("button", name="Favorites", exact=True).click()
    favorites = form.locator("[data-share-favorites]")
    favorites.wait_for(state="visible")
    return form, favorites


def test_a_removed_favorite_disappears_and_stays_gone(
    page_on, live_server, org, location, alice, bob, group
):
    ingest_ct_study(
        org, location, study_uid=STUDY_UID, patient_id="PID-4631", accession="ACC-4631", slices=1
    )
    Favorite.objects.create(owner=alice, kind="user", user=bob)
    Favorite.objects.create(owner=alice, kind="group", group=group)
    page = page_on
    log_in(page, "alice")
    posts = []
    page.on(
        "request",
        lambda request: posts.append(request.url) if request.method == "POST" else None,
    )

    form, favorites = open_share_dialog(page)
    bob_item = favorites.locator("[data-share-favorite]", has_text="Bob Tester")
    assert bob_item.count() == 1
    with page.expect_response(re.compile(r"/api/v1/favorites/\d+/$")) as answer:
        favorites.get_by_role("button", name="Remove Bob Tester from favorites").click()
    assert answer.value.status == 204
    bob_item.wait_for(state="detached")
    assert favorites.locator("[data-share-favorite]").count() == 1
    assert "Neuroradiology" in favorites.inner_text()
    # Focus moves on to the next favorite's remove button, and the change is announced.
    focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused == "Remove Neuroradiology from favorites"
    status = favorites.locator("[data-share-favorites-status]")
    assert status.text_content() == "Removed from your favorites."
    assert posts == []  # no form post: the REST API did it
    page.screenshot(path=SCREENSHOT)
    assert not Favorite.objects.filter(owner=alice, user=bob).exists()

    form.get_by_role("link", name="Cancel").click()
    page.locator("#remote-dialog").wait_for(state="hidden")

    form, favorites = open_share_dialog(page)
    assert "Bob Tester" not in favorites.inner_text()
    assert favorites.get_by_role("button", name="Remove Neuroradiology from favorites").count() == 1
    assert page.console_errors == []
