"""The recipient's side of a share, end to end (issue 5's acceptance): alice shares real DICOM
studies through the Share dialog or ``share_studies``, then the recipient's own browser and API
client ask the real views. The share's access level decides the report (read vs write), an
anonymized share shows only the pseudonym on every page, in the viewer's overlays, the rendered
frames and the downloaded DICOM files, and a share opens nothing once it has expired or been
removed, at the very next request, with no job run in between."""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import unescape

import pydicom
import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from django.core.files.storage import storages
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from PIL import Image

from accounts.models import Location
from audit.models import Action, AuditEvent
from guestlinks.models import GuestLink
from guestlinks.selectors import LinkTarget
from guestlinks.services.creation import LinkOptions, create_link
from sharing.models import Share
from studies.access import user_study_access
from studies.anonymize import ANONYMOUS_FAMILY_NAME, pseudonym
from studies.models import Entry, EntryOrigin, Instance, Report, Study
from studies.rendering import render_frame
from studies.services.ingestion import ingest_files
from studies.services.reports import report_version, update_report
from studies.synthetic import bundled_test_file, make_series, to_bytes
from tests.accounts.helpers import HttpsAPIClient, HttpsClient, plain_static_storage
from tests.guestlinks.conftest import link_path
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db

DIALOG = reverse("sharing:dialog")
FRAGMENT = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
REPORT_TEXT = "Dense consolidation of the left lower lobe. Follow-up in six weeks."
NEW_REPORT_TEXT = "Addendum: consolidation resolved on the follow-up study."
NO_REPORT_FOR_ANONYMIZED = "The report of an anonymized study is not available."
IMAGES_ONLY_HINT = "Your access to this study includes the images only."


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    plain_static_storage(settings)


# --- The studies: real DICOM files, ingested as a modality would send them ------------------------


@dataclass(frozen=True)
class Identity:
    """What identifies a study's patient: none of it may reach an anonymized recipient."""

    name_parts: tuple[str, ...]
    patient_id: str
    birth_date: date
    accession: str
    # Address, institution, physicians: identifying too, and removed from anonymized files.
    others: tuple[str, ...] = ()

    def needles(self) -> list[str]:
        day = self.birth_date
        return [
            *self.name_parts,
            self.patient_id,
            self.accession,
            *self.others,
            day.isoformat(),
            day.strftime("%Y%m%d"),
            day.strftime("%d/%m/%Y"),
            date_format(day, "DATE_FORMAT"),
            date_format(day, "SHORT_DATE_FORMAT"),
        ]

    def found_in(self, text: str) -> list[str]:
        return [needle for needle in self.needles() if needle in text]


CT_IDENTITY = Identity(
    name_parts=("Dubois", "Marie"),
    patient_id="PAT-6101",
    birth_date=date(1959, 3, 3),
    accession="ACC6101",
    others=("St. Elsewhere Imaging", "Quinn"),
)
CT_UID = "1.2.826.0.1.3680043.8.498.6101"

# pydicom's bundled examples_overlay.dcm: a real Siemens MR with an overlay plane, a patient
# address and a request sequence, as found in archives.
MR_FILE = "examples_overlay.dcm"
MR_IDENTITY = Identity(
    name_parts=("Sssssss", "Jsssss"),
    patient_id="021234567",
    birth_date=date(1111, 11, 11),
    accession="8000000000330109",
    others=("Weißenkirchen", "Waehringer", "AKH - WIEN"),
)


def ingest(org, location, files: list[tuple[str, bytes]]) -> Study:
    result = ingest_files(
        files=[(name, io.BytesIO(data)) for name, data in files],
        organization=org,
        location=location,
    )
    assert not result.rejected, result.rejected
    return Study.objects.get(series__instances__sop_instance_uid=result.stored[0])


@pytest.fixture
def ct(org, location) -> Study:
    """A three-slice CT of Marie Dubois received at alice's Radiology location, with a report."""
    datasets = make_series(
        patient_name="Dubois^Marie",
        patient_id=CT_IDENTITY.patient_id,
        birth_date=CT_IDENTITY.birth_date.strftime("%Y%m%d"),
        sex="F",
        study_uid=CT_UID,
        study_date="20240601",
        study_description="CT Thorax",
        accession=CT_IDENTITY.accession,
        modality="CT",
        series_number=1,
        series_description="Lung",
        slices=3,
        rows=64,
        columns=48,
        institution="St. Elsewhere Imaging",
        referring_physician="Quinn^Michaela",
    )
    return ingest(org, location, [(f"IM{i}", to_bytes(ds)) for i, ds in enumerate(datasets)])


@pytest.fixture
def mr(org, location) -> Study:
    return ingest(org, location, [(MR_FILE, bundled_test_file(MR_FILE).read_bytes())])


@pytest.fixture(params=["synthetic_ct", "bundled_mr_with_overlay"])
def identified(request, org, location) -> tuple[Study, Identity]:
    """Each anonymization story runs on both studies."""
    if request.param == "synthetic_ct":
        return request.getfixturevalue("ct"), CT_IDENTITY
    return request.getfixturevalue("mr"), MR_IDENTITY


@pytest.fixture
def reported(ct, alice) -> Study:
    """The CT with the report alice's department wrote."""
    write_report(alice, ct)
    return ct


def write_report(alice, study) -> None:
    update_report(user=alice, study=study, text=REPORT_TEXT, access=user_study_access(alice, study))


# --- The recipient's browser and API client ------------------------------------------------------


def browser(user) -> HttpsClient:
    client = HttpsClient()
    client.force_login(user)
    return client


def api_client(user) -> HttpsAPIClient:
    client = HttpsAPIClient()
    client.force_login(user)
    return client


def text_of(response) -> str:
    return unescape(response.content.decode())


def viewer_url(study) -> str:
    return reverse("studies:study", args=[study.study_uid])


def report_url(study) -> str:
    return reverse("studies:report", args=[study.study_uid])


def download_url(study) -> str:
    return reverse("studies:download", args=[study.study_uid])


def api_url(study) -> str:
    return reverse("api-study", args=[study.study_uid])


def first_image(study) -> Instance:
    return (
        Instance.objects.filter(series__study=study, has_pixels=True)
        .select_related("series")
        .order_by("series__number", "number")
        .first()
    )


def frame_url(study) -> str:
    instance = first_image(study)
    return reverse(
        "dicomweb:rendered_frame",
        args=[study.study_uid, instance.series.series_uid, instance.sop_instance_uid, 1],
    )


def thumbnail_url(study) -> str:
    return reverse(
        "dicomweb:series_thumbnail", args=[study.study_uid, first_image(study).series.series_uid]
    )


def directory_rows(client) -> dict[str, str]:
    """The directory's study rows, by study UID, as HTML."""
    response = client.get(reverse("studies:directory"))
    assert response.status_code == 200
    html = text_of(response)
    rows = re.findall(r'<tr class="study-row.*?</tr>', html, re.S)
    return {re.search(r'data-id="([^"]+)"', row).group(1): row for row in rows}


def api_listed(client) -> dict[str, dict]:
    response = client.get(reverse("api-studies"))
    assert response.status_code == 200
    return {row["study_uid"]: row for row in response.json()["results"]}


def zip_of(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def report_changes(study):
    return AuditEvent.objects.filter(action=Action.REPORT_CHANGED, study_uid=study.study_uid)


def post_report(client, study, text: str):
    current = Report.objects.filter(study=study).first()
    return client.post(report_url(study), {"text": text, "version": report_version(current)})


# --- Sharing through the dialog, as alice's browser posts it -------------------------------------


def dialog_share(sender, studies, kind: str, target, **fields) -> Share:
    """Share through the Share dialog (one recipient) and return the share it made."""
    if not isinstance(studies, list | tuple):
        studies = [studies]
    body = {
        "study": [study.study_uid for study in studies],
        "access": "report_read",
        "reason": "Second opinion",
        "patient_agreed": "on",
        "intent": "share",
        "recipient-0-kind": kind,
        **fields,
    }
    if kind in ("user", "group", "location"):
        body["recipient-0-target"] = str(target)
    else:
        body["recipient-0-text"] = str(target)
    before = set(Share.objects.values_list("pk", flat=True))
    response = browser(sender).post(DIALOG, body, **FRAGMENT)
    assert response.status_code == 200, text_of(response)[:2000]
    made = Share.objects.exclude(pk__in=before)
    assert made.count() == 1
    return made.get()


def assert_opens_nothing(client, api, study) -> None:
    """Every door of the study is shut for this recipient, as for a study that does not exist."""
    assert client.get(viewer_url(study)).status_code == 404
    assert client.get(frame_url(study)).status_code == 404
    assert client.get(thumbnail_url(study)).status_code == 404
    assert client.get(download_url(study)).status_code == 404
    refused = client.post(download_url(study))
    assert refused.status_code == 404
    assert refused["Content-Type"] != "application/zip"
    assert client.post(report_url(study), {"text": "Mine.", "version": ""}).status_code == 404
    assert study.study_uid not in directory_rows(client)
    assert api.get(api_url(study)).status_code == 404
    assert study.study_uid not in api_listed(api)


def assert_opens(client, api, study) -> None:
    assert client.get(viewer_url(study)).status_code == 200
    assert client.get(frame_url(study)).status_code == 200
    assert client.get(thumbnail_url(study)).status_code == 200
    download = client.post(download_url(study))
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    assert zip_of(download).namelist()
    assert study.study_uid in directory_rows(client)
    assert api.get(api_url(study)).status_code == 200
    assert study.study_uid in api_listed(api)


# --- Access level: the report, read vs write ----------------------------------------------------


def test_report_read_share_shows_the_report_and_refuses_every_way_to_write_it(
    reported, alice, carol
):
    dialog_share(alice, reported, "user", carol.pk, access="report_read")
    client, api = browser(carol), api_client(carol)

    page = client.get(viewer_url(reported))
    assert page.status_code == 200
    html = text_of(page)
    assert REPORT_TEXT in html
    # Read access: no editor on the page.
    assert f'action="{report_url(reported)}"' not in html
    assert "<textarea" not in html
    assert api.get(api_url(reported)).json()["report"]["text"] == REPORT_TEXT
    assert api.get(api_url(reported)).json()["access"]["level"] == "report_read"

    # The viewer's report form, posted anyway.
    assert post_report(client, reported, "Overwritten by a reader.").status_code == 403
    # The REST API has no way to write a report; none of its methods changes it.
    for method in ("put", "patch", "post", "delete"):
        response = getattr(api, method)(
            api_url(reported), {"report": {"text": "Mine."}}, format="json"
        )
        assert response.status_code in (403, 405), (method, response.status_code)
        response = getattr(api, method)(
            f"{api_url(reported)}report/", {"text": "Mine."}, format="json"
        )
        assert response.status_code in (403, 404, 405), (method, response.status_code)

    report = Report.objects.get(study=reported)
    assert (report.text, report.updated_by) == (REPORT_TEXT, alice)
    assert not report_changes(reported).filter(actor=carol).exists()


def test_report_write_share_writes_the_report_and_audits_it(reported, alice, carol):
    share(alice, reported, ("user", carol.pk), access="report_write")
    client, api = browser(carol), api_client(carol)

    page = text_of(client.get(viewer_url(reported)))
    assert f'action="{report_url(reported)}"' in page
    assert REPORT_TEXT in page  # the editor starts from the current text

    response = post_report(client, reported, NEW_REPORT_TEXT)

    assert response.status_code == 302
    assert response["Location"] == f"{viewer_url(reported)}#report"
    report = Report.objects.get(study=reported)
    assert (report.text, report.updated_by) == (NEW_REPORT_TEXT, carol)
    event = report_changes(reported).get(actor=carol)
    assert event.details == {
        "length_before": len(REPORT_TEXT),
        "length_after": len(NEW_REPORT_TEXT),
    }
    assert NEW_REPORT_TEXT in text_of(client.get(viewer_url(reported)))
    assert api.get(api_url(reported)).json()["report"]["text"] == NEW_REPORT_TEXT


def test_images_only_is_refused_for_a_user(ct, alice, carol):
    body = {
        "study": [ct.study_uid],
        "access": "images",
        "reason": "Second opinion",
        "patient_agreed": "on",
        "intent": "share",
        "recipient-0-kind": "user",
        "recipient-0-target": str(carol.pk),
    }
    response = browser(alice).post(DIALOG, body, **FRAGMENT)

    assert response.status_code == 400
    assert "“Images only” is not available for Carol Tester" in text_of(response)
    assert not Share.objects.exists()
    assert_opens_nothing(browser(carol), api_client(carol), ct)


@pytest.mark.parametrize("kind", ["group", "location"])
def test_images_only_share_to_a_group_or_location_shows_no_report_anywhere(
    kind, reported, alice, bob, carol, group, other_org
):
    if kind == "group":
        # bob sees the organization's studies only through his Neuroradiology group.
        recipient, target = bob, group.pk
    else:
        recipient, target = carol, Location.objects.get(organization=other_org, name="Imaging").pk
    dialog_share(alice, reported, kind, target, access="images")
    client, api = browser(recipient), api_client(recipient)

    page = client.get(viewer_url(reported))
    assert page.status_code == 200
    html = text_of(page)
    assert IMAGES_ONLY_HINT in html
    assert REPORT_TEXT not in html and "<textarea" not in html
    assert client.get(frame_url(reported)).status_code == 200  # the images are there
    detail = api.get(api_url(reported)).json()
    assert detail["report"] is None and detail["access"]["level"] == "images"
    assert REPORT_TEXT not in json.dumps(api_listed(api))

    assert post_report(client, reported, "Mine.").status_code == 403
    report = Report.objects.get(study=reported)
    assert (report.text, report.updated_by) == (REPORT_TEXT, alice)
    assert not report_changes(reported).filter(actor=recipient).exists()


# --- Anonymization: the page, the overlays, the report, the download ----------------------------


def test_anonymized_share_shows_only_the_pseudonym_on_the_recipients_pages(
    identified, alice, carol
):
    study, identity = identified
    write_report(alice, study)
    dialog_share(
        alice,
        study,
        "user",
        carol.pk,
        access="report_write",
        anonymize="on",
        allow_further_sharing="on",
    )
    client, api = browser(carol), api_client(carol)
    alias = pseudonym(study)
    assert alias.given_name.isdigit() and alias.family_name == ANONYMOUS_FAMILY_NAME

    # The viewer.
    page = client.get(viewer_url(study))
    assert page.status_code == 200
    html = text_of(page)
    assert alias.display_name in html and alias.patient_id in html
    assert identity.found_in(html) == []
    assert REPORT_TEXT not in html and NO_REPORT_FOR_ANONYMIZED in html
    # The download's confirmation page.
    confirmation = text_of(client.get(download_url(study)))
    assert alias.display_name in confirmation and identity.found_in(confirmation) == []
    # The directory row.
    row = directory_rows(client)[study.study_uid]
    assert alias.display_name in row and alias.patient_id in row
    assert identity.found_in(row) == []
    # Sharing further: the dialog names the pseudonym too.
    dialog = text_of(client.get(DIALOG, {"study": study.study_uid}, **FRAGMENT))
    assert dialog and alias.display_name in dialog and identity.found_in(dialog) == []
    # The API, listed and in detail.
    listed = api_listed(api)[study.study_uid]
    detail = api.get(api_url(study)).json()
    for body in (listed, detail):
        assert body["patient_name"] == alias.display_name
        assert body["patient_id"] == alias.patient_id
        assert body["birth_date"] is None and body["accession"] == ""
        assert body["anonymized"] is True
        assert identity.found_in(json.dumps(body, ensure_ascii=False)) == []
    assert detail["report"] is None

    # Searching by the real name or ID finds nothing: a match would tell who it is.
    for criteria in ({"q": identity.name_parts[0]}, {"patient_id": identity.patient_id}):
        searched = client.post(reverse("studies:search"), criteria, follow=True)
        assert searched.status_code == 200
        assert study.study_uid not in text_of(searched)


@pytest.mark.parametrize("access", ["report_read", "report_write"])
def test_anonymized_share_never_gives_the_report(access, reported, alice, carol):
    share(alice, reported, ("user", carol.pk), access=access, anonymize=True)
    client, api = browser(carol), api_client(carol)

    html = text_of(client.get(viewer_url(reported)))
    assert REPORT_TEXT not in html and NO_REPORT_FOR_ANONYMIZED in html
    assert f'action="{report_url(reported)}"' not in html
    assert api.get(api_url(reported)).json()["report"] is None
    assert post_report(client, reported, "Written through an anonymized share.").status_code == 403
    report = Report.objects.get(study=reported)
    assert (report.text, report.updated_by) == (REPORT_TEXT, alice)
    assert not report_changes(reported).filter(actor=carol).exists()


def test_anonymized_overlays_and_rendered_frames_carry_no_patient_data(identified, alice, carol):
    study, identity = identified
    dialog_share(alice, study, "user", carol.pk, anonymize="on")
    client = browser(carol)

    html = text_of(client.get(viewer_url(study)))
    # The overlays drawn over the image, and the data viewer.js fills them from.
    overlays = re.findall(r'<div class="overlay [^"]*">.*?</div>', html, re.S)
    assert len(overlays) == 4
    assert identity.found_in("".join(overlays)) == []
    viewer_data = re.search(
        r'<script id="viewer-data" type="application/json">(.*?)</script>', html, re.S
    )
    assert viewer_data and identity.found_in(unescape(viewer_data.group(1))) == []

    # The server draws no text on the pixels: the frame is the stored image, rendered as is.
    frame = client.get(frame_url(study))
    assert frame.status_code == 200 and frame["Content-Type"] == "image/png"
    instance = first_image(study)
    with storages["dicom"].open(instance.file, "rb") as stored:
        assert frame.content == render_frame(stored, frame=1, image_format="png")
    thumbnail = client.get(thumbnail_url(study))
    assert thumbnail.status_code == 200
    for body in (frame.content, thumbnail.content):
        image = Image.open(io.BytesIO(body))
        # No text chunks (a name in PNG metadata would travel with every saved image).
        assert identity.found_in(json.dumps(image.info, default=str, ensure_ascii=False)) == []
        assert identity.found_in(body.decode("latin-1")) == []
    event = AuditEvent.objects.get(action=Action.FRAMES_RENDERED, actor=carol)
    assert event.details["anonymized"] is True and event.details["via"] == "share"


def _text_values(ds: pydicom.Dataset):
    """Every value of every element, nested sequences and file meta included (bulk binary data
    left out), as text."""
    meta = getattr(ds, "file_meta", None)
    for element in [*(meta.iterall() if meta is not None else ()), *ds.iterall()]:
        if element.VR == "SQ" or element.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            continue
        yield element.keyword or str(element.tag), str(element.value)


def test_anonymized_download_is_de_identified(identified, alice, carol):
    study, identity = identified
    dialog_share(alice, study, "user", carol.pk, access="report_read", anonymize="on")
    alias = pseudonym(study)

    response = browser(carol).post(download_url(study))

    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zip_of(response)
    stored = Instance.objects.filter(series__study=study).exclude(file="").count()
    assert stored and len(archive.namelist()) == stored
    for name in archive.namelist():
        raw = archive.read(name)
        ds = pydicom.dcmread(io.BytesIO(raw))
        assert str(ds.PatientName) == alias.dicom_name
        assert ds.PatientID == alias.patient_id
        assert "PatientBirthDate" not in ds
        assert ds.PatientIdentityRemoved == "YES"
        leaked = [
            (keyword, value) for keyword, value in _text_values(ds) if identity.found_in(value)
        ]
        assert leaked == [], name
        for part in identity.name_parts:
            assert part.encode() not in raw
        assert ds.pixel_array.size > 0  # the images survive de-identification
    event = AuditEvent.objects.get(action=Action.STUDY_DOWNLOADED, actor=carol)
    assert event.details["anonymized"] is True and event.details["via"] == "share"


def test_the_owner_still_downloads_the_original_files(ct, alice, carol):
    """The control for the test above: the same archive, for the owner, names the patient."""
    dialog_share(alice, ct, "user", carol.pk, anonymize="on")
    archive = zip_of(browser(alice).post(download_url(ct)))
    names = {
        str(pydicom.dcmread(io.BytesIO(archive.read(n))).PatientName) for n in archive.namelist()
    }
    assert names == {"Dubois^Marie"}


@pytest.mark.parametrize("how", ["anonymized_to_user", "images_only_to_group"])
def test_a_recipient_cannot_widen_their_share_with_a_guest_link(how, reported, alice, bob, group):
    """Further sharing never widens access, and a guest link is further sharing: bob, who holds
    the study only through alice's share (anonymized, or images only; no further sharing), may
    not hand anyone (himself included, in another browser) the named patient or the report."""
    if how == "anonymized_to_user":
        share(alice, reported, ("user", bob.pk), anonymize=True)
    else:
        share(alice, reported, ("group", group.pk), access="images")
    assert user_study_access(bob, reported).can_share is False

    with pytest.raises(PermissionDenied):
        create_link(
            sender=bob, target=LinkTarget(study=reported), options=LinkOptions(), acknowledged=True
        )
    assert not GuestLink.objects.exists()
    worklist = Entry.objects.get(origin=EntryOrigin.SHARE).worklist
    if how == "anonymized_to_user":
        # His personal worklist belongs to no organization: no link to it at all.
        with pytest.raises(PermissionDenied):
            create_link(
                sender=bob,
                target=LinkTarget(worklist=worklist),
                options=LinkOptions(),
                acknowledged=True,
            )
        return
    # Nor through the group's worklist: a link to it grants only what may be handed on whole.
    created = create_link(
        sender=bob, target=LinkTarget(worklist=worklist), options=LinkOptions(), acknowledged=True
    )
    guest = HttpsClient()
    opened = guest.post(link_path(created.token), {"action": "open"})
    assert opened.status_code == 303
    page = guest.get(viewer_url(reported))
    # The guest holds nothing of this study: sent to log in, as anyone without access is.
    assert page.status_code == 302 and page.url.startswith(reverse("accounts:login"))


# --- Validity: expiry, policy bounds, unlimited, removal -----------------------------------------


def test_expired_share_opens_nothing_at_the_next_request_without_a_job(ct, alice, carol):
    zone = timezone.get_current_timezone()
    with time_machine.travel(datetime(2026, 3, 2, 9, 0, tzinfo=zone), tick=False):
        made = dialog_share(alice, ct, "user", carol.pk, valid_until="05/03/2026")
    assert made.valid_until == date(2026, 3, 5)

    with time_machine.travel(datetime(2026, 3, 5, 23, 59, 30, tzinfo=zone), tick=False):
        client, api = browser(carol), api_client(carol)
        assert_opens(client, api, ct)  # the whole "valid until" day
    with time_machine.travel(datetime(2026, 3, 6, 0, 0, 1, tzinfo=zone), tick=False):
        # The same browser and session, the next request: nothing ran in between.
        assert_opens_nothing(client, api, ct)
        # The study itself is there: its owner still opens it.
        assert browser(alice).get(viewer_url(ct)).status_code == 200
    assert Entry.objects.get(origin=EntryOrigin.SHARE).removed_at is None  # no job touched it


def test_the_policys_default_and_maximum_bound_the_recipients_access(org, ct, alice, carol):
    org.default_share_validity_days, org.max_share_validity_days = 30, 7
    org.save()
    zone = timezone.get_current_timezone()
    with time_machine.travel(datetime(2026, 3, 2, 9, 0, tzinfo=zone), tick=False):
        # Past the maximum: refused on its field, nothing shared.
        body = {
            "study": [ct.study_uid],
            "access": "report_read",
            "reason": "Second opinion",
            "patient_agreed": "on",
            "intent": "share",
            "recipient-0-kind": "user",
            "recipient-0-target": str(carol.pk),
            "valid_until": "10/03/2026",
        }
        refused = browser(alice).post(DIALOG, body, **FRAGMENT)
        assert refused.status_code == 400
        assert "Your organization allows shares valid for at most 7 days." in text_of(refused)
        assert not Share.objects.exists()
        assert browser(carol).get(viewer_url(ct)).status_code == 404
        # Left empty: the default, capped at the maximum.
        made = dialog_share(alice, ct, "user", carol.pk, valid_until="")
    assert made.valid_until == date(2026, 3, 9)

    with time_machine.travel(datetime(2026, 3, 9, 23, 59, tzinfo=zone), tick=False):
        assert browser(carol).get(viewer_url(ct)).status_code == 200
    with time_machine.travel(datetime(2026, 3, 10, 0, 0, 1, tzinfo=zone), tick=False):
        assert browser(carol).get(viewer_url(ct)).status_code == 404


def test_unlimited_access_where_the_policy_allows_it_still_opens_years_later(
    org, ct, alice, carol, bob, group
):
    made = dialog_share(alice, ct, "user", carol.pk, unlimited="on")
    assert made.valid_until is None
    with time_machine.travel(timezone.now() + timedelta(days=3650), tick=False):
        assert_opens(browser(carol), api_client(carol), ct)

    org.allow_unlimited_validity = False
    org.save()
    body = {
        "study": [ct.study_uid],
        "access": "images",
        "reason": "Second opinion",
        "patient_agreed": "on",
        "intent": "share",
        "recipient-0-kind": "group",
        "recipient-0-target": str(group.pk),
        "unlimited": "on",
    }
    refused = browser(alice).post(DIALOG, body, **FRAGMENT)
    assert refused.status_code == 400
    assert "Your organization's policy does not allow unlimited access." in text_of(refused)
    assert browser(bob).get(viewer_url(ct)).status_code == 404


def test_removed_share_opens_nothing_at_the_next_request(ct, alice, carol):
    made = dialog_share(alice, ct, "user", carol.pk, anonymize="on")
    client, api = browser(carol), api_client(carol)
    assert_opens(client, api, ct)

    removed = api_client(alice).delete(reverse("api-share", args=[made.pk]))

    assert removed.status_code == 204
    assert_opens_nothing(client, api, ct)
    assert browser(alice).get(viewer_url(ct)).status_code == 200
