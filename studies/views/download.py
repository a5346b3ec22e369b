"""Downloading a study as a ZIP of its DICOM files (:mod:`studies.services.archive`).

Downloads are POST-only exports: a GET shows what would be exported and a button, so link
prefetchers and crawlers never export patient data.
"""

from __future__ import annotations

from typing import cast

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_http_methods

from audit.models import Action
from audit.services import record
from studies.access import get_study_for
from studies.anonymize import patient_display
from studies.services import archive


@require_http_methods(["GET", "POST"])
def download_study(request: HttpRequest, study_uid: str) -> HttpResponseBase:
    try:
        study, access = get_study_for(request, study_uid)
    except Http404:
        if not request.user.is_authenticated:
            # The same answer whether or not the study exists: log in first.
            return redirect_to_login(request.get_full_path())
        raise
    members = archive.archive_members(study, images_only=not access.can_read_report)

    if request.method == "GET":
        total = sum(instance.size for _name, instance in members)
        return render(
            request,
            "studies/download.html",
            {
                "study": study,
                "access": access,
                "patient": patient_display(study, anonymized=access.anonymized),
                "file_count": len(members),
                "total_size": total or 0,
            },
        )

    if not members:
        raise Http404("This study has no stored files.")
    # Recorded when the export starts: a stream cannot share a transaction with its audit row.
    record(
        action=Action.STUDY_DOWNLOADED,
        request=request,
        study=study,
        details={
            "files": len(members),
            "series": len({instance.series_id for _name, instance in members}),
            "anonymized": access.anonymized,
            "via": access.via,
        },
    )
    response = StreamingHttpResponse(
        archive.zip_stream(members, study, access.anonymized), content_type="application/zip"
    )
    # Only an inline answer without a file name has no header: an attachment always has one.
    response.headers["Content-Disposition"] = cast(
        str, content_disposition_header(True, archive.archive_name(study))
    )
    return response
