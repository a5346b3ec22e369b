"""Issue 14's acceptance in Chromium, with the real OHIF (``make ohif`` installs it): studies open
in OHIF on its own origin, read through the portal's DICOMweb with a viewer token, and nothing
else.

The portal is pytest-django's live server; OHIF's origin is ``viewers.ohif`` served by a
threaded WSGI server on another port of 127.0.0.1, as ``make run`` serves it with gunicorn."""

from __future__ import annotations

import io
import re
import socketserver
import threading
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.conf import settings as django_settings
from PIL import Image

from guestlinks.models import GuestLink
from guestlinks.selectors import LinkTarget
from guestlinks.services.creation import LinkOptions, create_link
from sharing.services.shares import remove_share
from studies.anonymize import pseudonym
from studies.models import Series, Study
from tests.browser.conftest import ingest_ct_study, log_in
from tests.conftest import require_service
from tests.dicomweb.test_qido import add_structured_report
from tests.sharing.conftest import share
from viewers.ohif import OhifApplication

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STUDY_UID = "1.2.826.0.1.3680043.10.4343.14"
PRIOR_UID = "1.2.826.0.1.3680043.10.4343.13"
LINK_PASSWORD = "Tulip-Harbour-42"
# OHIF's first load (its bundles, WebAssembly decoders) on a busy CI machine.
OHIF_SECONDS = 45


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def ohif(live_server, settings):
    """OHIF's origin for the live portal; the portal knows it as OHIF_URL."""
    dist = django_settings.OHIF_DIR
    require_service(
        (dist / "index.html").is_file(),
        f"OHIF is not installed in {dist}: run `make ohif` (needs npm)",
    )
    application = OhifApplication(dist, portal_url=live_server.url, max_requests=8)
    server = make_server(
        "127.0.0.1", 0, application, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # The live server is "localhost": OHIF there too, the same site as a real installation's
    # subdomains (its page renews the token with the portal session's cookie).
    settings.OHIF_URL = f"http://localhost:{server.server_port}"
    try:
        yield settings.OHIF_URL
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ct_study(org, location) -> Study:
    ingest_ct_study(
        org, location, study_uid=STUDY_UID, patient_id="PID-14", accession="ACC-14", slices=12
    )
    study = Study.objects.get(study_uid=STUDY_UID)
    assert Series.objects.filter(study=study).count() == 1
    return study


def watch(page) -> dict:
    """What a page does: its console errors and every host it asks."""
    seen = {"errors": [], "hosts": set()}
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    page.on("request", lambda request: seen["hosts"].add(urlsplit(request.url).hostname))
    return seen


def shows_an_image(page) -> bool:
    """OHIF's viewport, as the screen shows it, is not one uniform colour."""
    shot = page.locator('[data-cy="viewport-pane"]').first.screenshot()
    image = Image.open(io.BytesIO(shot)).convert("L")
    low, high = image.getextrema()
    return high - low > 64


def wait_for_the_series(ohif_page) -> None:
    """OHIF lists the study's series and shows the first of the 12 slices."""
    ohif_page.wait_for_selector('[data-cy="study-browser-thumbnail"]', timeout=OHIF_SECONDS * 1000)
    ohif_page.wait_for_selector('[data-cy="viewport-pane"] canvas', timeout=OHIF_SECONDS * 1000)
    ohif_page.wait_for_function(
        "() => document.querySelector('[data-cy=\"viewport-overlay-bottom-right\"]')"
        "?.textContent.includes('/12')",
        timeout=OHIF_SECONDS * 1000,
    )


def ohif_addresses(context) -> list[str]:
    """The addresses OHIF is opened at in this context (it takes the token out of its address
    once it has read it)."""
    addresses: list[str] = []
    context.on("request", lambda r: addresses.append(r.url) if "token=vt_" in r.url else None)
    return addresses


def open_in_ohif(context, page, button: str = "[data-open-in-ohif]"):
    """Click the study page's "Open in OHIF"; OHIF's page, with the address it was opened at
    as ``opened_at``."""
    addresses = ohif_addresses(context)
    with context.expect_page() as opened:
        page.click(button)
    ohif_page = opened.value
    ohif_page.set_default_timeout(OHIF_SECONDS * 1000)
    ohif_page.wait_for_load_state()
    assert len(addresses) == 1, addresses
    ohif_page.opened_at = addresses[0]
    return ohif_page


def test_alice_opens_a_ct_in_ohif_from_the_directory_menu(
    page_on, live_server, alice, ct_study, ohif
):
    page = page_on
    addresses = ohif_addresses(page.context)
    log_in(page)
    # The portal's own pages keep their strict policy.
    directory = page.goto("/studies/")
    policy = directory.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe" not in policy

    page.locator(f'tr.study-row[data-id="{STUDY_UID}"]').click(button="right")
    page.get_by_role("menu").wait_for()
    page.get_by_role("menuitem", name="Open in OHIF").click()
    dialog = page.locator("#remote-dialog")
    dialog.wait_for(state="visible")
    dialog.locator("form[action$='/viewers/ohif/']").wait_for()
    assert "Open this study in OHIF" in dialog.inner_text()
    assert "CT Thorax" in dialog.inner_text()
    seen = watch(page)
    dialog.get_by_role("button", name="Open in OHIF").click()
    page.wait_for_url(re.compile(rf"^{re.escape(ohif)}/viewer"))
    wait_for_the_series(page)

    assert len(addresses) == 1
    assert addresses[0].startswith(f"{ohif}/viewer?StudyInstanceUIDs={STUDY_UID}&token=vt_")
    series_shown = page.locator('[data-cy="study-browser-thumbnail"]').count()
    assert series_shown == Series.objects.filter(study__study_uid=STUDY_UID).count()
    assert shows_an_image(page)
    assert seen["errors"] == []

    # Halfway through the token's life OHIF's page asks the portal for a new one, with the
    # session that opened it; OHIF then reads with it, and the old one has ended.
    before = header_in_use(page)
    assert page.evaluate("window.portalRenewToken()") is True
    after = header_in_use(page)
    assert after != before and after.startswith("Bearer vt_")
    read = "([url, h]) => fetch(url, {headers: {Authorization: h}}).then(r => r.status)"
    studies = f"{live_server.url}/dicomweb/studies"
    assert page.evaluate(read, [studies, after]) == 200
    assert page.evaluate(read, [studies, before]) == 401
    assert seen["hosts"] <= {"127.0.0.1", "localhost"}


def header_in_use(page) -> str:
    """The Authorization header OHIF sends now."""
    return page.evaluate(
        "() => window.services.userAuthenticationService.getAuthorizationHeader().Authorization"
    )


def test_a_guest_opens_ohif_and_it_stops_with_the_link(
    page_on, org, location, alice, ct_study, ohif
):
    # The same patient's earlier study, which this link does not include.
    ingest_ct_study(
        org, location, study_uid=PRIOR_UID, patient_id="PID-14", accession="ACC-13", slices=2
    )
    created = create_link(
        sender=alice,
        target=LinkTarget(study=ct_study),
        options=LinkOptions(password=LINK_PASSWORD),
        acknowledged=True,
    )
    page = page_on
    page.goto(f"/l/{created.token}")
    page.fill("input[name=password]", LINK_PASSWORD)
    page.click("form.guest-form button[type=submit]")
    page.wait_for_url(re.compile(rf"/studies/{STUDY_UID}/$"))
    # From the list of the studies this browser holds, as a worklist link's guest sees it.
    page.goto("/l/studies/")
    searches = study_searches(page.context)

    ohif_page = open_in_ohif(
        page.context, page, f'form:has(input[value="{STUDY_UID}"]) [data-open-in-ohif]'
    )
    seen = watch(ohif_page)
    wait_for_the_series(ohif_page)
    assert shows_an_image(ohif_page)
    assert seen["errors"] == []
    # OHIF asked for the patient's other studies and was told of this one alone.
    by_patient = [body for url, body in searches if "00100020=" in url or "PatientID=" in url]
    assert by_patient and all(STUDY_UID in body for body in by_patient)
    assert not any(PRIOR_UID in body for _url, body in searches)
    address = ohif_page.opened_at
    # Before: the same address reads the study.
    assert dicomweb_answers(ohif_page.context, address) == {200}

    GuestLink.objects.all().delete()

    # OHIF's next requests are refused: opened again, it reads nothing.
    assert dicomweb_answers(ohif_page.context, address) == {401}
    # A copied address without its token reads nothing either.
    assert dicomweb_answers(ohif_page.context, re.sub(r"&token=[^&]+", "", address)) == {401}


def study_searches(context) -> list[tuple[str, str]]:
    """The study searches (QIDO-RS) pages of this context make from now on, and their answers."""
    found: list[tuple[str, str]] = []
    context.on(
        "response",
        lambda r: found.append((r.url, r.text())) if "/dicomweb/studies?" in r.url else None,
    )
    return found


def dicomweb_answers(context, address: str) -> set[int]:
    """The statuses of the portal's DICOMweb answers to OHIF opened at ``address``."""
    answers: list[int] = []
    page = context.new_page()
    page.on("response", lambda r: answers.append(r.status) if "/dicomweb/" in r.url else None)
    page.goto(address)
    page.wait_for_timeout(3000)
    page.close()
    assert answers, "OHIF asked the portal nothing"
    return set(answers)


def test_carol_reads_an_anonymized_share_in_ohif_until_it_is_removed(
    page_on, org, location, alice, carol, ct_study, ohif
):
    add_structured_report(org, location, ct_study)
    made = share(alice, ct_study, ("user", carol.pk), anonymize=True)
    alias = pseudonym(ct_study)
    page = page_on
    addresses = ohif_addresses(page.context)
    bodies: list[str] = []
    page.context.on(
        "response",
        lambda r: (
            bodies.append(r.text())
            if "/dicomweb/" in r.url and "json" in r.headers.get("content-type", "")
            else None
        ),
    )
    log_in(page, "carol")

    # The share's row in her directory, through its Actions button.
    page.locator(f'tr.study-row[data-id="{STUDY_UID}"] [data-menu-button]').click()
    page.get_by_role("menuitem", name="Open in OHIF").click()
    dialog = page.locator("#remote-dialog")
    dialog.locator("form[action$='/viewers/ohif/']").wait_for()
    dialog.get_by_role("button", name="Open in OHIF").click()
    wait_for_the_series(page)
    assert shows_an_image(page)

    # No report: OHIF lists the images' series alone (the study holds a structured report too).
    assert Series.objects.filter(study=ct_study).count() == 2
    assert page.locator('[data-cy="study-browser-thumbnail"]').count() == 1
    # What OHIF was told about the patient is the pseudonym, never who it is.
    told = "\n".join(bodies)
    assert alias.patient_id in told
    for real in ("Müller", "Hans", "PID-14", "ACC-14", "19580412"):
        assert real not in told, real

    assert remove_share(user=alice, share=made) is True

    assert dicomweb_answers(page.context, addresses[0]) == {401}
