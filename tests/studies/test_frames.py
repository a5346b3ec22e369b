"""Rendered frames at the DICOMweb path: who may see them, in which format, cached, audited once
per viewing session."""

from __future__ import annotations

import io
from datetime import timedelta

import pydicom
import pytest
import time_machine
from django.core.files.storage import storages
from django.urls import reverse
from django.utils import timezone
from PIL import Image
from pydicom.uid import generate_uid

from accounts.authentication import TOKEN_PURPOSE
from accounts.models import ApiToken
from accounts.tokens import secret_digest
from audit.models import Action, AuditEvent
from studies.models import Instance
from studies.rendering import Window
from studies.services.ingestion import ingest_files
from studies.synthetic import BUNDLED_RENDERABLE, bundled_test_file, make_series, to_bytes
from studies.views.frames import frame_cache_key, negotiate_format
from tests.accounts.helpers import HttpsClient, plain_static_storage
from tests.factories import share_entry

STUDY_UID = "1.2.826.0.1.3680043.8.498.6001"


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    plain_static_storage(settings)


def login(user) -> HttpsClient:
    client = HttpsClient()
    client.force_login(user)
    return client


def ingest(org, location, name: str, data: bytes) -> list[Instance]:
    result = ingest_files(files=[(name, io.BytesIO(data))], organization=org, location=location)
    assert not result.rejected, result.rejected
    return list(Instance.objects.filter(sop_instance_uid__in=result.stored))


def bundled_bytes(name: str) -> bytes:
    """The bundled file; some of pydicom's JPEG-LS samples carry no study or series UID, so
    give them one (the compressed pixel data is written back untouched)."""
    data = bundled_test_file(name).read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    if "StudyInstanceUID" in ds and "SeriesInstanceUID" in ds:
        return data
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID = "PAT-JLS"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def frame_url(instance: Instance, frame: int = 1, series_uid: str | None = None) -> str:
    series = instance.series
    return reverse(
        "dicomweb:rendered_frame",
        args=[
            series.study.study_uid,
            series_uid or series.series_uid,
            instance.sop_instance_uid,
            frame,
        ],
    )


@pytest.fixture
def ct(org, location):
    """A three-slice CT of St. Elsewhere's patient."""
    datasets = make_series(
        patient_name="Dubois^Marie",
        patient_id="PAT-6001",
        birth_date="19590303",
        sex="F",
        study_uid=STUDY_UID,
        study_date="20240601",
        study_description="CT Head",
        accession="ACC6001",
        modality="CT",
        series_number=1,
        series_description="Head",
        slices=3,
        rows=64,
        columns=48,
        body_part="HEAD",
    )
    for i, ds in enumerate(datasets):
        ingest(org, location, f"IM{i}", to_bytes(ds))
    return list(Instance.objects.filter(series__study__study_uid=STUDY_UID).order_by("number"))


# --- Every renderable transfer syntax, PNG and JPEG -------------------------------------------


@pytest.mark.parametrize("name", BUNDLED_RENDERABLE)
def test_each_renderable_bundled_file_renders_as_png_and_jpeg_after_ingestion(
    org, location, alice, name
):
    [instance] = ingest(org, location, name, bundled_bytes(name))
    client = login(alice)

    png = client.get(frame_url(instance), HTTP_ACCEPT="image/png")
    jpeg = client.get(frame_url(instance), HTTP_ACCEPT="image/jpeg")

    assert png.status_code == 200, png.content[:200]
    assert png["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.format == "PNG"
    assert image.size == (instance.columns, instance.rows)
    assert jpeg.status_code == 200
    assert jpeg["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
    assert "no-store" in png["Cache-Control"]


def test_last_frame_of_a_multiframe_renders_and_one_past_it_is_404(org, location, alice):
    [instance] = ingest(org, location, "rtdose.dcm", bundled_bytes("rtdose.dcm"))
    client = login(alice)
    assert instance.frames == 15

    assert client.get(frame_url(instance, 15)).status_code == 200
    assert client.get(frame_url(instance, 16)).status_code == 404
    assert client.get(frame_url(instance, 0)).status_code == 404


# --- Parameters -------------------------------------------------------------------------------


def test_window_changes_the_rendering_and_a_bad_window_is_400(ct, alice):
    client = login(alice)
    url = frame_url(ct[1])

    default = client.get(url)
    bone = client.get(url, {"window": "300,1500"})
    words = client.get(url, {"window": "brain"})
    zero = client.get(url, {"window": "40,0"})

    assert default.status_code == bone.status_code == 200
    assert default.content != bone.content
    assert words.status_code == 400
    assert "center and width" in words.content.decode()
    assert zero.status_code == 400
    assert "width" in zero.content.decode()


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", "image/png"),
        ("*/*", "image/png"),
        ("image/*", "image/png"),
        ("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "image/png"),
        ("image/jpeg", "image/jpeg"),
        ("image/png, image/jpeg", "image/png"),
        ("image/webp, image/jpeg;q=0.5, */*;q=0.1", "image/jpeg"),
        ("image/png;q=0, image/*", "image/jpeg"),
    ],
)
def test_content_negotiation(ct, alice, accept, expected):
    response = login(alice).get(frame_url(ct[0]), HTTP_ACCEPT=accept)

    assert response.status_code == 200
    assert response["Content-Type"] == expected


@pytest.mark.parametrize("accept", ["text/html", "image/webp", "application/dicom"])
def test_types_that_exclude_png_and_jpeg_are_406(ct, alice, accept):
    response = login(alice).get(frame_url(ct[0]), HTTP_ACCEPT=accept)

    assert response.status_code == 406
    assert negotiate_format(accept) is None


# --- Who may see frames -----------------------------------------------------------------------


def test_instance_must_belong_to_the_series_and_study_in_the_path(org, location, ct, alice):
    [other] = ingest(org, location, "CT_small.dcm", bundled_bytes("CT_small.dcm"))
    client = login(alice)

    wrong_series = client.get(frame_url(ct[0], series_uid=other.series.series_uid))
    wrong_study = client.get(
        reverse(
            "dicomweb:rendered_frame",
            args=[other.series.study.study_uid, ct[0].series.series_uid, ct[0].sop_instance_uid, 1],
        )
    )
    unknown = client.get(
        reverse(
            "dicomweb:rendered_frame", args=[STUDY_UID, ct[0].series.series_uid, "1.2.3.4.5", 1]
        )
    )

    assert wrong_series.status_code == 404
    assert wrong_study.status_code == 404
    assert unknown.status_code == 404


def test_outsider_gets_404_for_frames_of_the_organizations_study(ct, carol):
    client = login(carol)

    assert client.get(frame_url(ct[0])).status_code == 404
    thumbnail = reverse("dicomweb:series_thumbnail", args=[STUDY_UID, ct[0].series.series_uid])
    assert client.get(thumbnail).status_code == 404
    assert not AuditEvent.objects.filter(action=Action.FRAMES_RENDERED).exists()


def test_anonymous_visitor_gets_404(ct):
    assert HttpsClient().get(frame_url(ct[0])).status_code == 404


def test_anonymized_share_recipient_sees_frames(ct, carol):
    share_entry(
        carol,
        ct[0].series.study,
        level="images",
        anonymized=True,
    )

    response = login(carol).get(frame_url(ct[0]))

    assert response.status_code == 200
    event = AuditEvent.objects.get(action=Action.FRAMES_RENDERED)
    assert event.actor == carol
    assert event.details["anonymized"] is True


def test_expired_share_gives_404(ct, carol):
    share_entry(
        carol,
        ct[0].series.study,
        level="images",
        valid_until=timezone.now() - timedelta(minutes=1),
    )

    assert login(carol).get(frame_url(ct[0])).status_code == 404


def test_dicomweb_client_authenticates_with_an_api_token(ct, alice):
    secret = ApiToken.new_secret()
    ApiToken.objects.create(
        user=alice, digest=secret_digest(secret, purpose=TOKEN_PURPOSE), prefix=secret[:8]
    )

    good = HttpsClient().get(frame_url(ct[0]), HTTP_AUTHORIZATION=f"Token {secret}")
    bad = HttpsClient().get(frame_url(ct[0]), HTTP_AUTHORIZATION="Token not-a-token")

    assert good.status_code == 200
    assert AuditEvent.objects.get(action=Action.FRAMES_RENDERED).actor == alice
    assert bad.status_code == 401


# --- Caching ----------------------------------------------------------------------------------


def test_second_request_is_served_from_the_cache(ct, alice):
    client = login(alice)
    instance = ct[0]
    first = client.get(frame_url(instance), {"window": "40,80"}, HTTP_ACCEPT="image/jpeg")
    storages["dicom"].delete(instance.file)  # only the cache can answer now

    second = client.get(frame_url(instance), {"window": "40,80"}, HTTP_ACCEPT="image/jpeg")

    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    # Another rendering of the same frame is another key: it needs the (now missing) file.
    with pytest.raises(FileNotFoundError):
        client.get(frame_url(instance), {"window": "40,400"}, HTTP_ACCEPT="image/jpeg")


def test_cache_key_holds_no_patient_data(ct):
    instance = ct[0]
    study = instance.series.study

    key = frame_cache_key(instance, frame=1, window=Window(40, 400), image_format="png", size=None)

    assert instance.sha256 in key and "40,400" in key and "png" in key
    for secret in (
        study.patient.patient_id,
        study.patient.family_name,
        study.study_uid,
        study.accession,
        instance.sop_instance_uid,
    ):
        assert secret not in key


# --- Audit ------------------------------------------------------------------------------------


def test_frames_rendered_is_audited_once_per_session_and_study(org, location, ct, alice, dana):
    alice_client = login(alice)
    for instance in ct:
        for frame_format in ("image/png", "image/jpeg"):
            response = alice_client.get(frame_url(instance), HTTP_ACCEPT=frame_format)
            assert response.status_code == 200
    thumbnail = reverse("dicomweb:series_thumbnail", args=[STUDY_UID, ct[0].series.series_uid])
    alice_client.get(thumbnail)

    events = AuditEvent.objects.filter(action=Action.FRAMES_RENDERED)
    assert events.count() == 1
    event = events.get()
    assert (event.actor, event.study_uid, event.event_code) == (alice, STUDY_UID, "110103")
    assert event.patient_id == "PAT-6001"

    # Another principal, and another study, are other sessions.
    login(dana).get(frame_url(ct[0]))
    [other] = ingest(org, location, "CT_small.dcm", bundled_bytes("CT_small.dcm"))
    alice_client.get(frame_url(other))
    assert events.count() == 3

    # Half an hour later, viewing again is a new session.
    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        login(alice).get(frame_url(ct[2]))  # a new login: the old session has gone idle
    assert events.filter(actor=alice, study_uid=STUDY_UID).count() == 2


def test_failed_rendering_is_not_audited_and_says_why(org, location, alice):
    name = "JPEG2000-embedded-sequence-delimiter.dcm"  # corrupted codestream
    [instance] = ingest(org, location, name, bundled_test_file(name).read_bytes())

    response = login(alice).get(frame_url(instance))

    assert response.status_code == 422
    assert "cannot be displayed" in response.content.decode()
    assert not AuditEvent.objects.filter(action=Action.FRAMES_RENDERED).exists()


# --- Thumbnails -------------------------------------------------------------------------------


def test_series_thumbnail_is_the_middle_image_small_and_cached(ct, alice):
    client = login(alice)
    url = reverse("dicomweb:series_thumbnail", args=[STUDY_UID, ct[0].series.series_uid])

    first = client.get(url)
    storages["dicom"].delete(ct[1].file)  # the middle slice
    second = client.get(url)

    assert first.status_code == second.status_code == 200
    assert first["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(first.content))
    assert max(image.size) <= 128
    assert second.content == first.content


def test_thumbnail_of_a_series_of_another_study_is_404(org, location, ct, alice):
    [other] = ingest(org, location, "CT_small.dcm", bundled_bytes("CT_small.dcm"))

    response = login(alice).get(
        reverse("dicomweb:series_thumbnail", args=[STUDY_UID, other.series.series_uid])
    )

    assert response.status_code == 404
