"""Viewer tokens (``viewers``): what the external DICOMweb viewer reads the opened studies with.

A token is made from a portal session for studies its principal may open, reaches only those
studies, only reads, is refused by the REST API, and ends with its time, with the access it
rests on (a removed share, a revoked link) and with the session's logout: then DICOMweb
answers 401 ``invalid_token``."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.contrib.auth import get_user
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from audit.models import Action, AuditEvent
from guestlinks.models import GuestLink
from guestlinks.services.ending import revoke_link
from sharing.access import remember_verification
from sharing.models import ShareRecipient
from sharing.services.shares import remove_share
from studies.anonymize import pseudonym
from studies.models import Entry, Study
from studies.synthetic import to_bytes
from tests.accounts.helpers import HttpsClient
from tests.dicomweb.conftest import CT_STUDY_UID, ct_datasets, ingest
from tests.dicomweb.test_qido import PATIENT_ID, PATIENT_NAME, open_guest_link, uids
from tests.dicomweb.test_wado import RAW_FRAMES, instance_url
from tests.sharing.conftest import share
from viewers.models import ViewerToken
from viewers.services import ViewerRefused, delete_expired_tokens, open_in_viewer

pytestmark = pytest.mark.django_db

PRIOR_UID = "1.2.826.0.1.3680043.8.498.7002"
INVALID_TOKEN = 'Bearer realm="DICOMweb", error="invalid_token"'


def signed_in(user) -> HttpsClient:
    browser = HttpsClient()
    browser.force_login(user)
    return browser


def portal_request(browser: HttpsClient):
    """A request of this browser as a portal view sees it: its session and its user."""
    request = RequestFactory().post("/", secure=True)
    request.session = browser.session
    request.user = get_user(request)
    return request


def open_viewer(browser: HttpsClient, *study_uids: str) -> HttpsClient:
    """The viewer's client: no cookie, only the token a portal session made for it."""
    opened = open_in_viewer(request=portal_request(browser), study_uids=study_uids)
    assert opened.secret.startswith("vt_") and len(opened.secret) >= 3 + 43  # 256 bits
    return HttpsClient(HTTP_AUTHORIZATION=f"Bearer {opened.secret}")


def studies_found(viewer, **params) -> list[str]:
    response = viewer.get("/dicomweb/studies", params)
    assert response.status_code == 200, response.content.decode()[:300]
    return uids(response.json())


def assert_invalid_token(response) -> None:
    assert response.status_code == 401, response.content.decode()[:300]
    assert response["WWW-Authenticate"] == INVALID_TOKEN


@pytest.fixture
def prior(ct_study, org, location) -> Study:
    """An older study of the same patient (Dubois^Marie, PAT-7001)."""
    datasets = ct_datasets(study_uid=PRIOR_UID, study_date="20200101", accession="ACC7002")
    ingest(org, location, {ds.SOPInstanceUID: to_bytes(ds) for ds in datasets})
    return Study.objects.get(study_uid=PRIOR_UID)


def test_a_users_token_reads_the_opened_study_and_nothing_else(ct_study, prior, alice):
    viewer = open_viewer(signed_in(alice), CT_STUDY_UID)

    # alice sees both studies in the portal; the viewer finds only the one she opened, also
    # when it asks for the patient's other studies as OHIF does.
    assert studies_found(viewer) == [CT_STUDY_UID]
    assert studies_found(viewer, PatientID="PAT-7001") == [CT_STUDY_UID]
    frame = viewer.get(instance_url(ct_study.instances[0], "frames", "1"), HTTP_ACCEPT=RAW_FRAMES)
    assert frame.status_code == 200
    other = viewer.get(reverse("dicomweb:study", args=[PRIOR_UID]) + "/metadata")
    assert other.status_code == 404
    # Made for both, it reaches both.
    both = open_viewer(signed_in(alice), CT_STUDY_UID, PRIOR_UID)
    assert sorted(studies_found(both)) == sorted([CT_STUDY_UID, PRIOR_UID])


def test_opening_records_a_view_of_each_study_and_stores_only_a_digest(ct_study, prior, alice):
    browser = signed_in(alice)
    opened = open_in_viewer(request=portal_request(browser), study_uids=[CT_STUDY_UID, PRIOR_UID])

    token = ViewerToken.objects.get()
    assert opened.secret not in json.dumps(
        [token.digest, token.session_digest, token.grants, token.study_ids]
    )
    assert token.user == alice
    assert timezone.now() + timedelta(minutes=14) < token.expires_at
    assert token.expires_at <= timezone.now() + timedelta(minutes=15)
    viewed = AuditEvent.objects.filter(action=Action.STUDY_VIEWED).order_by("study_uid")
    assert [(e.study_uid, e.details["viewer"]) for e in viewed] == [
        (CT_STUDY_UID, "ohif"),
        (PRIOR_UID, "ohif"),
    ]


def test_a_study_the_principal_cannot_open_is_refused_like_an_unknown_one(ct_study, carol):
    browser = signed_in(carol)
    for study_uids in ([CT_STUDY_UID], ["1.2.3.404"], []):
        with pytest.raises(ViewerRefused):
            open_in_viewer(request=portal_request(browser), study_uids=study_uids)
    # Without a session (an API client) nothing can end it: refused.
    request = RequestFactory().post("/")
    request.user = carol
    with pytest.raises(ViewerRefused, match="from the portal"):
        open_in_viewer(request=request, study_uids=[CT_STUDY_UID])
    assert not ViewerToken.objects.exists()


def test_the_rest_api_refuses_a_viewer_token(ct_study, alice):
    viewer = open_viewer(signed_in(alice), CT_STUDY_UID)
    assert viewer.get("/api/v1/studies/").status_code == 401
    assert viewer.get(f"/api/v1/studies/{CT_STUDY_UID}/").status_code == 401


def test_a_viewer_token_only_reads(ct_study, alice):
    viewer = open_viewer(signed_in(alice), CT_STUDY_UID)
    stored = viewer.post(
        "/dicomweb/studies",
        data=b"--x\r\nContent-Type: application/dicom\r\n\r\n\r\n--x--",
        content_type='multipart/related; type="application/dicom"; boundary=x',
    )
    assert stored.status_code == 403
    assert "only reads" in stored.content.decode()
    assert not Study.objects.exclude(study_uid=CT_STUDY_UID).exists()


def test_it_ends_on_time(ct_study, alice):
    viewer = open_viewer(signed_in(alice), CT_STUDY_UID)
    assert studies_found(viewer) == [CT_STUDY_UID]

    with time_machine.travel(timezone.now() + timedelta(minutes=15, seconds=1)):
        assert_invalid_token(viewer.get("/dicomweb/studies"))
    assert delete_expired_tokens(timezone.now() + timedelta(minutes=16)) == 1


def test_it_never_outlives_the_share_it_rests_on(ct_study, alice, carol):
    ends = timezone.now() + timedelta(minutes=5)
    share(alice, ct_study.study, ("user", carol.pk), valid_until=ends.date() + timedelta(days=1))
    # A share ends on a day; its entry may end within the hour (an edited share).
    Entry.objects.filter(study=ct_study.study, worklist__owner=carol).update(valid_until=ends)
    open_viewer(signed_in(carol), CT_STUDY_UID)
    assert ViewerToken.objects.get().expires_at == ends


def test_removing_the_share_ends_the_token_at_the_next_request(ct_study, alice, carol):
    made = share(alice, ct_study.study, ("user", carol.pk), anonymize=True)
    viewer = open_viewer(signed_in(carol), CT_STUDY_UID)
    (found,) = viewer.get("/dicomweb/studies").json()
    alias = pseudonym(ct_study.study)
    assert found[PATIENT_NAME]["Value"] == [{"Alphabetic": alias.dicom_name}]
    assert found[PATIENT_ID]["Value"] == [alias.patient_id]
    assert "Dubois" not in json.dumps(found)

    assert remove_share(user=alice, share=made) is True

    assert_invalid_token(viewer.get("/dicomweb/studies"))


def test_a_guests_token_carries_the_grant_and_ends_with_the_link(ct_study, prior, dana):
    guest = open_guest_link(ct_study.study)
    viewer = open_viewer(guest, CT_STUDY_UID)

    # The grant, not the cookie: the viewer sends none. The prior of the same patient stays out.
    assert studies_found(viewer) == [CT_STUDY_UID]
    assert studies_found(viewer, PatientID="PAT-7001") == [CT_STUDY_UID]
    frame = viewer.get(instance_url(ct_study.instances[0], "frames", "1"), HTTP_ACCEPT=RAW_FRAMES)
    assert frame.status_code == 200
    with pytest.raises(ViewerRefused):
        open_in_viewer(request=portal_request(guest), study_uids=[PRIOR_UID])

    link = GuestLink.objects.get()
    assert revoke_link(user=dana, link=link, reason="Sent to the wrong GP")

    assert_invalid_token(viewer.get("/dicomweb/studies"))


def test_a_deleted_link_ends_the_guests_token(ct_study):
    guest = open_guest_link(ct_study.study)
    viewer = open_viewer(guest, CT_STUDY_UID)
    assert studies_found(viewer) == [CT_STUDY_UID]

    GuestLink.objects.all().delete()

    assert_invalid_token(viewer.get("/dicomweb/studies"))


def test_logging_out_ends_the_tokens_made_in_that_session(ct_study, alice):
    browser = signed_in(alice)
    viewer = open_viewer(browser, CT_STUDY_UID)
    elsewhere = open_viewer(signed_in(alice), CT_STUDY_UID)

    assert browser.post(reverse("accounts:logout")).status_code in (200, 302)

    assert_invalid_token(viewer.get("/dicomweb/studies"))
    # A session of hers elsewhere keeps its own.
    assert studies_found(elsewhere) == [CT_STUDY_UID]


def test_an_unknown_or_altered_token_shows_nothing(ct_study, alice):
    opened = open_in_viewer(request=portal_request(signed_in(alice)), study_uids=[CT_STUDY_UID])
    for secret in (
        "vt_" + "A" * 43,
        opened.secret[:-1] + ("A" if opened.secret[-1] != "A" else "B"),
    ):
        assert_invalid_token(
            HttpsClient(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/dicomweb/studies")
        )


def test_a_share_behind_an_sms_code_opens_once_the_code_was_entered(ct_study, alice, carol):
    carol.mobile = "+32470123456"
    carol.save(update_fields=["mobile"])
    share(alice, ct_study.study, ("user", carol.pk), two_factor=True)
    request = portal_request(signed_in(carol))
    with pytest.raises(ViewerRefused):
        open_in_viewer(request=request, study_uids=[CT_STUDY_UID])

    # What entering the right code leaves in the session (sharing.services.two_factor).
    remember_verification(request, ShareRecipient.objects.get())
    opened = open_in_viewer(request=request, study_uids=[CT_STUDY_UID])

    viewer = HttpsClient(HTTP_AUTHORIZATION=f"Bearer {opened.secret}")
    assert studies_found(viewer) == [CT_STUDY_UID]
    assert ViewerToken.objects.get().grants.keys() == {"sharing_verified"}


# --- Open in OHIF: the entry point ------------------------------------------------------------

OHIF = "https://viewer.example.org"


@pytest.fixture
def ohif_installed(settings, tmp_path):
    settings.OHIF_URL = OHIF
    settings.OHIF_DIR = tmp_path
    (tmp_path / "index.html").write_text("<!doctype html><title>OHIF</title>")


def test_open_in_ohif_sends_the_browser_there_with_a_new_token(ct_study, alice, ohif_installed):
    browser = HttpsClient()
    browser.force_login(alice)
    page = browser.get(reverse("studies:study", args=[CT_STUDY_UID]))
    assert b"data-open-in-ohif" in page.content
    assert f"form-action 'self' {OHIF}" in page["Content-Security-Policy"]
    assert "unsafe" not in page["Content-Security-Policy"]

    opened = browser.post(reverse("viewers:open_in_ohif"), {"study": CT_STUDY_UID})

    assert opened.status_code == 303
    address = urlsplit(opened["Location"])
    assert f"{address.scheme}://{address.netloc}{address.path}" == f"{OHIF}/viewer"
    query = parse_qs(address.query)
    assert query["StudyInstanceUIDs"] == [CT_STUDY_UID]
    (token,) = query["token"]
    assert token.startswith("vt_") and ViewerToken.objects.filter(user=alice).count() == 1


def test_a_study_out_of_reach_is_not_opened(ct_study, carol, ohif_installed):
    browser = HttpsClient()
    browser.force_login(carol)

    refused = browser.post(reverse("viewers:open_in_ohif"), {"study": CT_STUDY_UID})

    assert refused.status_code == 302
    assert not ViewerToken.objects.exists()


def test_without_ohif_there_is_no_entry_point(ct_study, alice, settings):
    settings.OHIF_URL = ""
    browser = HttpsClient()
    browser.force_login(alice)
    page = browser.get(reverse("studies:study", args=[CT_STUDY_UID]))
    assert b"data-open-in-ohif" not in page.content
    assert browser.post(reverse("viewers:open_in_ohif"), {"study": CT_STUDY_UID}).status_code == 404


def test_the_directory_menu_offers_ohif_and_its_dialog_says_what_opens(
    ct_study, prior, alice, ohif_installed
):
    browser = HttpsClient()
    browser.force_login(alice)
    assert b'"open_in_ohif"' in browser.get(reverse("studies:directory")).content

    fragment = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
    asked = browser.get(
        reverse("viewers:open_in_ohif"), {"study": [CT_STUDY_UID, PRIOR_UID]}, **fragment
    )
    assert asked.status_code == 200
    text = asked.content.decode()
    assert "Open these 2 studies in OHIF" in text
    assert "1 Jun 2024 CT Head" in text and "1 Jan 2020 CT Head" in text
    assert not ViewerToken.objects.exists()  # asking makes no token

    opened = browser.post(
        reverse("viewers:open_in_ohif"), {"study": [CT_STUDY_UID, PRIOR_UID]}, **fragment
    )
    assert opened.status_code == 204
    address = urlsplit(opened["X-Dialog-Redirect"])
    assert f"{address.scheme}://{address.netloc}" == OHIF
    assert parse_qs(address.query)["StudyInstanceUIDs"] == [f"{CT_STUDY_UID},{PRIOR_UID}"]


def test_the_dialog_refuses_a_study_out_of_reach(ct_study, carol, ohif_installed):
    browser = HttpsClient()
    browser.force_login(carol)
    fragment = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}

    asked = browser.get(reverse("viewers:open_in_ohif"), {"study": CT_STUDY_UID}, **fragment)
    refused = browser.post(reverse("viewers:open_in_ohif"), {"study": CT_STUDY_UID}, **fragment)

    assert (asked.status_code, refused.status_code) == (404, 404)
    assert "No such study." in refused.content.decode()
    assert not ViewerToken.objects.exists()


# --- Priors -------------------------------------------------------------------------------------


def test_open_in_ohif_adds_the_priors_the_user_may_open_and_records_only_the_study(
    ct_study, prior, alice, ohif_installed
):
    browser = HttpsClient()
    browser.force_login(alice)

    opened = browser.post(reverse("viewers:open_in_ohif"), {"study": CT_STUDY_UID})

    (token,) = parse_qs(urlsplit(opened["Location"]).query)["token"]
    viewer = HttpsClient(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert sorted(studies_found(viewer, PatientID="PAT-7001")) == sorted([CT_STUDY_UID, PRIOR_UID])
    viewed = AuditEvent.objects.filter(action=Action.STUDY_VIEWED)
    assert [event.study_uid for event in viewed] == [CT_STUDY_UID]


@pytest.mark.parametrize("include_priors", [False, True])
def test_a_guest_reaches_the_prior_in_ohif_only_if_the_link_includes_priors(
    ct_study, prior, ohif_installed, include_priors
):
    guest = open_guest_link(ct_study.study, include_priors=include_priors)

    opened = guest.post(reverse("viewers:open_in_ohif"), {"study": CT_STUDY_UID})

    assert opened.status_code == 303, opened.content.decode()[:300]
    (token,) = parse_qs(urlsplit(opened["Location"]).query)["token"]
    viewer = HttpsClient(HTTP_AUTHORIZATION=f"Bearer {token}")
    expected = [CT_STUDY_UID, PRIOR_UID] if include_priors else [CT_STUDY_UID]
    assert sorted(studies_found(viewer, PatientID="PAT-7001")) == sorted(expected)


def test_the_guests_list_of_studies_offers_ohif_where_it_is_installed(ct_study, settings, tmp_path):
    guest = open_guest_link(ct_study.study)
    settings.OHIF_URL = ""
    assert b"data-open-in-ohif" not in guest.get(reverse("guest:studies")).content

    settings.OHIF_URL = OHIF
    settings.OHIF_DIR = tmp_path
    (tmp_path / "index.html").write_text("<title>OHIF</title>")
    listed = guest.get(reverse("guest:studies")).content.decode()
    assert "data-open-in-ohif" in listed
    assert f'name="study" value="{CT_STUDY_UID}"' in listed
    opened = guest.post(reverse("viewers:open_in_ohif"), {"study": CT_STUDY_UID})
    assert opened.status_code == 303 and opened["Location"].startswith(f"{OHIF}/viewer?")


# --- Renewed while the portal session lives ----------------------------------------------------


def renew(browser, secret: str, *, origin: str = OHIF):
    return browser.post(
        reverse("viewers:refresh_ohif_token"),
        HTTP_ORIGIN=origin,
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def opened_token(browser) -> str:
    opened = browser.post(reverse("viewers:open_in_ohif"), {"study": CT_STUDY_UID})
    return parse_qs(urlsplit(opened["Location"]).query)["token"][0]


def test_ohif_renews_its_token_with_the_session_that_opened_it(ct_study, alice, ohif_installed):
    browser = HttpsClient()
    browser.force_login(alice)
    old = opened_token(browser)

    renewed = renew(browser, old)

    assert renewed.status_code == 200
    assert renewed["Access-Control-Allow-Origin"] == OHIF
    assert renewed["Access-Control-Allow-Credentials"] == "true"
    new = renewed.json()["token"]
    assert new.startswith("vt_") and new != old
    assert_invalid_token(HttpsClient(HTTP_AUTHORIZATION=f"Bearer {old}").get("/dicomweb/studies"))
    assert studies_found(HttpsClient(HTTP_AUTHORIZATION=f"Bearer {new}")) == [CT_STUDY_UID]
    assert ViewerToken.objects.count() == 1
    preflight = browser.options(reverse("viewers:refresh_ohif_token"), HTTP_ORIGIN=OHIF)
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Headers"] == "Authorization"


def test_only_ohif_with_the_same_live_session_renews(ct_study, alice, carol, ohif_installed):
    browser = HttpsClient()
    browser.force_login(alice)
    secret = opened_token(browser)
    elsewhere = HttpsClient()
    elsewhere.force_login(alice)
    other_user = HttpsClient()
    other_user.force_login(carol)

    assert renew(browser, secret, origin="https://evil.example.org").status_code == 403
    assert renew(elsewhere, secret).status_code == 401
    assert renew(other_user, secret).status_code == 401
    assert renew(HttpsClient(), secret).status_code == 401
    assert renew(browser, "vt_" + "A" * 43).status_code == 401
    browser.post(reverse("accounts:logout"))
    assert renew(browser, secret).status_code == 401
    assert not ViewerToken.objects.exists()


def test_a_guest_renews_until_the_link_is_revoked(ct_study, dana, ohif_installed):
    guest = open_guest_link(ct_study.study)
    secret = opened_token(guest)
    renewed = renew(guest, secret)
    assert renewed.status_code == 200
    secret = renewed.json()["token"]

    assert revoke_link(user=dana, link=GuestLink.objects.get(), reason="Sent to the wrong GP")

    assert renew(guest, secret).status_code == 401
