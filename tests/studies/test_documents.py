"""Issue 10, finding 9: structured reports are shown as what they are.

A structured report used to be listed with one frame that answered 404. Objects without pixel
data are now listed without frames, and the viewer shows an SR's content (the report text) to
those who may read the report; images-only and anonymized recipients get neither the SR nor its
listing.
"""

from __future__ import annotations

import io

from studies.models import AccessLevel, Instance
from studies.services.ingestion import ingest_files
from studies.synthetic import bundled_test_file
from tests.accounts.helpers import HttpsAPIClient, HttpsClient, plain_static_storage
from tests.factories import share_entry


def ingest_sr(org, location) -> Instance:
    data = bundled_test_file("reportsi.dcm").read_bytes()
    result = ingest_files(
        files=[("reportsi.dcm", io.BytesIO(data))], organization=org, location=location
    )
    assert not result.rejected, result.rejected
    return Instance.objects.get(sop_instance_uid=result.stored[0])


def api_detail(user, study_uid: str) -> dict:
    api = HttpsAPIClient()
    api.force_authenticate(user)
    response = api.get(f"/api/v1/studies/{study_uid}/")
    assert response.status_code == 200
    return response.json()


def viewer_page(settings, user, study_uid: str) -> str:
    plain_static_storage(settings)
    client = HttpsClient()
    client.force_login(user)
    response = client.get(f"/studies/{study_uid}/")
    assert response.status_code == 200
    return response.content.decode()


def test_structured_reports_are_listed_without_frames(org, location, alice):
    sr = ingest_sr(org, location)

    body = api_detail(alice, sr.series.study.study_uid)

    [series] = body["series"]
    [instance] = series["instances"]
    assert instance["has_pixels"] is False
    assert instance["frames"] == 0


def test_structured_reports_show_their_report_text_in_the_viewer(settings, org, location, alice):
    sr = ingest_sr(org, location)

    page = viewer_page(settings, alice, sr.series.study.study_uid)

    assert 'id="documents"' in page
    assert "Report Text" in page
    assert "Enter text" in page  # the TEXT value of the bundled report
    assert "Recording Observer" in page
    assert "This study has no images to show" in page


def test_images_only_and_anonymized_recipients_get_no_structured_report(
    settings, org, location, carol
):
    sr = ingest_sr(org, location)
    study = sr.series.study
    entry = share_entry(carol, study, level=AccessLevel.IMAGES)

    images_only = api_detail(carol, study.study_uid)
    page = viewer_page(settings, carol, study.study_uid)

    assert images_only["series"] == []
    assert 'id="documents"' not in page
    assert "Enter text" not in page

    entry.level, entry.anonymized = AccessLevel.REPORT_READ, True
    entry.save(update_fields=["level", "anonymized"])
    assert api_detail(carol, study.study_uid)["series"] == []
    assert "Enter text" not in viewer_page(settings, carol, study.study_uid)
