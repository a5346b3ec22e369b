"""Rendered images and thumbnails at every DICOMweb level: which image each level shows, in which
format and rendering, for whom, cached, and audited once per viewing session."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pydicom
import pytest
import time_machine
from django.core.cache import caches
from django.core.files.storage import storages
from django.urls import reverse
from django.utils import timezone
from PIL import Image, ImageChops
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from audit.models import Action, AuditEvent
from dicomweb.rendered import negotiate_format
from studies import rendering
from studies.models import Instance
from studies.rendering import PlainImage, Viewport, Window, render_frame
from studies.services.ingestion import ingest_files
from studies.services.rendered_images import RecentRenderings, frame_cache_key
from studies.synthetic import BUNDLED_RENDERABLE, bundled_test_file, to_bytes
from tests.accounts.helpers import HttpsClient, sign_in
from tests.dicomweb.conftest import CT_STUDY_UID, api_token, ct_datasets, token_client
from tests.dicomweb.plain_http import dicomweb_client, live_portal
from tests.factories import share_entry


def login(user) -> HttpsClient:
    client = HttpsClient()
    return sign_in(client, user)


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


def url_of(instance: Instance, kind: str = "rendered", *, level: str = "frame", frame: int = 1):
    """The ``kind`` (rendered or thumbnail) URL of ``instance`` at ``level``."""
    series = instance.series
    ids = {"study_uid": series.study.study_uid}
    if level in ("series", "instance", "frame"):
        ids["series_uid"] = series.series_uid
    if level in ("instance", "frame"):
        ids["instance_uid"] = instance.sop_instance_uid
    if level == "frame":
        ids["frame"] = frame
    name = {"study": "study", "series": "series", "instance": "instance", "frame": "frame"}[level]
    if (name, kind) == ("frame", "rendered"):
        return reverse("dicomweb:rendered_frame", kwargs=ids)
    return reverse(f"dicomweb:{name}_{kind}", kwargs=ids)


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


def stored_rendering(instance: Instance, **kwargs) -> bytes:
    with storages["dicom"].open(instance.file, "rb") as stored:
        return render_frame(stored, **kwargs)


def image_of(response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


def detail(response) -> str:
    return json.loads(response.content)["detail"]


@pytest.fixture
def ct(ct_study) -> list[Instance]:
    """The three CT slices (64 rows x 48 columns) of Dubois^Marie's study, in order."""
    return [i for i in ct_study.instances if i.series.modality == "CT"]


@pytest.fixture
def mr(ct_study) -> Instance:
    """The study's one MR slice, in series 2."""
    return next(i for i in ct_study.instances if i.series.modality == "MR")


def structured_report(study_uid: str) -> bytes:
    """A Basic Text SR in the study: an object without pixel data."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.SeriesNumber = 90
    ds.InstanceNumber = 1
    ds.PatientName = "Dubois^Marie"
    ds.PatientID = "PAT-7001"
    ds.ValueType = "CONTAINER"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


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
    image = image_of(png)
    assert image.format == "PNG"
    assert image.size == (instance.columns, instance.rows)
    assert jpeg.status_code == 200
    assert jpeg["Content-Type"] == "image/jpeg"
    assert image_of(jpeg).format == "JPEG"
    assert "no-store" in png["Cache-Control"]


def test_last_frame_of_a_multiframe_renders_and_one_past_it_is_404(org, location, alice):
    [instance] = ingest(org, location, "rtdose.dcm", bundled_bytes("rtdose.dcm"))
    client = login(alice)
    assert instance.frames == 15

    assert client.get(frame_url(instance, 15)).status_code == 200
    assert client.get(frame_url(instance, 16)).status_code == 404
    assert client.get(frame_url(instance, 0)).status_code == 404


# --- Which image each level shows -------------------------------------------------------------


def test_study_series_and_instance_render_their_first_image(ct, mr, alice):
    client = login(alice)

    study = client.get(url_of(ct[2], level="study"))
    series = client.get(url_of(mr, level="series"))
    instance = client.get(url_of(ct[2], level="instance"))

    assert study.status_code == series.status_code == instance.status_code == 200
    # The study's first series is the CT (series 1), and its first image the first slice.
    assert study.content == stored_rendering(ct[0], frame=1)
    assert series.content == stored_rendering(mr, frame=1)
    assert instance.content == stored_rendering(ct[2], frame=1)
    assert image_of(study).size == (48, 64)


def test_a_multiframe_instance_renders_its_first_frame_and_its_thumbnail_the_middle_one(
    org, location, alice
):
    [cine] = ingest(org, location, "rtdose.dcm", bundled_bytes("rtdose.dcm"))
    client = login(alice)

    rendered = client.get(url_of(cine, level="instance"))
    thumbnail = client.get(url_of(cine, "thumbnail", level="instance"))

    assert rendered.content == stored_rendering(cine, frame=1)
    assert thumbnail.content == stored_rendering(cine, frame=8, max_size=128)


def test_thumbnails_at_every_level_are_small_representative_images(ct, mr, alice):
    client = login(alice)

    answers = {
        level: client.get(url_of(ct[0], "thumbnail", level=level))
        for level in ("study", "series", "instance", "frame")
    }

    for level, response in answers.items():
        assert response.status_code == 200, level
        assert response["Content-Type"] == "image/png"
        assert max(image_of(response).size) <= 128
    # The study's and the series' thumbnails are the CT's middle slice.
    middle = stored_rendering(ct[1], frame=1, max_size=128)
    assert answers["study"].content == answers["series"].content == middle
    assert answers["instance"].content == stored_rendering(ct[0], frame=1, max_size=128)
    mr_thumbnail = client.get(url_of(mr, "thumbnail", level="series"))
    assert mr_thumbnail.content == stored_rendering(mr, frame=1, max_size=128)


def test_series_thumbnail_is_the_middle_image_small_and_cached(ct, alice):
    client = login(alice)
    url = reverse("dicomweb:series_thumbnail", args=[CT_STUDY_UID, ct[0].series.series_uid])

    first = client.get(url)
    storages["dicom"].delete(ct[1].file)  # the middle slice
    second = client.get(url)

    assert first.status_code == second.status_code == 200
    assert first["Content-Type"] == "image/png"
    assert max(image_of(first).size) <= 128
    assert second.content == first.content


def test_an_object_without_pixel_data_has_no_rendering(org, location, ct, alice):
    ingest(org, location, "sr", structured_report(CT_STUDY_UID))
    report = Instance.objects.get(series__modality="SR")
    client = login(alice)

    for kind in ("rendered", "thumbnail"):
        for level in ("series", "instance"):
            response = client.get(url_of(report, kind, level=level))
            assert response.status_code == 404, (kind, level)
    assert client.get(url_of(report, level="frame")).status_code == 404


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
    assert "center and width" in detail(words)
    assert zero.status_code == 400
    assert "width" in detail(zero)


def test_window_takes_the_voi_function_as_a_third_value(ct, alice):
    client = login(alice)
    url = frame_url(ct[1])

    answers = {
        function: client.get(url, {"window": f"40,80{function}"})
        for function in ("", ",linear", ",LINEAR-EXACT", ",sigmoid")
    }
    unknown = client.get(url, {"window": "40,80,gamma"})

    assert {response.status_code for response in answers.values()} == {200}
    # The CT's own VOI LUT Function is LINEAR, so naming it changes nothing.
    assert answers[""].content == answers[",linear"].content
    assert answers[",sigmoid"].content != answers[",linear"].content
    assert answers[",LINEAR-EXACT"].content != answers[",linear"].content
    assert answers[",sigmoid"].content == stored_rendering(
        ct[1], frame=1, window=Window(40, 80, "SIGMOID")
    )
    assert unknown.status_code == 400
    assert "linear, linear-exact or sigmoid" in detail(unknown)


def test_viewport_scales_to_fit_keeping_the_aspect_ratio(ct, alice):
    client = login(alice)
    url = frame_url(ct[0])  # 48 columns x 64 rows

    smaller = client.get(url, {"viewport": "32,32"})
    larger = client.get(url, {"viewport": "96,512"})

    assert smaller.status_code == larger.status_code == 200
    assert image_of(smaller).size == (24, 32)
    assert image_of(larger).size == (96, 128)


def test_viewport_crops_and_flips_the_source_region(ct, alice):
    client = login(alice)
    url = frame_url(ct[0])
    whole = image_of(client.get(url)).convert("L")
    region = whole.crop((8, 20, 18, 30))

    cropped = client.get(url, {"viewport": "10,10,8,20,10,10"})
    mirrored = client.get(url, {"viewport": "10,10,8,20,-10,10"})
    upside_down = client.get(url, {"viewport": "10,10,8,20,10,-10"})
    to_the_edge = client.get(url, {"viewport": "40,40,40,60,,"})

    assert ImageChops.difference(image_of(cropped).convert("L"), region).getbbox() is None
    flipped = region.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert ImageChops.difference(image_of(mirrored).convert("L"), flipped).getbbox() is None
    flopped = region.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    assert ImageChops.difference(image_of(upside_down).convert("L"), flopped).getbbox() is None
    # From (40, 60) to the image's edge: 8 x 4 pixels, scaled up to fit 40 x 40.
    assert image_of(to_the_edge).size == (40, 20)


@pytest.mark.parametrize(
    ("viewport", "reason"),
    [
        ("256", "vw,vh"),
        ("a,b", "whole numbers"),
        ("0,10", "between 1 and"),
        ("100000,100", "between 1 and"),
        ("10,10,1", "vw,vh"),
        ("10,10,-1,0,5,5", "cannot be negative"),
        ("10,10,0,0,0,5", "cannot be 0"),
        ("10,10,100,100,5,5", "outside"),
    ],
)
def test_a_bad_viewport_is_400_with_the_reason(ct, alice, viewport, reason):
    response = login(alice).get(frame_url(ct[0]), {"viewport": viewport})

    assert response.status_code == 400
    assert reason in detail(response)
    assert not AuditEvent.objects.filter(action=Action.FRAMES_RENDERED).exists()


def test_a_thumbnails_viewport_replaces_its_default_size(ct, alice):
    url = url_of(ct[0], "thumbnail", level="series")

    response = login(alice).get(url, {"viewport": "300,200"})

    assert image_of(response).size == (150, 200)


def test_quality_sets_the_jpeg_compression_and_is_checked(ct, alice):
    client = login(alice)
    url = frame_url(ct[1])

    low = client.get(url, {"quality": "5"}, HTTP_ACCEPT="image/jpeg")
    high = client.get(url, {"quality": "95"}, HTTP_ACCEPT="image/jpeg")
    png = client.get(url, {"quality": "5"})

    assert low.status_code == high.status_code == 200
    assert len(low.content) < len(high.content)
    assert low.content == stored_rendering(ct[1], frame=1, image_format="jpeg", quality=5)
    assert png.content == stored_rendering(ct[1], frame=1)  # PNG is lossless: no quality
    for bad in ("0", "101", "high", "-5"):
        response = client.get(url, {"quality": bad}, HTTP_ACCEPT="image/jpeg")
        assert response.status_code == 400, bad
        assert "1 to 100" in detail(response)


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
        ("image/gif", "image/gif"),
    ],
)
def test_content_negotiation(ct, alice, accept, expected):
    response = login(alice).get(frame_url(ct[0]), HTTP_ACCEPT=accept)

    assert response.status_code == 200
    assert response["Content-Type"] == expected
    assert image_of(response).format == expected.split("/")[1].upper()


def test_the_accept_query_parameter_stands_in_for_the_header(ct, alice):
    response = login(alice).get(frame_url(ct[0]), {"accept": "image/jpeg"}, HTTP_ACCEPT="image/png")

    assert response["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize("accept", ["text/html", "image/webp", "application/dicom"])
def test_types_that_exclude_every_image_format_are_406(ct, alice, accept):
    response = login(alice).get(frame_url(ct[0]), HTTP_ACCEPT=accept)

    assert response.status_code == 406
    assert "image/png" in detail(response)
    assert negotiate_format(accept) is None


# --- Who may see rendered images --------------------------------------------------------------


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
            "dicomweb:rendered_frame", args=[CT_STUDY_UID, ct[0].series.series_uid, "1.2.3.4.5", 1]
        )
    )
    unknown_study = client.get(reverse("dicomweb:study_rendered", args=["1.2.3"]))

    for response in (wrong_series, wrong_study, unknown, unknown_study):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"


def test_thumbnail_of_a_series_of_another_study_is_404(org, location, ct, alice):
    [other] = ingest(org, location, "CT_small.dcm", bundled_bytes("CT_small.dcm"))

    response = login(alice).get(
        reverse("dicomweb:series_thumbnail", args=[CT_STUDY_UID, other.series.series_uid])
    )

    assert response.status_code == 404


def test_outsider_gets_404_at_every_level(ct, carol):
    client = login(carol)

    for kind in ("rendered", "thumbnail"):
        for level in ("study", "series", "instance", "frame"):
            assert client.get(url_of(ct[0], kind, level=level)).status_code == 404, (kind, level)
    assert not AuditEvent.objects.filter(action=Action.FRAMES_RENDERED).exists()


def test_anonymous_visitor_is_asked_to_authenticate_at_every_level(ct):
    client = HttpsClient()

    for kind in ("rendered", "thumbnail"):
        for level in ("study", "series", "instance", "frame"):
            response = client.get(url_of(ct[0], kind, level=level))
            assert response.status_code == 401, (kind, level)
            assert "Bearer" in response["WWW-Authenticate"]
            assert b"Dubois" not in response.content


def test_anonymized_share_recipient_sees_frames(ct, carol):
    share_entry(carol, ct[0].series.study, level="images", anonymized=True)

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


@pytest.mark.parametrize("scheme", ["Token", "Bearer"])
def test_dicomweb_client_authenticates_with_an_api_token(ct, alice, scheme):
    good = token_client(alice, scheme=scheme).get(frame_url(ct[0]))
    bad = HttpsClient().get(frame_url(ct[0]), HTTP_AUTHORIZATION=f"{scheme} not-a-token")

    assert good.status_code == 200
    assert AuditEvent.objects.get(action=Action.FRAMES_RENDERED).actor == alice
    assert bad.status_code == 401
    assert "WWW-Authenticate" in bad


# --- Caching ----------------------------------------------------------------------------------


def test_a_frame_asked_again_is_served_from_the_cache(ct, alice):
    client = login(alice)
    instance = ct[0]
    first = client.get(frame_url(instance), {"window": "40,80"}, HTTP_ACCEPT="image/jpeg")
    key = frame_cache_key(instance, frame=1, window=Window(40, 80), image_format="jpeg", size=None)
    # A frame asked for once is not kept: a viewer's browser keeps it.
    assert caches["frames"].get(key) is None
    second = client.get(frame_url(instance), {"window": "40,80"}, HTTP_ACCEPT="image/jpeg")
    assert caches["frames"].get(key) == first.content
    storages["dicom"].delete(instance.file)  # only the cache can answer now

    third = client.get(frame_url(instance), {"window": "40,80"}, HTTP_ACCEPT="image/jpeg")

    assert first.status_code == second.status_code == third.status_code == 200
    assert third.content == second.content == first.content
    # Another rendering of the same frame is another key: it needs the (now missing) file.
    for other in ({"window": "40,400"}, {"window": "40,80,sigmoid"}, {"quality": "50"}):
        with pytest.raises(FileNotFoundError):
            client.get(frame_url(instance), {"window": "40,80", **other}, HTTP_ACCEPT="image/jpeg")
    with pytest.raises(FileNotFoundError):
        client.get(
            frame_url(instance), {"window": "40,80", "viewport": "20,20"}, HTTP_ACCEPT="image/jpeg"
        )


def test_a_plain_slice_is_rendered_from_what_its_storing_kept_of_its_header(monkeypatch, ct, alice):
    client = login(alice)
    instance = ct[1]
    assert PlainImage.from_json(instance.plain_image) is not None
    expected = stored_rendering(instance, frame=1, image_format="jpeg")

    def no_header(*_args, **_kwargs):
        raise AssertionError("the header was read")

    monkeypatch.setattr(rendering, "_read_header", no_header)
    response = client.get(frame_url(instance), HTTP_ACCEPT="image/jpeg")

    assert response.status_code == 200
    assert response.content == expected


def test_an_instance_stored_without_a_plain_description_renders_from_its_header(
    monkeypatch, ct, alice
):
    # As the instances stored before the description existed, and those that are not plain.
    instance = ct[1]
    Instance.objects.filter(pk=instance.pk).update(plain_image=None)
    expected = stored_rendering(instance, frame=1, image_format="jpeg")
    read_header, headers_read = rendering._read_header, []

    def counted(source):
        headers_read.append(source)
        return read_header(source)

    monkeypatch.setattr(rendering, "_read_header", counted)
    response = login(alice).get(frame_url(instance), HTTP_ACCEPT="image/jpeg")

    assert response.status_code == 200
    assert response.content == expected
    assert len(headers_read) == 1


def test_a_series_walked_once_leaves_nothing_in_the_cache_and_a_second_viewer_fills_it(
    ct, alice, bob
):
    keys = [
        frame_cache_key(instance, frame=1, window=None, image_format="jpeg", size=None)
        for instance in ct
    ]
    first_viewer = login(alice)
    for instance in ct:
        assert first_viewer.get(frame_url(instance), HTTP_ACCEPT="image/jpeg").status_code == 200
    assert caches["frames"].get_many(keys) == {}

    share_entry(bob, ct[0].series.study)
    second_viewer = login(bob)
    seen = [second_viewer.get(frame_url(instance), HTTP_ACCEPT="image/jpeg") for instance in ct]

    assert [response.status_code for response in seen] == [200] * len(ct)
    assert list(caches["frames"].get_many(keys).values()) == [r.content for r in seen]


def test_recent_renderings_forget_the_older_half_when_the_newer_fills():
    recent = RecentRenderings(limit=2)
    assert [recent.seen_before(key) for key in ("a", "b", "a")] == [False, False, True]
    recent.seen_before("c")  # the newer generation (a, b) becomes the older one
    recent.seen_before("d")
    assert recent.seen_before("a") is True  # still in the older generation
    recent.seen_before("e")  # (c, d) become the older one; (a, b) are forgotten
    assert recent.seen_before("b") is False
    assert recent.seen_before("c") is True


def test_cache_key_holds_every_parameter_and_no_patient_data(ct):
    instance = ct[0]
    study = instance.series.study

    key = frame_cache_key(instance, frame=1, window=Window(40, 400), image_format="png", size=None)
    keys = {
        key,
        frame_cache_key(
            instance, frame=1, window=Window(40, 400, "SIGMOID"), image_format="png", size=None
        ),
        frame_cache_key(
            instance,
            frame=1,
            window=Window(40, 400),
            image_format="png",
            size=None,
            viewport=Viewport(20, 20),
        ),
        frame_cache_key(
            instance,
            frame=1,
            window=Window(40, 400),
            image_format="png",
            size=None,
            viewport=Viewport(20, 20, 0, 0, -5, 5),
        ),
        frame_cache_key(instance, frame=1, window=None, image_format="jpeg", size=None),
        frame_cache_key(instance, frame=1, window=None, image_format="jpeg", size=None, quality=50),
        frame_cache_key(instance, frame=1, window=None, image_format="gif", size=128),
    }

    assert len(keys) == 7
    assert instance.sha256 in key and "40,400" in key and "png" in key
    # PNG bytes do not depend on the JPEG quality: one cache entry.
    assert key == frame_cache_key(
        instance, frame=1, window=Window(40, 400), image_format="png", size=None, quality=10
    )
    for secret in (
        study.patient.patient_id,
        study.patient.family_name,
        study.study_uid,
        study.accession,
        instance.sop_instance_uid,
    ):
        assert all(secret not in k for k in keys)


# --- Audit ------------------------------------------------------------------------------------


def test_frames_rendered_is_audited_once_per_session_and_study(org, location, ct, alice, dana):
    alice_client = login(alice)
    for instance in ct:
        for frame_format in ("image/png", "image/jpeg"):
            response = alice_client.get(frame_url(instance), HTTP_ACCEPT=frame_format)
            assert response.status_code == 200
    thumbnail = reverse("dicomweb:series_thumbnail", args=[CT_STUDY_UID, ct[0].series.series_uid])
    alice_client.get(thumbnail)
    alice_client.get(url_of(ct[0], level="study"))

    events = AuditEvent.objects.filter(action=Action.FRAMES_RENDERED)
    assert events.count() == 1
    event = events.get()
    assert (event.actor, event.study_uid, event.event_code) == (alice, CT_STUDY_UID, "110103")
    assert event.patient_id == "PAT-7001"

    # Another principal, and another study, are other sessions.
    login(dana).get(frame_url(ct[0]))
    [other] = ingest(org, location, "CT_small.dcm", bundled_bytes("CT_small.dcm"))
    alice_client.get(frame_url(other))
    assert events.count() == 3

    # Half an hour later, viewing again is a new session.
    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        login(alice).get(frame_url(ct[2]))  # a new login: the old session has gone idle
    assert events.filter(actor=alice, study_uid=CT_STUDY_UID).count() == 2


def test_failed_rendering_is_not_audited_and_says_why(org, location, alice):
    name = "JPEG2000-embedded-sequence-delimiter.dcm"  # corrupted codestream
    [instance] = ingest(org, location, name, bundled_test_file(name).read_bytes())

    response = login(alice).get(frame_url(instance))

    assert response.status_code == 422
    assert "cannot be displayed" in detail(response)
    assert not AuditEvent.objects.filter(action=Action.FRAMES_RENDERED).exists()


# --- A real DICOMweb client -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_retrieves_rendered_images(settings, org, location, alice):
    datasets = ct_datasets()
    ingest_files(
        files=[(f"IM{i}", io.BytesIO(to_bytes(ds))) for i, ds in enumerate(datasets)],
        organization=org,
        location=location,
    )
    first, mr = datasets[0], datasets[-1]
    with live_portal(settings) as url:
        client = dicomweb_client(url, api_token(alice))
        jpeg = client.retrieve_instance_rendered(
            CT_STUDY_UID,
            first.SeriesInstanceUID,
            first.SOPInstanceUID,
            media_types=("image/jpeg",),
            params={"window": "40,80,sigmoid", "quality": 80},
        )
        series = client.retrieve_series_rendered(
            CT_STUDY_UID, mr.SeriesInstanceUID, media_types=("image/png",)
        )
        frame = client.retrieve_instance_frames_rendered(
            CT_STUDY_UID,
            first.SeriesInstanceUID,
            first.SOPInstanceUID,
            frame_numbers=[1],
            media_types=("image/png",),
            params={"viewport": "24,32"},
        )

    instance = Instance.objects.get(sop_instance_uid=first.SOPInstanceUID)
    assert jpeg == stored_rendering(
        instance, frame=1, window=Window(40, 80, "SIGMOID"), image_format="jpeg", quality=80
    )
    assert Image.open(io.BytesIO(series)).size == (32, 32)
    assert Image.open(io.BytesIO(frame)).size == (24, 32)
