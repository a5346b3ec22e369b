"""What a grant held in the session admits: the link's studies as they were when it was opened,
images and report, for as long as the link lives; browsing never spends more uses."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from guestlinks.access import grant_access, granted_study_ids, live_grants
from guestlinks.models import GuestLink, LinkState
from guestlinks.services import opening
from studies.access import study_access
from studies.models import AccessLevel, Entry, EntryOrigin, Folder, Report
from studies.services.worklists import location_worklist, personal_worklist
from tests.factories import make_study
from tests.guestlinks.conftest import frame_url, link_path, service_request

pytestmark = pytest.mark.django_db


def open_study(client, token: str, **data):
    response = client.post(link_path(token), {"action": "open", **data})
    assert response.status_code == 303, response.content.decode()[:500]
    return response


def viewer_url(study) -> str:
    return reverse("studies:study", args=[study.study_uid])


# --- Browsing within a grant ------------------------------------------------------------------


def test_a_grant_opens_viewer_frames_and_report_without_spending_more_uses(guest, ct, make_link):
    Report.objects.create(study=ct, text="No free air. Small left renal cyst.")
    link, token = make_link(ct, max_uses=1)
    open_study(guest, token)

    viewer = guest.get(viewer_url(ct))
    assert viewer.status_code == 200
    html = viewer.content.decode()
    assert "Small left renal cyst" in html
    # A guest is never offered the directory's actions.
    assert "data-copy-link=" not in html
    assert reverse("studies:download", args=[ct.study_uid]) not in html
    for _ in range(3):
        frame = guest.get(frame_url(ct))
        assert frame.status_code == 200
        assert frame["Content-Type"] == "image/png"
    assert guest.get(viewer_url(ct)).status_code == 200

    link.refresh_from_db()
    assert link.uses == 1


def test_the_grant_gives_report_read_never_more(ct, make_link):
    link, _token = make_link(ct)
    request = service_request()
    opening.open_link(link=link, request=request)

    access = grant_access(request, ct)
    assert access.level == AccessLevel.REPORT_READ
    assert (access.anonymized, access.can_share, access.via) == (False, False, "guest_link")
    assert access.until is None
    assert study_access(request, ct) == access


def test_a_guest_cannot_write_the_report(guest, ct, make_link):
    _, token = make_link(ct)
    open_study(guest, token)
    response = guest.post(reverse("studies:report", args=[ct.study_uid]), {"text": "Changed"})
    assert response.status_code in (400, 403)
    assert not Report.objects.filter(study=ct, text="Changed").exists()


def test_a_grant_admits_only_its_own_studies(guest, org, location, ct, make_link):
    other = make_study(org, location=location, patient_id="P-9", family_name="Other")
    _, token = make_link(ct)
    open_study(guest, token)
    assert guest.get(frame_url(ct)).status_code == 200
    assert guest.get(viewer_url(other)).status_code == 302  # to the login page
    assert guest.get(frame_url(ct).replace(ct.study_uid, other.study_uid)).status_code == 404


# --- A grant ends with its link -----------------------------------------------------------------


@pytest.mark.parametrize(
    "end",
    [
        pytest.param({"state": LinkState.REVOKED}, id="revoked"),
        pytest.param({"state": LinkState.DELETED}, id="deleted"),
        pytest.param({"password_failures": 3}, id="locked-by-passwords"),
        pytest.param({"code_failures": 5}, id="locked-by-codes"),
    ],
)
def test_ending_the_link_ends_an_existing_grant_at_the_next_request(guest, ct, make_link, end):
    link, token = make_link(ct, max_password_attempts=3)
    open_study(guest, token)
    assert guest.get(frame_url(ct)).status_code == 200

    GuestLink.objects.filter(pk=link.pk).update(**end)

    assert guest.get(frame_url(ct)).status_code == 401  # no grant left: asked to log in
    viewer = guest.get(viewer_url(ct))
    assert viewer.status_code == 302
    assert viewer["Location"].startswith(reverse("accounts:login"))
    assert guest.get(reverse("guest:studies")).status_code == 404
    # Back at the link: the answer of any dead link.
    assert guest.get(link_path(token)).status_code == 404


def test_expiry_ends_an_existing_grant(guest, ct, make_link):
    link, token = make_link(ct, expires_in=timedelta(hours=2))
    open_study(guest, token)
    with time_machine.travel(link.expires_at - timedelta(seconds=1), tick=False):
        assert guest.get(frame_url(ct)).status_code == 200
    with time_machine.travel(link.expires_at + timedelta(seconds=1), tick=False):
        assert guest.get(frame_url(ct)).status_code == 401  # no grant left: asked to log in
        assert guest.get(viewer_url(ct)).status_code == 302


def test_running_out_of_uses_does_not_end_a_grant_already_made(guest, ct, make_link):
    from tests.accounts.helpers import HttpsClient

    link, token = make_link(ct, max_uses=2)
    open_study(guest, token)
    open_study(HttpsClient(), token)
    link.refresh_from_db()
    assert link.uses == 2

    assert guest.get(viewer_url(ct)).status_code == 200
    assert guest.get(frame_url(ct)).status_code == 200


def test_a_grant_ends_with_the_session_lifetime(guest, ct, make_link, settings):
    _, token = make_link(ct)
    open_study(guest, token)
    later = timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE + 60)
    with time_machine.travel(later, tick=False):
        assert guest.get(frame_url(ct)).status_code == 401  # no grant left: asked to log in


def test_several_links_in_one_session_each_keep_their_grant(guest, org, location, ct, make_link):
    second = make_study(org, location=location)
    first_link, first_token = make_link(ct)
    _, second_token = make_link(second)
    open_study(guest, first_token)
    open_study(guest, second_token)

    assert guest.get(viewer_url(ct)).status_code == 200
    assert guest.get(viewer_url(second)).status_code == 200
    GuestLink.objects.filter(pk=first_link.pk).update(state=LinkState.REVOKED)
    assert guest.get(frame_url(ct)).status_code == 404
    assert guest.get(viewer_url(second)).status_code == 200


def test_grants_are_read_with_one_query_per_request(ct, make_link, django_assert_num_queries):
    request = service_request()
    for _ in range(3):
        link, _token = make_link(ct)
        opening.open_link(link=link, request=request)
    request = _same_session(request)
    with django_assert_num_queries(1):
        assert grant_access(request, ct) is not None
        assert grant_access(request, ct) is not None
        assert granted_study_ids(request) == {ct.pk}


def _same_session(request):
    """A later request of the same browser (the session as stored, nothing read yet)."""
    from django.contrib.sessions.backends.db import SessionStore

    request.session.save()
    later = service_request()
    later.session = SessionStore(session_key=request.session.session_key)
    later.session.keys()  # read from the store now, as the first access of a request does
    return later


def test_malformed_grants_in_a_session_are_ignored(ct, db):
    request = service_request()
    request.session["guestlinks_grants"] = [{"link": "x"}, "nonsense", {"studies": [ct.pk]}]
    assert live_grants(request) == []
    assert grant_access(request, ct) is None


# --- What the grant holds ---------------------------------------------------------------------


def test_a_worklist_link_holds_the_studies_it_had_when_opened(guest, org, location, make_link):
    worklist = location_worklist(location)
    before = make_study(org, location=location, description="MR Knee")
    removed = make_study(org, location=location, patient_id="P-3", description="US Neck")
    Entry.objects.filter(study=removed).update(removed_at=timezone.now())
    _link, token = make_link(worklist)
    open_study(guest, token)

    after = make_study(org, location=location, patient_id="P-2", description="XR Hand")

    grants = guest.session["guestlinks_grants"]
    assert grants[0]["studies"] == [before.pk]
    html = guest.get(reverse("guest:studies")).content.decode()
    assert "MR Knee" in html
    assert "XR Hand" not in html and "US Neck" not in html
    assert guest.get(viewer_url(before)).status_code == 200
    assert guest.get(viewer_url(after)).status_code == 302
    assert guest.get(viewer_url(removed)).status_code == 302


def test_a_folder_link_holds_the_folder_and_its_subfolders(guest, org, location, make_link):
    worklist = location_worklist(location)
    knees = Folder.objects.create(worklist=worklist, name="Knees")
    left = Folder.objects.create(worklist=worklist, parent=knees, name="Left")
    elsewhere = Folder.objects.create(worklist=worklist, name="Other")
    in_folder = make_study(org, location=location, patient_id="P-11", description="MR Knee")
    in_subfolder = make_study(org, location=location, patient_id="P-12", description="MR L Knee")
    outside = make_study(org, location=location, patient_id="P-13", description="CT Head")
    Entry.objects.filter(study=in_folder).update(folder=knees)
    Entry.objects.filter(study=in_subfolder).update(folder=left)
    Entry.objects.filter(study=outside).update(folder=elsewhere)

    _, token = make_link(knees)
    open_study(guest, token)

    assert sorted(guest.session["guestlinks_grants"][0]["studies"]) == sorted(
        [in_folder.pk, in_subfolder.pk]
    )
    assert guest.get(viewer_url(in_subfolder)).status_code == 200
    assert guest.get(viewer_url(outside)).status_code == 302


def test_a_study_link_with_priors_grants_the_patients_studies_in_the_same_worklist(
    guest, org, location, alice, make_link
):
    current = make_study(org, location=location, description="CT Chest 2024")
    prior = make_study(org, location=location, description="CT Chest 2021")
    # The same patient, but in no worklist that holds the linked study: not a prior here.
    elsewhere = make_study(org, location=None, description="MR Spine 2019")
    Entry.objects.create(
        worklist=personal_worklist(alice), study=elsewhere, origin=EntryOrigin.MANUAL
    )
    # Another patient in the same worklist: never.
    stranger = make_study(org, location=location, patient_id="P-77", family_name="Smith")
    assert location_worklist(location).entries.filter(study=prior).exists()

    link, token = make_link(current, include_priors=True)
    open_study(guest, token)

    assert guest.session["guestlinks_grants"][0]["studies"] == [current.pk, prior.pk]
    assert guest.get(viewer_url(current)).status_code == 200
    assert guest.get(viewer_url(prior)).status_code == 200
    assert guest.get(viewer_url(elsewhere)).status_code == 302
    assert guest.get(viewer_url(stranger)).status_code == 302
    # Still one use.
    link.refresh_from_db()
    assert link.uses == 1


def test_a_study_link_without_priors_grants_the_study_alone(guest, org, location, make_link):
    current = make_study(org, location=location)
    prior = make_study(org, location=location, description="Old CT")
    _, token = make_link(current)
    open_study(guest, token)
    assert guest.session["guestlinks_grants"][0]["studies"] == [current.pk]
    assert guest.get(viewer_url(prior)).status_code == 302


def test_granted_study_ids_lists_what_the_session_may_open(org, location, make_link):
    current = make_study(org, location=location)
    prior = make_study(org, location=location, description="Old CT")
    link, _token = make_link(current, include_priors=True)
    request = service_request()
    opening.open_link(link=link, request=request)
    assert granted_study_ids(request) == {current.pk, prior.pk}

    GuestLink.objects.filter(pk=link.pk).update(state=LinkState.REVOKED)
    assert granted_study_ids(_same_session(request)) == set()


def test_the_guest_viewer_lists_the_granted_priors(guest, org, location, make_link):
    current = make_study(org, location=location, description="CT Chest 2024")
    prior = make_study(org, location=location, description="CT Chest 2021")
    _link, token = make_link(current, include_priors=True)
    open_study(guest, token)

    page = guest.get(viewer_url(current)).content.decode()

    assert viewer_url(prior) in page
    assert "CT Chest 2021" in page
