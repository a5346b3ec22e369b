"""The main pages, checked by axe-core in a real browser (issue 15): the login page, the
directory, the study page, the Share and Send Link dialogs, a guest link's pages and the
administrator's audit trail have no violation axe rates "serious" or "critical".

axe-core is the version pinned in ``portal/management/commands/install_axe.py``, installed by
``make install`` and ``make test`` into var/axe-core (never fetched here). It is added to every
page of the browser context before the page's own scripts, through the browser's debugging
protocol, so the pages' Content-Security-Policy stays as served.
"""

from __future__ import annotations

import re

import pytest

from guestlinks.selectors import LinkTarget
from guestlinks.services.creation import LinkOptions, create_link
from portal import npm
from portal.management.commands import install_axe
from tests.browser.conftest import ingest_ct_study, log_in, log_in_verified
from tests.conftest import require_service

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STUDY_UID = "1.2.826.0.1.3680043.10.4343.15"
PASSWORD = "Tulip-4711"
SERIOUS = ("serious", "critical")


@pytest.fixture
def axe_source() -> str:
    folder = install_axe.axe_dir()
    require_service(
        npm.is_installed(install_axe.pinned(), folder),
        "axe-core is not installed (make axe, which needs npm)",
    )
    return (folder / "axe.min.js").read_text()


@pytest.fixture
def checked_page(page_on, axe_source):
    page_on.context.add_init_script(script=axe_source)
    return page_on


@pytest.fixture
def ct_study(org, location):
    return ingest_ct_study(
        org, location, study_uid=STUDY_UID, patient_id="PID-4715", accession="ACC-4315", slices=3
    )


@pytest.fixture(autouse=True)
def _site_url(settings, live_server):
    """Links are absolute addresses on the portal's SITE_URL: here, the live server."""
    settings.SITE_URL = live_server.url


def serious_violations(page) -> list[str]:
    """Each serious or critical violation axe finds on the page as it is now: its rule, its
    impact and the elements it names."""
    violations = page.evaluate(
        """async (impacts) => {
            const results = await axe.run(document, { resultTypes: ["violations"] });
            return results.violations
                .filter((violation) => impacts.includes(violation.impact))
                .map((violation) => ({
                    id: violation.id,
                    impact: violation.impact,
                    targets: violation.nodes.map((node) => node.target.join(" ")),
                }));
        }""",
        list(SERIOUS),
    )
    return [
        f"{violation['id']} ({violation['impact']}): {', '.join(violation['targets'])}"
        for violation in violations
    ]


def assert_accessible(page, name: str) -> None:
    found = serious_violations(page)
    assert not found, f"axe on the {name}:\n" + "\n".join(found)


def open_from_menu(page, study_uid: str, item: str):
    page.locator(f'tr.study-row[data-id="{study_uid}"]').click(button="right")
    page.get_by_role("menu").wait_for()
    page.get_by_role("menuitem", name=item).click()
    dialog = page.locator("#remote-dialog")
    dialog.locator("form").wait_for()
    return dialog


def test_a_clinicians_pages_have_no_serious_violation(checked_page, alice, ct_study):
    page = checked_page
    page.goto("/accounts/login/")
    assert_accessible(page, "login page")

    log_in(page)
    assert_accessible(page, "directory")

    share = open_from_menu(page, ct_study, "Share")
    assert_accessible(page, "Share dialog")
    share.get_by_role("button", name="Share", exact=True).click()
    share.locator(".form-errors").wait_for()
    assert_accessible(page, "Share dialog with errors")
    page.keyboard.press("Escape")

    send_link = open_from_menu(page, ct_study, "Send Link")
    assert_accessible(page, "Send Link dialog")
    send_link.get_by_role("button", name="Get Link").click()
    send_link.locator(".gl-ack.has-errors").wait_for()
    assert_accessible(page, "Send Link dialog with errors")
    page.keyboard.press("Escape")

    page.goto(f"/studies/{ct_study}/")
    page.locator("[data-frame]").wait_for()
    assert_accessible(page, "study page")


def test_a_guests_pages_have_no_serious_violation(checked_page, alice, ct_study):
    from studies.models import Study

    created = create_link(
        sender=alice,
        target=LinkTarget(study=Study.objects.get(study_uid=ct_study)),
        options=LinkOptions(password=PASSWORD, message="Please look at the left lower lobe."),
        acknowledged=True,
    )
    page = checked_page
    page.goto(created.url)
    assert_accessible(page, "guest link's password page")

    page.fill("input[name=password]", "wrong")
    page.get_by_role("button", name="Open study").click()
    page.locator(".errors").first.wait_for()
    assert_accessible(page, "guest link's password page with an error")

    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Open study").click()
    page.wait_for_url(re.compile(r"/l/studies/$"))
    assert_accessible(page, "guest's studies")
    page.get_by_role("link", name="Open").click()
    page.locator("[data-frame]").wait_for()
    assert_accessible(page, "guest's study page")


def test_the_audit_trail_has_no_serious_violation(checked_page, live_server, settings, dana):
    page = checked_page
    log_in_verified(page, dana, live_server.url)
    page.goto("/admin/audit/auditevent/")
    page.locator("#result_list, #changelist").first.wait_for()
    assert_accessible(page, "audit trail")
