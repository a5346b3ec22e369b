"""An organization's administrator in a real browser: dana opens the admin, adds a colleague with
the Clinician role in her hospital, and finds him in her user list with that membership; she is
offered no other organization."""

from __future__ import annotations

import re

import pytest

from accounts.models import User
from tests.browser.conftest import log_in_verified

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_dana_adds_a_colleague_with_a_role(
    page_on, live_server, settings, dana, org, clinician_role
):
    from accounts.models import Organization

    Organization.objects.create(name="Riverside Clinic", kind="clinic")
    # Dana's session passed the password and the one-time code (the admin requires both).
    page = page_on
    log_in_verified(page, dana, live_server.url)
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto("/admin/")
    page.get_by_role("link", name="Users").first.click()
    page.wait_for_url(re.compile(r"/admin/accounts/user/$"))
    page.get_by_role("link", name=re.compile("Add user")).click()
    page.wait_for_url(re.compile(r"/admin/accounts/user/add/$"))

    organizations = page.locator("select[name=organization] option").all_inner_texts()
    assert "St. Elsewhere Hospital" in organizations
    assert "Riverside Clinic" not in organizations
    page.fill("input[name=username]", "erik")
    page.fill("input[name=first_name]", "Erik")
    page.fill("input[name=last_name]", "Janssens")
    page.fill("input[name=email]", "erik@example.org")
    page.fill("input[name=password1]", "Saffron-lantern-77")
    page.fill("input[name=password2]", "Saffron-lantern-77")
    page.select_option("select[name=organization]", label="St. Elsewhere Hospital")
    page.select_option("select[name=role]", label="Clinician")
    page.locator("input[name=_save]").click()

    page.wait_for_url(re.compile(r"/admin/accounts/user/\d+/change/$"))
    erik = User.objects.get(username="erik")
    membership = erik.memberships.get()
    assert (membership.organization, membership.role) == (org, clinician_role)
    # His page shows the membership, which she may go on editing.
    assert page.locator("select[name='memberships-0-role'] option:checked").inner_text() == (
        "Clinician"
    )
    page.goto("/admin/accounts/user/")
    assert page.get_by_role("link", name="erik").count() == 1
    assert page.console_errors == [], missing
