"""The study viewer page: what it shows, to whom, and what it hands the image viewer."""

from __future__ import annotations

import io
import json
import re
from datetime import date

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import Action, AuditEvent
from studies.models import AccessLevel, Entry, Report, Study
from studies.services.ingestion import ingest_files
from studies.synthetic import make_series, to_bytes
from tests.factories import make_study, share_entry

pytestmark = pytest.mark.django_db

STUDY_UID = "1.2.826.0.1.3680043.10.777.1"


def ingest_ct(org, location, *, study_uid=STUDY_UID, slices=5, series=((1, "Axial 3mm"),)):
    files = []
    for number, description in series:
        datasets = make_series(
            patient_name="Müller^Hans",
            patient_id="PID-4711",
            birth_date="19580412",
            sex="M",
            study_uid=study_uid,
            study_date="20240517",
            study_description="CT Thorax",
            accession="ACC-777",
            modality="CT",
            series_number=number,
            series_description=description,
            slices=slices,
            rows=64,
            columns=64,
        )
        # Upload in reverse order: the viewer orders by instance number, not arrival.
        files += [(f"{number}-{i}.dcm", io.BytesIO(to_bytes(ds))) for i, ds in enumerate(datasets)][
            ::-1
        ]
    result = ingest_files(files=files, organization=org, location=location)
    assert not result.rejected, result.rejected
    return Study.objects.get(study_uid=study_uid)


@pytest.fixture
def ct(org, location):
    return ingest_ct(org, location)


def viewer_data(response) -> dict:
    html = response.content.decode()
    found = re.search(
        r'<script id="viewer-data" type="application/json">(.*?)</script>', html, re.S
    )
    assert found, "viewer-data island missing"
    return json.loads(found.group(1))


def test_viewer_shows_the_study_header(client, alice, ct):
    client.force_login(alice)
    response = client.get(reverse("studies:study", args=[ct.study_uid]))
    assert response.status_code == 200
    html = response.content.decode()
    header = html.split('class="viewer-header"')[1].split('class="viewer-body"')[0]
    for expected in ("Hans Müller", "PID-4711", "CT Thorax", "ACC-777", "M"):
        assert expected in header
    assert "1958" in header and "2024" in header


def test_page_title_never_names_the_patient(client, alice, ct):
    client.force_login(alice)
    html = client.get(reverse("studies:study", args=[ct.study_uid])).content.decode()
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    assert "Viewer" in title
    for secret in ("Müller", "Hans", "PID-4711", "1958"):
        assert secret not in title


def test_each_page_view_is_audited(client, alice, ct):
    client.force_login(alice)
    url = reverse("studies:study", args=[ct.study_uid])
    client.get(url)
    client.get(url)
    events = AuditEvent.objects.filter(action=Action.STUDY_VIEWED, study_uid=ct.study_uid)
    assert events.count() == 2
    event = events.first()
    assert event.actor == alice
    assert event.event_code == "110103"
    assert event.patient_id == "PID-4711"


def test_viewer_data_lists_series_and_frames_in_instance_order(client, alice, org, location):
    study = ingest_ct(org, location, slices=4, series=((2, "Coronal"), (1, "Axial")))
    client.force_login(alice)
    data = viewer_data(client.get(reverse("studies:study", args=[study.study_uid])))
    assert [s["description"] for s in data["series"]] == ["Axial", "Coronal"]
    for item in data["series"]:
        series = study.series.get(series_uid=item["series_uid"])
        expected = [
            [i.sop_instance_uid, 1, i.sha256[:16]] for i in series.instances.order_by("number")
        ]
        assert item["frames"] == expected
        assert item["modality"] == "CT"
        assert item["thumbnail"] == reverse(
            "dicomweb:series_thumbnail", args=[study.study_uid, item["series_uid"]]
        )
        assert item["window"] == [40.0, 400.0]
        assert ["Lung", -600.0, 1500.0] in [[p[0], p[1], p[2]] for p in item["presets"]]


def test_frame_url_template_gives_working_frame_urls(client, alice, ct):
    client.force_login(alice)
    data = viewer_data(client.get(reverse("studies:study", args=[ct.study_uid])))
    series = data["series"][0]
    instance, frame, _version = series["frames"][2]
    url = (
        data["frameUrl"]
        .replace("{series}", series["series_uid"])
        .replace("{instance}", instance)
        .replace("{frame}", str(frame))
    )
    assert url == reverse(
        "dicomweb:rendered_frame",
        kwargs={
            "study_uid": ct.study_uid,
            "series_uid": series["series_uid"],
            "instance_uid": instance,
            "frame": frame,
        },
    )
    response = client.get(url + "?window=40,400")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"


def test_first_frame_is_in_the_page_for_an_immediate_paint(client, alice, ct):
    client.force_login(alice)
    response = client.get(reverse("studies:study", args=[ct.study_uid]))
    html = response.content.decode()
    first, _frame, version = viewer_data(response)["series"][0]["frames"][0]
    # The address static/js/viewer.js asks for the first frame, so it is fetched once.
    assert re.search(
        rf'<img class="frame" data-frame alt="" src="[^"]*/instances/{first}/frames/1/rendered'
        rf'\?v={version}&amp;accept=image/jpeg"',
        html,
    )
    assert 'data-counter class="counter">1 / 5<' in html


def test_study_without_images_says_so(client, alice, org, location):
    study = make_study(org, location=location, modality="SR")
    client.force_login(alice)
    response = client.get(reverse("studies:study", args=[study.study_uid]))
    assert response.status_code == 200
    assert "This study has no images to show" in response.content.decode()
    assert viewer_data(response)["series"] == []


def test_download_button_for_logged_in_users(client, alice, ct):
    client.force_login(alice)
    html = client.get(reverse("studies:study", args=[ct.study_uid])).content.decode()
    assert f'action="{reverse("studies:download", args=[ct.study_uid])}"' in html
    assert 'method="post"' in html


def test_logged_out_visitor_is_sent_to_log_in_whether_or_not_the_study_exists(client, ct):
    real = client.get(reverse("studies:study", args=[ct.study_uid]))
    made_up = client.get(reverse("studies:study", args=["1.2.3.4.5"]))
    for response in (real, made_up):
        assert response.status_code == 302
        assert response.url.startswith(reverse("accounts:login"))
    assert not AuditEvent.objects.filter(action=Action.STUDY_VIEWED).exists()


def test_anonymized_access_never_shows_the_patient(client, carol, ct):
    Report.objects.create(study=ct, text="Nodule in the left upper lobe.")
    share_entry(carol, ct, level=AccessLevel.REPORT_WRITE, anonymized=True)
    client.force_login(carol)
    response = client.get(reverse("studies:study", args=[ct.study_uid]))
    assert response.status_code == 200
    html = response.content.decode()
    for secret in ("Müller", "Hans", "PID-4711", "ACC-777", "1958", "Nodule"):
        assert secret not in html
    assert "Anonymous" in html
    assert "The report of an anonymized study is not available." in html


def test_report_panel_follows_the_access_level(client, carol, ct):
    Report.objects.create(study=ct, text="No acute findings.")
    entry = share_entry(carol, ct, level=AccessLevel.IMAGES)
    client.force_login(carol)
    url = reverse("studies:study", args=[ct.study_uid])

    html = client.get(url).content.decode()
    assert "No acute findings." not in html
    assert "includes the images only" in html

    Entry.objects.filter(pk=entry.pk).update(level=AccessLevel.REPORT_READ)
    html = client.get(url).content.decode()
    assert "No acute findings." in html
    assert "<textarea" not in html
    assert reverse("studies:report", args=[ct.study_uid]) not in html

    Entry.objects.filter(pk=entry.pk).update(level=AccessLevel.REPORT_WRITE)
    html = client.get(url).content.decode()
    assert "<textarea" in html and "No acute findings." in html
    assert f'action="{reverse("studies:report", args=[ct.study_uid])}"' in html


def test_priors_list_the_patients_other_visible_studies(client, alice, org, location, ct):
    older = make_study(
        org,
        location=location,
        patient_id="PID-4711",
        family_name="Müller",
        given_name="Hans",
        study_date=date(2020, 2, 2),
        description="CT Prior",
    )
    other_patient = make_study(
        org, location=location, patient_id="PID-OTHER", description="Someone else"
    )
    invisible = make_study(org, patient_id="PID-4711", description="Not in alice's lists")
    client.force_login(alice)
    html = client.get(reverse("studies:study", args=[ct.study_uid])).content.decode()
    priors = html.split('class="priors"')[1]
    assert reverse("studies:study", args=[older.study_uid]) in priors
    assert "CT Prior" in priors
    assert other_patient.study_uid not in html
    assert invisible.study_uid not in html


def test_no_priors_for_an_anonymized_view(client, carol, org, location, ct):
    older = make_study(org, location=location, patient_id="PID-4711", description="CT Prior")
    share_entry(carol, ct, level=AccessLevel.REPORT_READ, anonymized=True)
    share_entry(carol, older, level=AccessLevel.REPORT_READ)
    client.force_login(carol)
    html = client.get(reverse("studies:study", args=[ct.study_uid])).content.decode()
    assert older.study_uid not in html
    assert 'class="priors"' not in html


def test_message_of_the_share_is_shown_and_marked_read(client, alice, carol, ct):
    entry = share_entry(
        carol,
        ct,
        level=AccessLevel.REPORT_READ,
        message="Please compare with last year.",
        added_by=alice,
        label="Tumour board",
    )
    client.force_login(carol)
    html = client.get(reverse("studies:study", args=[ct.study_uid])).content.decode()
    assert "Please compare with last year." in html
    assert "Tumour board" in html
    entry.refresh_from_db()
    assert entry.opened_at is not None


def test_viewer_has_no_inline_script_or_style(client, alice, ct):
    client.force_login(alice)
    html = client.get(reverse("studies:study", args=[ct.study_uid])).content.decode()
    assert "style=" not in html and "<style" not in html
    assert not re.search(r"\son[a-z]+=", html)
    # Scripts come from files (modules, the text catalog); inline, only data a script reads.
    for script in re.findall(r"<script\b[^>]*>", html):
        assert ' src="' in script or 'type="application/json"' in script


def test_viewer_page_is_not_cached(client, alice, ct):
    client.force_login(alice)
    response = client.get(reverse("studies:study", args=[ct.study_uid]))
    assert "no-store" in response["Cache-Control"]


def test_expired_share_gives_a_404(client, carol, ct):
    share_entry(
        carol,
        ct,
        level=AccessLevel.REPORT_READ,
        valid_until=timezone.now() - timezone.timedelta(minutes=1),
    )
    client.force_login(carol)
    assert client.get(reverse("studies:study", args=[ct.study_uid])).status_code == 404


def test_a_name_made_only_of_dicom_separators_is_shown_as_no_name(org, location):
    from studies.models import Patient

    patient = Patient(organization=org, patient_id="X1", name="^^^^")
    named = Patient(
        organization=org, patient_id="X2", name="Doe^Jane^^^", given_name="Jane", family_name="Doe"
    )

    assert patient.display_name == ""
    assert named.display_name == "Jane Doe"


def test_a_versioned_frame_may_stay_in_the_browser_and_nothing_else_does(
    client, alice, ct, settings
):
    """The viewer's frames name their bytes (?v=): the browser may keep them, privately; the
    same frame without the version, or with a wrong one, and the page itself are never kept."""
    client.force_login(alice)
    page = client.get(reverse("studies:study", args=[ct.study_uid]))
    data = viewer_data(page)
    series = data["series"][0]
    instance, frame, version = series["frames"][0]
    base = (
        data["frameUrl"]
        .replace("{series}", series["series_uid"])
        .replace("{instance}", instance)
        .replace("{frame}", str(frame))
    )
    kept = client.get(f"{base}?v={version}&accept=image/jpeg")
    assert kept.status_code == 200 and kept["Content-Type"] == "image/jpeg"
    assert kept["Cache-Control"] == f"private, max-age={settings.RENDERED_FRAME_BROWSER_SECONDS}"
    for url in (base, f"{base}?v=0000000000000000&accept=image/jpeg"):
        assert "no-store" in client.get(url)["Cache-Control"]
    assert "no-store" in page["Cache-Control"]
    settings.RENDERED_FRAME_BROWSER_SECONDS = 0
    assert "no-store" in client.get(f"{base}?v={version}")["Cache-Control"]
