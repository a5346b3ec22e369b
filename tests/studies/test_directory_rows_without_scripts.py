"""Without scripts a row of the Patient Study Directory still reaches its study and the pages of
its menu (issue 15): the row holds real links, which answer the user with a page, and offers only
what the menu would offer on that study (``data-allows``)."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from tests.accounts.helpers import sign_in
from tests.factories import make_study, share_entry

pytestmark = pytest.mark.django_db


def row_links(page: str, study_uid: str) -> dict[str, str]:
    """The links of a study's row: menu key (``name`` for the patient's name) -> href."""
    row = re.search(rf'<tr class="study-row[^"]*"[^>]*data-id="{study_uid}".*?</tr>', page, re.S)
    assert row, f"no row for {study_uid}"
    links = {}
    for attributes in re.findall(r"<a ([^>]*)>", row.group(0)):
        href = unescape(re.search(r'href="([^"]*)"', attributes).group(1))
        key = re.search(r'data-menu-key="([^"]*)"', attributes)
        links[key.group(1) if key else "name"] = href
    return links


def test_a_row_links_to_its_study_share_and_send_link_pages(client, alice, org, location):
    study = make_study(org, location=location)
    clinician = sign_in(client, alice)
    page = clinician.get(reverse("studies:directory")).content.decode()

    links = row_links(page, study.study_uid)

    viewer = reverse("studies:study", args=[study.study_uid])
    query = urlencode({"study": study.study_uid})
    assert links["name"] == viewer
    assert links["open"] == viewer
    assert links["share"] == f"{reverse('sharing:dialog')}?{query}"
    assert links["send_link"] == f"{reverse('guestlinks:dialog')}?{query}"
    for key, href in links.items():
        assert clinician.get(href).status_code == 200, key


def test_a_row_links_only_to_what_its_menu_offers(client, bob, carol, other_org):
    study = make_study(other_org, patient_id="RC-1")
    share_entry(bob, study, can_share=False)
    page = sign_in(client, bob).get(reverse("studies:directory")).content.decode()

    links = row_links(page, study.study_uid)

    assert "share" not in links
    assert "send_link" not in links
    assert links["open"] == reverse("studies:study", args=[study.study_uid])
