"""The directory's menu offers on each study, worklist and folder only the actions the user may
take there (``data-allows``), and a refusal names the permission that is really missing."""

import re

import pytest
from django.urls import reverse

from accounts.models import Role
from accounts.permissions import Perm
from guestlinks.selectors import LinkTarget, may_create_links
from studies.services.worklists import location_worklist, personal_worklist
from tests.accounts.helpers import sign_in
from tests.factories import make_study, share_entry

pytestmark = pytest.mark.django_db


def allows(page: str, kind: str, target_id) -> set[str]:
    match = re.search(
        rf'data-menu-target="{kind}" data-id="{target_id}"[^>]*?data-allows="([^"]*)"', page
    )
    assert match, f"no {kind} {target_id} on the page"
    return set(match.group(1).split())


def test_a_clinicians_own_study_offers_everything(client, alice, org, location):
    study = make_study(org, location=location)
    page = sign_in(client, alice).get(reverse("studies:directory")).content.decode()
    assert allows(page, "study", study.study_uid) == {"share", "send_link", "file_studies"}
    radiology = location_worklist(location)
    assert allows(page, "worklist", radiology.pk) == {"send_link", "new_folder"}


def test_a_study_shared_without_further_sharing_offers_neither_share_nor_link(
    client, bob, carol, other_org
):
    study = make_study(other_org, patient_id="RC-1")
    share_entry(bob, study, can_share=False)
    page = sign_in(client, bob).get(reverse("studies:directory")).content.decode()
    # bob may still file his shortcut in a folder of his personal worklist.
    assert allows(page, "study", study.study_uid) == {"file_studies"}
    # His personal worklist belongs to no organization: no link to it, but folders.
    own = personal_worklist(bob)
    assert allows(page, "worklist", own.pk) == {"new_folder"}


def test_a_role_without_the_permissions_is_offered_none_of_them(client, alice, org, location):
    reader = Role.objects.create(name="Reader", permissions=[Perm.VIEW_STUDIES.value])
    alice.memberships.update(role=reader)
    study = make_study(org, location=location)
    page = sign_in(client, alice).get(reverse("studies:directory")).content.decode()
    assert allows(page, "study", study.study_uid) == set()
    assert allows(page, "worklist", location_worklist(location).pk) == set()


def test_a_link_to_a_personal_worklist_is_refused_for_what_it_is(client, bob):
    own = personal_worklist(bob)
    assert not may_create_links(bob, LinkTarget(worklist=own))
    response = sign_in(client, bob).get(
        reverse("guestlinks:dialog"), {"worklist": own.pk}, HTTP_X_REQUESTED_WITH="XMLHttpRequest"
    )
    text = response.content.decode()
    assert response.status_code == 403
    assert "A personal worklist cannot be sent by secure link" in text
    # bob's role does include creating links: the refusal does not say otherwise.
    assert "does not include" not in text


def test_a_role_refusal_names_the_permission(client, alice, org, location):
    role = Role.objects.create(
        name="No links",
        permissions=[p for p in alice.memberships.get().role.permissions if p != "links.create"],
    )
    alice.memberships.update(role=role)
    study = make_study(org, location=location)
    response = sign_in(client, alice).get(
        reverse("guestlinks:dialog"),
        {"study": study.study_uid},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    assert response.status_code == 403
    assert f"does not include “{Perm.CREATE_LINKS.label}”" in response.content.decode()
