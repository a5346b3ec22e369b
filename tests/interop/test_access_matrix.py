"""Every DICOMweb route, every kind of caller: the access authority is honoured route by route.

The routes are read from ``dicomweb.urls`` (every URL pattern with its parameters), so a route
added there is in this matrix without anyone editing it; a new parameter name fails loudly here
until :data:`PARAMETERS` says what to put in it. A route whose path ends in ``studies``,
``series`` or ``instances`` is a search (QIDO-RS); every other one retrieves (WADO-RS,
rendered, thumbnails, bulk data).

- Outsiders (a clinician of another organization, a guest-link recipient of another study, a
  share still waiting for its SMS code) find nothing of the study with any search (``[]`` under
  its path; the guest's own study alone in the others) and get 404 from every retrieve route,
  and never a byte naming the patient.
- Anonymous callers (no credentials) get 401 with ``WWW-Authenticate`` everywhere.
- An anonymized share is served on every route, and no answer names the patient; like an
  images-only share it never reaches the study's structured report: absent from every search
  and every study-level answer, 404 where it is addressed.
The owner's own answers (200 with content everywhere) show that the matrix asks real questions.
"""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from django.urls import URLPattern, reverse
from pydicom.uid import generate_uid

from accounts.models import Membership
from dicomweb import urls as dicomweb_urls
from studies.models import AccessLevel, Instance
from studies.synthetic import bundled_test_file, to_bytes
from tests.accounts.helpers import HttpsClient
from tests.conftest import make_user
from tests.dicomweb.conftest import CT_STUDY_UID, ingest, token_client
from tests.factories import make_study, share_entry
from tests.guestlinks.conftest import link_path, make_link  # noqa: F401 - a fixture used here

pytestmark = pytest.mark.django_db

# What each route parameter is filled with, for a given instance.
PARAMETERS = {
    "study_uid": lambda instance: instance.series.study.study_uid,
    "series_uid": lambda instance: instance.series.series_uid,
    "instance_uid": lambda instance: instance.sop_instance_uid,
    "frame_list": lambda instance: "1",
    "frame": lambda instance: 1,
    "tag_path": lambda instance: "7FE00010",  # Pixel Data
}
SEARCH_ENDINGS = ("studies", "series", "instances")
# What names Dubois^Marie in the stored files (name, ID, birth date, accession).
PHI = (b"Dubois", b"Marie", b"PAT-7001", b"19590303", b"ACC7001")

ROUTES: list[URLPattern] = [p for p in dicomweb_urls.urlpatterns if isinstance(p, URLPattern)]


def is_search(route: URLPattern) -> bool:
    return str(route.pattern).rstrip("/").rsplit("/", 1)[-1] in SEARCH_ENDINGS


def url_of(route: URLPattern, instance: Instance) -> str:
    names = list(route.pattern.converters)
    unknown = [name for name in names if name not in PARAMETERS]
    assert not unknown, f"route {route.name}: say in PARAMETERS what {unknown} holds"
    return reverse(
        f"dicomweb:{route.name}", kwargs={name: PARAMETERS[name](instance) for name in names}
    )


def body_of(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def answers(client, instance: Instance) -> dict[str, tuple[URLPattern, int, bytes, object]]:
    """Every route's answer to ``client`` (GET, the route's default media type), by route."""
    found = {}
    for route in ROUTES:
        response = client.get(url_of(route, instance))
        found[route.name] = (route, response.status_code, body_of(response), response)
    return found


def test_the_matrix_covers_every_route_and_its_searches():
    assert len(ROUTES) == len({route.name for route in ROUTES}) >= 20
    assert {route.name for route in ROUTES if is_search(route)} == {
        "studies",
        "all_series",
        "all_instances",
        "study_series",
        "study_instances",
        "series_instances",
    }


@pytest.fixture
def report(ct_study, org, location) -> Instance:
    """pydicom's structured report, filed in the CT study as its own series."""
    ds = pydicom.dcmread(bundled_test_file("test-SR.dcm"))
    ds.StudyInstanceUID = CT_STUDY_UID
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName = "PAT-7001", "Dubois^Marie"
    ingest(org, location, {"report": to_bytes(ds)})
    return Instance.objects.select_related("series__study").get(sop_instance_uid=ds.SOPInstanceUID)


@pytest.fixture
def image(ct_study, report) -> Instance:
    """The first slice of the CT series (the study also holds an MR and the report)."""
    return (
        Instance.objects.select_related("series__study")
        .filter(series__study=ct_study.study, series__modality="CT", has_pixels=True)
        .order_by("number")
        .first()
    )


def recipient(name: str, other_org, clinician_role):
    user = make_user(name)
    Membership.objects.create(user=user, organization=other_org, role=clinician_role)
    return user


def assert_no_failures(failures: list[str]) -> None:
    assert not failures, "\n".join(failures)


# --- The owner: the baseline ------------------------------------------------------------------


def test_the_owner_gets_content_on_every_route(image, alice):
    failures = []
    for name, (route, status, body, _response) in answers(token_client(alice), image).items():
        if status != 200 or not body:
            failures.append(f"{name}: {status}")
        elif is_search(route) and not json.loads(body):
            failures.append(f"{name}: an empty search")
    assert_no_failures(failures)


# --- Outsiders --------------------------------------------------------------------------------


def studies_in(results: list[dict]) -> set[str]:
    return {result["0020000D"]["Value"][0] for result in results}


def assert_outsider(client, instance: Instance, who: str) -> None:
    study_uid = instance.series.study.study_uid
    failures = []
    for name, (route, status, body, _response) in answers(client, instance).items():
        if is_search(route):
            # Searches under the study find nothing; the others may list the caller's own
            # studies (a guest's), never this one.
            scoped = "study_uid" in route.pattern.converters
            found = json.loads(body) if status == 200 else None
            if found is None or (scoped and found) or study_uid in studies_in(found):
                failures.append(f"{who} {name}: {status} {body[:120]!r} (expected nothing)")
        elif status != 404:
            failures.append(f"{who} {name}: {status} (expected 404)")
        if any(term in body for term in PHI):
            failures.append(f"{who} {name}: the answer names the patient")
    assert_no_failures(failures)


def test_a_clinician_of_another_organization_finds_nothing_and_retrieves_nothing(image, carol):
    assert_outsider(token_client(carol), image, "carol")


def test_a_guest_of_another_study_finds_nothing_and_retrieves_nothing(
    image,
    org,
    location,
    make_link,  # noqa: F811
):
    other = make_study(org, location=location)
    _link, token = make_link(other)
    guest = HttpsClient()
    assert guest.post(link_path(token), {"action": "open"}).status_code == 303
    # The grant works: the guest finds the study of their link, and only that one.
    listed = json.loads(body_of(guest.get(reverse("dicomweb:studies"))))
    assert [study["0020000D"]["Value"][0] for study in listed] == [other.study_uid]

    assert_outsider(guest, image, "guest")


def test_a_share_waiting_for_its_sms_code_answers_nothing(image, other_org, clinician_role):
    waiting = recipient("gina", other_org, clinician_role)
    share_entry(waiting, image.series.study, two_factor_required=True)

    assert_outsider(token_client(waiting), image, "gina")


def test_anonymous_callers_are_asked_to_authenticate_on_every_route(image):
    failures = []
    for name, (_route, status, body, response) in answers(HttpsClient(), image).items():
        if status != 401 or "Bearer" not in response.get("WWW-Authenticate", ""):
            failures.append(f"{name}: {status} (expected 401 with WWW-Authenticate)")
        if any(term in body for term in PHI):
            failures.append(f"{name}: the answer names the patient")
    assert_no_failures(failures)


# --- Anonymized and images-only shares --------------------------------------------------------


def assert_report_withheld(client, image: Instance, report: Instance, who: str) -> list[str]:
    """No answer about the study mentions the report; every route addressed to it is 404 (or
    an empty search)."""
    failures = []
    hidden = (report.sop_instance_uid.encode(), report.series.series_uid.encode())
    for name, (_route, _status, body, _response) in answers(client, image).items():
        if any(uid in body for uid in hidden):
            failures.append(f"{who} {name}: the answer mentions the report")
    for name, (route, status, body, _response) in answers(client, report).items():
        if "series_uid" not in route.pattern.converters:
            continue  # study-level and unscoped routes: checked above
        if is_search(route):
            if status != 200 or json.loads(body) != []:
                failures.append(f"{who} {name} of the report: {status} (expected 200 [])")
        elif status != 404:
            failures.append(f"{who} {name} of the report: {status} (expected 404)")
    return failures


def test_an_anonymized_share_is_served_everywhere_without_naming_the_patient(
    image, report, other_org, clinician_role
):
    reader = recipient("erin", other_org, clinician_role)
    share_entry(reader, image.series.study, level=AccessLevel.REPORT_READ, anonymized=True)
    client = token_client(reader)

    failures = []
    for name, (route, status, body, _response) in answers(client, image).items():
        if status != 200 or not body:
            failures.append(f"erin {name}: {status} (expected 200)")
        elif is_search(route) and not json.loads(body):
            failures.append(f"erin {name}: an empty search")
        for term in PHI:
            if term in body:
                failures.append(f"erin {name}: the answer holds {term.decode()!r}")
    # An anonymized study's report is never accessible, whatever level the share gave.
    failures += assert_report_withheld(client, image, report, "erin")
    assert_no_failures(failures)


def test_an_images_only_share_is_served_everywhere_but_never_reaches_the_report(
    image, report, other_org, clinician_role
):
    viewer = recipient("frank", other_org, clinician_role)
    share_entry(viewer, image.series.study, level=AccessLevel.IMAGES)
    client = token_client(viewer)

    failures = []
    for name, (route, status, body, _response) in answers(client, image).items():
        if status != 200 or not body:
            failures.append(f"frank {name}: {status} (expected 200)")
        elif is_search(route) and not json.loads(body):
            failures.append(f"frank {name}: an empty search")
    failures += assert_report_withheld(client, image, report, "frank")
    assert_no_failures(failures)


def test_the_owner_does_reach_the_report(image, report, alice):
    # Otherwise the two tests above would prove nothing about the report.
    client = token_client(alice)
    listed = answers(client, image)
    study_instances = json.loads(listed["study_instances"][2])
    retrieved = listed["study"][2]

    assert report.sop_instance_uid in [i["00080018"]["Value"][0] for i in study_instances]
    assert report.sop_instance_uid.encode() in retrieved
    assert client.get(url_of(_route("instance_metadata"), report)).status_code == 200


def multipart_parts(response) -> list[bytes]:
    """The parts' bodies of a multipart/related answer."""
    boundary = next(
        value.strip().strip('"')
        for key, _, value in (p.partition("=") for p in response["Content-Type"].split(";"))
        if key.strip().lower() == "boundary"
    )
    delimiter = b"--" + boundary.encode()
    parts = []
    for chunk in body_of(response).split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        _headers, _, content = chunk.partition(b"\r\n\r\n")
        parts.append(content.removesuffix(b"\r\n"))
    return parts


def _route(name: str) -> URLPattern:
    return next(route for route in ROUTES if route.name == name)


def test_anonymized_datasets_are_de_identified_not_just_renamed(image, other_org, clinician_role):
    reader = recipient("erin", other_org, clinician_role)
    share_entry(reader, image.series.study, level=AccessLevel.IMAGES, anonymized=True)
    client = token_client(reader)

    response = client.get(
        url_of(_route("instance"), image),
        HTTP_ACCEPT='multipart/related; type="application/dicom"',
    )
    [part] = multipart_parts(response)
    dataset = pydicom.dcmread(io.BytesIO(part))

    assert response.status_code == 200
    assert "Dubois" not in str(dataset.PatientName)
    assert dataset.PatientID != "PAT-7001"
    assert "PatientBirthDate" not in dataset or not dataset.PatientBirthDate
    assert dataset.SOPInstanceUID == image.sop_instance_uid
