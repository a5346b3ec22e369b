"""What a reader does with a study: opening it (audited, marks shared entries as opened) and
writing its report."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext as _

from accounts.models import User
from audit.models import Action
from audit.services import record
from studies.access import StudyAccess
from studies.models import Report, Study

MAX_REPORT_LENGTH = 100_000


class ReportConflict(ValidationError):
    """Someone saved the report after the editor loaded it; saving now would erase their text."""


def report_version(report: Report | None) -> str:
    """An opaque token of the report's saved state, round-tripped by the editor's form."""
    if report is None or report.pk is None:
        return ""
    return report.updated_at.isoformat()


@transaction.atomic(durable=True)
def update_report(
    *,
    user: User | None,
    study: Study,
    text: str,
    access: StudyAccess,
    request: HttpRequest | None = None,
    base_version: str | None = None,
) -> Report:
    """Replace the study's report text and audit the change (lengths only: report text is PHI).
    ``user`` is None for a guest whose link lets them write the report.

    ``base_version`` is the :func:`report_version` the editor started from; if the report was
    saved since, :class:`ReportConflict` is raised and nothing changes.
    """
    if not access.can_write_report:
        raise PermissionDenied(_("You may not change this study's report."))
    text = (text or "").replace("\r\n", "\n")
    if len(text) > MAX_REPORT_LENGTH:
        raise ValidationError(
            {
                "text": [
                    _("A report may not be longer than %(n)d characters.")
                    % {"n": MAX_REPORT_LENGTH}
                ]
            }
        )
    report = Report.objects.select_for_update().filter(study=study).first()
    if base_version is not None and report is not None and report_version(report) != base_version:
        raise ReportConflict(
            _(
                "Someone else saved this report while you were editing it. Your text was not "
                "saved: copy it, reload the page and merge your changes."
            )
        )
    before = report.text if report is not None else ""
    if report is not None and before == text:
        return report
    if report is None:
        report = Report(study=study)
    report.text = text
    report.updated_by = user
    report.save()
    record(
        action=Action.REPORT_CHANGED,
        actor=user,
        request=request,
        study=study,
        details={"length_before": len(before), "length_after": len(text)},
    )
    return report
