"""The walk of issue 12 in a real browser, in Dutch and once in French: the directory, Send Link,
Share, the viewer, the Shares page, the admin's revocation and the guest's landing page show no
English sentence and write every date as dd/mm/yyyy, read after the scripts ran (the texts they
add: selection count, loading and error texts, readout, search answers, "copied" statuses).
tests/portal/test_pages_in_every_language.py reads the same pages as served, with the same
detectors."""

from __future__ import annotations

import contextlib
import re
from datetime import date, timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from guestlinks.models import GuestLink
from sharing.models import Share
from studies.models import Study
from tests.browser.conftest import ingest_ct_study, log_in, log_in_verified
from tests.guestlinks.conftest import link_path, make_link  # noqa: F401 - a fixture
from tests.portal.test_pages_in_every_language import (
    ENGLISH,
    ISO_DATE,
    SLASHED_DATE,
    without_data,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FIRST_UID = "1.2.826.0.1.3680043.10.5151.1"
SECOND_UID = "1.2.826.0.1.3680043.10.5151.2"
STUDY_DATE = date(2024, 5, 17)  # ingest_ct_study's study, of Hans Müller born 12/04/1958
BIRTH_DATE = date(1958, 4, 12)
REASON = "Tweede advies"  # what alice and dana type: data, not the page's text
# The study's and the people's own data (names and descriptions stay as recorded) and the
# portal's name: not the page's language.
DATA = (
    settings.SITE_NAME,
    "Müller",
    "Hans",
    "CT Thorax",
    "Axial 5mm",
    "Alice Tester",
    "Bob Tester",
    "Dana Tester",
    "St. Elsewhere Hospital",
    "Radiology",
    REASON,
)
# Words ENGLISH does not know, of the scripts' short texts ("Loading…", "Default", "Copied.") and
# of the admin's names of things ("Users", "Created by"): a line with one is English too.
MORE_ENGLISH = re.compile(
    r"\b(loading|default|copied|copying|users|groups|roles|locations|memberships|trail|"
    r"created|expires|opens|entries|reports)\b",
    re.IGNORECASE,
)
# A date with its month spelled ("17 May 2024", "17 mei 2024"): not how nl and fr write dates.
SPELLED_DATE = re.compile(r"\b\d{1,2}\.? [^\W\d_]{3,}\.? \d{4}\b")
# What a script of the page shows, or the browser reads aloud, of the elements on screen.
_READ_ALOUD_JS = """(scope) => {
  const root = document.querySelector(scope);
  const shown = (el) => el.checkVisibility({ visibilityProperty: true });
  const said = [];
  for (const el of root.querySelectorAll(
    "[aria-label], [title], [placeholder], [alt], [aria-roledescription], [aria-valuetext]"
  )) {
    if (!shown(el)) continue;
    for (const name of ["aria-label", "title", "placeholder", "alt", "aria-roledescription",
                        "aria-valuetext"]) {
      if (el.getAttribute(name)) said.push(el.getAttribute(name));
    }
  }
  for (const el of root.querySelectorAll("input[type=submit], input[type=button]")) {
    if (shown(el)) said.push(el.value);
  }
  return said;
}"""


@pytest.fixture(autouse=True)
def _site_url(settings, live_server):
    """Links are absolute addresses on the portal's SITE_URL: here, the live server."""
    settings.SITE_URL = live_server.url


@pytest.fixture
def new_page(chromium, live_server):
    """A browser of another person (no cookies), in an English browser: the portal's language
    must win over the browser's."""
    contexts = []

    def open_page():
        context = chromium.new_context(
            base_url=live_server.url, viewport={"width": 1440, "height": 900}, locale="en-GB"
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield open_page
    for context in contexts:
        context.close()


def visible_lines(page, scope: str = "body") -> list[str]:
    """What a reader sees or hears of ``scope`` now: its rendered text (scripts' texts included,
    hidden elements and input values not), the labels read aloud of the elements shown, and the
    page's title; without the portal's name and the study's data."""
    texts = [
        page.title(),
        *page.inner_text(scope).split("\n"),
        *page.evaluate(_READ_ALOUD_JS, scope),
    ]
    return without_data(texts, DATA)


def assert_reads_as(language: str, walk: dict[str, tuple[list[str], list[date]]]) -> None:
    """Every page of the walk without an English line or a date written otherwise than
    dd/mm/yyyy, and with its known dates in that form. One failure lists every page's findings."""
    findings = []
    for name, (lines, dates) in walk.items():
        for line in lines:
            if ENGLISH.search(line) or MORE_ENGLISH.search(line):
                findings.append(f"[{language}] {name}: English: {line!r}")
            for bad in (ISO_DATE, SPELLED_DATE):
                if bad.search(line):
                    findings.append(f"[{language}] {name}: date not dd/mm/yyyy: {line!r}")
        written = {found for line in lines for found in SLASHED_DATE.findall(line)}
        for day in dates:
            if f"{day:%d/%m/%Y}" not in written:
                findings.append(f"[{language}] {name}: {day:%d/%m/%Y} is not on the page")
    assert not findings, "\n" + "\n".join(findings)


def menu_item(page, row, key: str) -> None:
    """Right-click ``row`` and pick the item ``key`` of the context menu (labels are translated,
    keys are not)."""
    row.click(button="right")
    page.locator(f'.context-menu [role=menuitem][data-key="{key}"]').click()


@contextlib.contextmanager
def requests_held(page, pattern: re.Pattern):
    """Requests matching ``pattern`` wait, unanswered, until the block ends; then they fail as
    a broken connection does. Yields a function that waits until one is held."""
    held = []
    page.route(pattern, lambda route: held.append(route))

    def one_held() -> None:
        for _ in range(500):
            if held:
                return
            page.wait_for_timeout(20)
        raise AssertionError(f"no request to {pattern.pattern} was sent")

    try:
        yield one_held
    finally:
        for route in held:
            route.abort()
        page.unroute(pattern)


def wait_for_text(page, selector: str) -> None:
    page.wait_for_function(
        "(s) => { const el = document.querySelector(s); return el && el.textContent.trim(); }",
        arg=selector,
    )


def local_day(moment) -> date:
    return timezone.localtime(moment).date()


@pytest.mark.parametrize("language", ["nl", "fr"])
def test_the_walk_reads_in_the_language_after_the_scripts_ran(
    page_on,
    new_page,
    live_server,
    language,
    alice,
    bob,
    dana,
    org,
    location,
    make_link,  # noqa: F811
):
    for uid, accession in ((FIRST_UID, "ACC-5151"), (SECOND_UID, "ACC-5152")):
        ingest_ct_study(
            org, location, study_uid=uid, patient_id="PID-5151", accession=accession, slices=3
        )
    for user in (alice, dana):
        user.language = language
        user.save(update_fields=["language"])
    guest_link, token = make_link(
        Study.objects.get(study_uid=FIRST_UID),
        password="Tulip-4711",
        max_password_attempts=3,
        expires_in=timedelta(days=7),
        language=language,
    )
    walk: dict[str, tuple[list[str], list[date]]] = {}
    page = page_on
    log_in(page)

    # The directory, two studies selected: the script counts them.
    rows = page.locator("tr.study-row")
    rows.nth(0).click()
    rows.nth(1).click(modifiers=["Control"])
    wait_for_text(page, "[data-selection-status]")
    walk["directory"] = (visible_lines(page), [STUDY_DATE, BIRTH_DATE])
    rows.nth(1).click(button="right")
    page.locator(".context-menu").wait_for()
    walk["directory, context menu"] = (visible_lines(page, ".context-menu"), [STUDY_DATE])
    page.keyboard.press("Escape")
    menu_item(page, rows.nth(1), "copy_link")
    page.locator("#copy-link-dialog [data-copy-from]").click()
    wait_for_text(page, "#copy-link-dialog [data-copy-status]")
    walk["directory, Copy Link"] = (visible_lines(page, "#copy-link-dialog"), [STUDY_DATE])
    page.keyboard.press("Escape")

    # Send Link: first while its form is on its way, then when it cannot come.
    dialog = page.locator("#remote-dialog")
    send_link_url = re.compile(re.escape(reverse("guestlinks:dialog")))
    with requests_held(page, send_link_url) as one_held:
        menu_item(page, rows.nth(1), "send_link")
        dialog.wait_for(state="visible")
        one_held()
        walk["Send Link, loading"] = (visible_lines(page, "#remote-dialog"), [])
    page.wait_for_function(
        "() => !document.querySelector('#remote-dialog [data-dialog-content].loading')"
    )
    walk["Send Link, not available"] = (visible_lines(page, "#remote-dialog"), [])
    dialog.locator("[data-dialog-close]").first.click()

    # Send Link: the form, its errors, the link made and copied.
    menu_item(page, rows.nth(1), "send_link")
    form = dialog.locator("form.gl-send-form")
    form.wait_for()
    walk["Send Link form"] = (visible_lines(page, "#remote-dialog"), [])
    form.locator("button[type=submit]").click()
    dialog.locator(".gl-ack.has-errors").wait_for()
    walk["Send Link form, refused"] = (visible_lines(page, "#remote-dialog"), [])
    dialog.locator("input[name=acknowledged]").check()
    dialog.locator("form.gl-send-form button[type=submit]").click()
    dialog.locator("[data-link-created]").wait_for()
    dialog.locator('[data-copy-from="#get-link-url"]').click()
    wait_for_text(page, "#remote-dialog [data-copy-status]")
    sent_link = GuestLink.objects.exclude(pk=guest_link.pk).get()
    walk["Send Link, link made"] = (
        visible_lines(page, "#remote-dialog"),
        [local_day(sent_link.expires_at)],
    )
    dialog.locator("[data-link-created] [data-dialog-close]").click()

    # Share: nobody found, then bob; shared and copied.
    menu_item(page, rows.nth(1), "share")
    form = dialog.locator("form.share-form")
    form.wait_for()
    query = form.locator('input[name="recipient-0-text"]')
    query.fill("Zzyzx")
    form.locator("[data-share-results] .share-no-results").wait_for()
    walk["Share form, no recipient found"] = (visible_lines(page, "#remote-dialog"), [])
    query.fill("RIZIV-1002")
    form.locator("[data-share-results] [data-share-pick]").first.click()
    form.locator("[name=reason]").fill(REASON)
    form.locator("input[name=patient_agreed]").check()
    form.locator("[data-share-submit]").click()
    done = dialog.locator("[data-share-done]")
    done.wait_for()
    done.locator("[data-copy-from]").click()
    wait_for_text(page, "#remote-dialog [data-copy-status]")
    valid_until = Share.objects.get().valid_until
    walk["Share, shared"] = (visible_lines(page, "#remote-dialog"), [STUDY_DATE, valid_until])
    done.locator("[data-dialog-close]").click()

    # The Shares page.
    page.goto(reverse("sharing:shares"))
    walk["Shares"] = (visible_lines(page), [valid_until])

    # The viewer: the image shown, the readout written, the guest links listed and one copied.
    page.goto(reverse("studies:study", args=[FIRST_UID]))
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-frame]');"
        " return img.complete && img.naturalWidth > 0; }"
    )
    wait_for_text(page, "[data-window-readout]")
    walk["viewer"] = (visible_lines(page), [STUDY_DATE, BIRTH_DATE])
    page.locator("[data-guest-links-open]").click()
    panel = page.locator("#guest-links-dialog")
    panel.wait_for(state="visible")
    panel.locator(".gl-link [data-copy-from]").first.click()
    wait_for_text(page, "#guest-links-dialog [data-copy-status]")
    walk["viewer, guest links"] = (
        visible_lines(page, "#guest-links-dialog"),
        [local_day(guest_link.expires_at), local_day(sent_link.expires_at)],
    )
    panel.locator("[data-dialog-close]").first.click()
    # Another window: the image takes its time, then does not come.
    windowed = re.compile(r"[?&]window=")
    with requests_held(page, windowed) as one_held:
        page.locator("[data-window-preset]").select_option(index=1)
        one_held()
        wait_for_text(page, "[data-status]")
        walk["viewer, image loading"] = (visible_lines(page, ".stage"), [])
        loading = page.locator("[data-status]").inner_text()
    page.wait_for_function(
        "(loading) => document.querySelector('[data-status]').textContent.trim() !== loading",
        arg=loading,
    )
    walk["viewer, image failed"] = (visible_lines(page, ".stage"), [])

    # The guest's landing page, in the link's language (the browser asks for English).
    guest = new_page()
    guest.goto(link_path(token))
    walk["guest landing"] = (visible_lines(guest), [])
    guest.fill("input[name=password]", "not-the-password")
    guest.locator("form.guest-form button[type=submit]").click()
    guest.locator("form.guest-form [role=alert], form.guest-form .errors").first.wait_for()
    walk["guest landing, wrong password"] = (visible_lines(guest), [])

    # The administrator revokes the guest's link in the admin (her session passed the code).
    admin = new_page()
    log_in_verified(admin, dana, live_server.url)
    admin.goto(reverse("admin:guestlinks_guestlink_changelist"))
    admin.locator(f'input.action-select[value="{guest_link.pk}"]').check()
    wait_for_text(admin, ".action-counter")
    expiries = [local_day(guest_link.expires_at), local_day(sent_link.expires_at)]
    walk["admin, guest links"] = (visible_lines(admin), expiries)
    admin.select_option("select[name=action]", "revoke_selected")
    admin.locator(".actions button[type=submit]").click()
    admin.locator("textarea[name=reason]").fill(REASON)
    walk["admin, revoke"] = (visible_lines(admin), [local_day(guest_link.created_at)])
    admin.locator(".submit-row input[type=submit]").click()
    admin.locator(".messagelist .success").wait_for()
    walk["admin, revoked"] = (visible_lines(admin), expiries)

    # The guest's link no longer opens, and says so in the link's language.
    guest.goto(link_path(token))
    walk["guest landing, link revoked"] = (visible_lines(guest), [])

    assert_reads_as(language, walk)
