"""Writing a study's report: who may, what is audited, and that a change is all or nothing."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from audit.models import Action, AuditEvent
from studies.access import StudyAccess, user_study_access
from studies.models import AccessLevel, Report
from studies.services.reports import ReportConflict, report_version, update_report
from tests.factories import make_study, share_entry

pytestmark = pytest.mark.django_db

WRITE = StudyAccess(level=AccessLevel.REPORT_WRITE)


@pytest.fixture
def study(org, location):
    return make_study(org, location=location, patient_id="PID-R1")


def report_events(study):
    return AuditEvent.objects.filter(action=Action.REPORT_CHANGED, study_uid=study.study_uid)


def test_writing_a_report_creates_it_and_audits_the_lengths(alice, study):
    report = update_report(user=alice, study=study, text="No acute findings.", access=WRITE)
    assert report.text == "No acute findings."
    assert report.updated_by == alice
    event = report_events(study).get()
    assert event.actor == alice
    assert event.details == {"length_before": 0, "length_after": 18}
    # The report text itself is PHI and stays out of the audit trail.
    assert "acute" not in str(event.details)


def test_rewriting_records_before_and_after(alice, study):
    update_report(user=alice, study=study, text="Short.", access=WRITE)
    update_report(user=alice, study=study, text="A longer text.", access=WRITE)
    assert Report.objects.get(study=study).text == "A longer text."
    latest = report_events(study).order_by("-id").first()
    assert latest.details == {"length_before": 6, "length_after": 14}


def test_saving_the_same_text_changes_nothing(alice, study):
    update_report(user=alice, study=study, text="Same.", access=WRITE)
    update_report(user=alice, study=study, text="Same.", access=WRITE)
    assert report_events(study).count() == 1


@pytest.mark.parametrize(
    "access",
    [
        StudyAccess(level=AccessLevel.IMAGES),
        StudyAccess(level=AccessLevel.REPORT_READ),
        StudyAccess(level=AccessLevel.REPORT_WRITE, anonymized=True),
    ],
    ids=["images", "report_read", "anonymized_write"],
)
def test_access_without_write_is_refused(alice, study, access):
    with pytest.raises(PermissionDenied):
        update_report(user=alice, study=study, text="Mine.", access=access)
    assert not Report.objects.filter(study=study).exists()
    assert not report_events(study).exists()


def test_a_stale_editor_cannot_overwrite_a_newer_report(alice, bob, study):
    first = update_report(user=alice, study=study, text="First reading.", access=WRITE)
    stale = report_version(first)
    update_report(user=bob, study=study, text="Addendum by Bob.", access=WRITE, base_version=stale)
    with pytest.raises(ReportConflict):
        update_report(
            user=alice, study=study, text="Alice overwrites.", access=WRITE, base_version=stale
        )
    assert Report.objects.get(study=study).text == "Addendum by Bob."


def test_report_and_audit_commit_together(alice, study):
    with (
        mock.patch("studies.services.reports.record", side_effect=RuntimeError("audit down")),
        pytest.raises(RuntimeError),
    ):
        update_report(user=alice, study=study, text="Lost.", access=WRITE)
    assert not Report.objects.filter(study=study).exists()


def test_the_role_decides_for_received_studies(alice, study):
    access = user_study_access(alice, study)
    assert access.can_write_report  # the clinician role grants WRITE_REPORTS


# --- Through the viewer's form -----------------------------------------------------------------


def test_viewer_form_saves_the_report(client, alice, study):
    client.force_login(alice)
    response = client.post(
        reverse("studies:report", args=[study.study_uid]),
        {"text": "Impression: normal.\r\nNo follow-up.", "version": ""},
    )
    assert response.status_code == 302
    assert response.url == reverse("studies:study", args=[study.study_uid]) + "#report"
    assert Report.objects.get(study=study).text == "Impression: normal.\nNo follow-up."
    page = client.get(response.url).content.decode()
    assert "Report saved." in page


def test_conflict_keeps_the_editors_text_on_the_page(client, alice, bob, study):
    first = update_report(user=bob, study=study, text="Bob's reading.", access=WRITE)
    stale = report_version(first)
    update_report(user=bob, study=study, text="Bob's second reading.", access=WRITE)
    client.force_login(alice)
    response = client.post(
        reverse("studies:report", args=[study.study_uid]),
        {"text": "Alice's careful text.", "version": stale},
    )
    assert response.status_code == 409
    html = response.content.decode()
    assert "Alice&#x27;s careful text." in html
    assert "Someone else saved this report" in html
    assert Report.objects.get(study=study).text == "Bob's second reading."


def test_read_only_share_cannot_post_a_report(client, carol, study):
    share_entry(
        carol,
        study,
        level=AccessLevel.REPORT_READ,
    )
    client.force_login(carol)
    response = client.post(reverse("studies:report", args=[study.study_uid]), {"text": "x"})
    assert response.status_code == 403
    assert not Report.objects.filter(study=study).exists()


def test_outsider_posting_a_report_gets_404(client, carol, study):
    client.force_login(carol)
    response = client.post(reverse("studies:report", args=[study.study_uid]), {"text": "x"})
    assert response.status_code == 404
    assert not Report.objects.filter(study=study).exists()


def test_logged_out_post_goes_to_login(client, study):
    response = client.post(reverse("studies:report", args=[study.study_uid]), {"text": "x"})
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))
    assert not Report.objects.filter(study=study).exists()


def test_report_url_refuses_get(client, alice, study):
    client.force_login(alice)
    assert client.get(reverse("studies:report", args=[study.study_uid])).status_code == 405


def test_write_share_on_another_organizations_study(client, carol, study):
    share_entry(
        carol,
        study,
        level=AccessLevel.REPORT_WRITE,
    )
    client.force_login(carol)
    response = client.post(
        reverse("studies:report", args=[study.study_uid]), {"text": "External opinion."}
    )
    assert response.status_code == 302
    report = Report.objects.get(study=study)
    assert report.text == "External opinion." and report.updated_by == carol
