"""Issue 11, point 3: a worklist's share code (CIMAR's way to share into any worklist, of any
organization) is shown, with a copy button, to the users who work from that worklist and may
share; to no one else, since whoever holds a code can share into its worklist."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.urls import reverse

from accounts.models import Location
from accounts.permissions import Perm
from sharing.selectors import worklist_share_codes
from studies.access import user_study_access
from studies.services.worklists import group_worklist, location_worklist
from tests.accounts.helpers import HttpsClient, plain_static_storage
from tests.factories import make_study
from tests.sharing.conftest import member, share

pytestmark = pytest.mark.django_db

PAGE = reverse("sharing:shares")


@pytest.fixture(autouse=True)
def _plain_static(settings):
    plain_static_storage(settings)


def client_for(user) -> HttpsClient:
    client = HttpsClient()
    client.force_login(user)
    return client


def shown_codes(user) -> dict[str, str]:
    """Share code box id -> code, as the Shares page shows them."""
    html = client_for(user).get(PAGE).content.decode()
    found = re.findall(r'<input type="text" id="(share-code-\d+)"[^>]*value="([A-Z0-9]+)"', html)
    return dict(found)


def test_the_shares_page_shows_the_codes_of_my_worklists_with_a_copy_button(alice, location, study):
    radiology = location_worklist(location)
    response = client_for(alice).get(PAGE)
    html = unescape(response.content.decode())
    assert "Share codes of your worklists" in html
    assert f'value="{radiology.share_code}"' in html
    box = f"share-code-{radiology.pk}"
    assert f'data-copy-from="#{box}"' in html
    assert "js/clipboard.js" in html
    assert "Worklist share code" in html  # says how to use it
    assert re.search(rf'<input type="text" id="{box}"[^>]*readonly', html)


def test_only_my_own_worklists(alice, bob, carol, group, location, other_org):
    radiology, neuro = location_worklist(location), group_worklist(group)
    assert set(shown_codes(alice).values()) == {radiology.share_code}
    assert set(shown_codes(bob).values()) == {neuro.share_code}
    carols = set(shown_codes(carol).values())
    assert radiology.share_code not in carols and neuro.share_code not in carols


def test_users_who_may_not_share_see_no_code(org, location):
    reader = member("rita", org, location, [Perm.VIEW_STUDIES])
    location_worklist(location)
    assert worklist_share_codes(reader) == []
    html = client_for(reader).get(PAGE).content.decode()
    assert "Share codes of your worklists" not in html and "share-code-" not in html


def test_a_colleague_elsewhere_shares_into_the_worklist_with_the_code(alice, carol, location):
    """alice copies Radiology's code and gives it to carol, at another organization."""
    radiology = location_worklist(location)
    code = shown_codes(alice)[f"share-code-{radiology.pk}"]
    imaging = Location.objects.get(name="Imaging")
    theirs = make_study(imaging.organization, location=imaging, patient_id="R-7")
    assert user_study_access(alice, theirs) is None
    share(carol, theirs, ("share_code", code))
    assert user_study_access(alice, theirs) is not None
