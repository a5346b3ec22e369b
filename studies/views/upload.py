"""Uploading studies in the browser, and downloading a study as a ZIP of its DICOM files.

The upload page posts files in small batches (static/js/upload.js) to ``upload_files``, which
answers in the REST API's JSON shape; without JavaScript the same form posts once and the page
shows the results. Downloads are POST-only exports: a GET shows what would be exported and a
button, so link prefetchers and crawlers never export patient data.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from collections.abc import Iterator

import pydicom
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import storages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.memberships import has_perm
from accounts.models import Location
from accounts.permissions import Perm
from audit.models import Action
from audit.services import record
from studies.access import get_study_for
from studies.anonymize import deidentify_dataset, patient_display
from studies.models import Instance, Study
from studies.services.ingestion import (
    ingest_files,
    resolve_upload_location,
    upload_locations,
)

logger = logging.getLogger(__name__)

# Files per request sent by upload.js: small enough for steady progress and short requests
# behind proxies with timeouts, large enough not to pay a round trip per CT slice.
UPLOAD_BATCH_SIZE = 10
_ZIP_CHUNK = 1024 * 1024
_ZIP64_LIMIT = zipfile.ZIP64_LIMIT


# --- Upload -----------------------------------------------------------------------------------


class UploadForm(forms.Form):
    location = forms.ModelChoiceField(
        queryset=Location.objects.none(),
        label=gettext_lazy("Location the studies arrive at"),
        empty_label=None,
    )

    def __init__(self, *args, locations: list[Location], **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["location"]
        field.queryset = Location.objects.filter(
            pk__in=[location.pk for location in locations]
        ).select_related("organization")


def _upload_context(request: HttpRequest, **extra) -> dict:
    locations = upload_locations(request.user)
    return {
        "form": extra.pop("form", None)
        or UploadForm(
            initial={"location": locations[0].pk} if locations else None, locations=locations
        ),
        "locations": locations,
        "batch_size": UPLOAD_BATCH_SIZE,
        "max_file_size": settings.UPLOAD_MAX_FILE_SIZE,
        **extra,
    }


@login_required
@require_GET
def upload_page(request: HttpRequest) -> HttpResponse:
    if not has_perm(request.user, Perm.UPLOAD_STUDIES):
        raise PermissionDenied
    return render(request, "studies/upload.html", _upload_context(request))


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _uploaded_files(request: HttpRequest) -> list[tuple[str, object]]:
    """(name, file) pairs. upload.js sends each file's path within a chosen folder as "paths"
    (Django keeps only the base name of an uploaded file), so the results name files the way
    the user sees them on the disc."""
    files = request.FILES.getlist("files")
    paths = request.POST.getlist("paths")
    if len(paths) != len(files):
        paths = [upload.name for upload in files]
    return [(path or upload.name, upload) for path, upload in zip(paths, files, strict=True)]


@require_POST
def upload_files(request: HttpRequest) -> HttpResponse:
    json_wanted = _wants_json(request)
    if not request.user.is_authenticated:
        if json_wanted:
            return JsonResponse(
                {"detail": _("Your session has ended. Log in again, then upload the rest.")},
                status=401,
            )
        return redirect_to_login(request.get_full_path())
    if not has_perm(request.user, Perm.UPLOAD_STUDIES):
        if json_wanted:
            return JsonResponse({"detail": _("Your account may not upload studies.")}, status=403)
        raise PermissionDenied

    files = _uploaded_files(request)
    try:
        location = resolve_upload_location(request.user, request.POST.get("location"))
        if not files:
            raise ValidationError({"files": [_("Choose at least one file or folder.")]})
        result = ingest_files(
            files=files,
            organization=location.organization,
            location=location,
            uploaded_by=request.user,
            request=request,
        )
    except PermissionDenied as denied:
        if json_wanted:
            return JsonResponse({"detail": str(denied)}, status=403)
        raise
    except ValidationError as invalid:
        errors = {
            field: [str(m) for m in messages] for field, messages in invalid.message_dict.items()
        }
        if json_wanted:
            return JsonResponse(errors, status=400)
        form = UploadForm(request.POST, locations=upload_locations(request.user))
        for field, messages in errors.items():
            form.add_error(field if field in form.fields else None, messages)
        return render(
            request, "studies/upload.html", _upload_context(request, form=form), status=400
        )

    if json_wanted:
        return JsonResponse(result.as_json(), status=result.status_code)
    form = UploadForm(initial={"location": location.pk}, locations=upload_locations(request.user))
    return render(
        request,
        "studies/upload.html",
        _upload_context(request, form=form, result=result),
        status=result.status_code,
    )


# --- Download ---------------------------------------------------------------------------------


def _archive_members(study: Study, *, images_only: bool) -> list[tuple[str, Instance]]:
    """``SERIESNUMBER/INSTANCENUMBER.dcm`` for each stored file, unique within the archive.
    Numbers only: file names never carry patient data. ``images_only`` (access without the
    report) leaves out objects without pixel data: a structured report is a report."""
    instances = (
        Instance.objects.filter(series__study=study)
        .exclude(file="")
        .select_related("series")
        .order_by("series__number", "series__id", "number", "id")
    )
    if images_only:
        instances = instances.filter(has_pixels=True)
    members: list[tuple[str, Instance]] = []
    used: set[str] = set()
    series_index: dict[int, int] = {}
    for instance in instances:
        series = instance.series
        series_index.setdefault(series.pk, len(series_index) + 1)
        folder = series.number if series.number is not None else series_index[series.pk]
        number = instance.number if instance.number is not None else len(members) + 1
        name = f"{folder}/{number}.dcm"
        suffix = 2
        while name in used:  # two series numbered alike, or repeated instance numbers
            name = f"{folder}/{number}-{suffix}.dcm"
            suffix += 1
        used.add(name)
        members.append((name, instance))
    return members


def archive_name(study: Study) -> str:
    digest = hashlib.sha256(study.study_uid.encode()).hexdigest()[:10]
    return f"study-{digest}.zip"


class _Sink:
    """A write-only buffer ZipFile writes into while the response streams it out."""

    def __init__(self):
        self._chunks: list[bytes] = []
        self.size = 0

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self.size = 0
        return data


def _instance_bytes(instance: Instance, study: Study, anonymized: bool) -> Iterator[bytes]:
    storage = storages["dicom"]
    with storage.open(instance.file, "rb") as stored:
        if not anonymized:
            while chunk := stored.read(_ZIP_CHUNK):
                yield chunk
            return
        ds = pydicom.dcmread(stored)
    deidentify_dataset(ds, study)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    yield buffer.getvalue()


def _zip_stream(
    members: list[tuple[str, Instance]], study: Study, anonymized: bool
) -> Iterator[bytes]:
    sink = _Sink()
    try:
        # The sink cannot seek, so zipfile writes data descriptors: nothing is held back and
        # memory stays at about one file, whatever the study's size.
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, instance in members:
                big = instance.size * 1.1 > _ZIP64_LIMIT
                with zf.open(name, "w", force_zip64=big) as entry:
                    for chunk in _instance_bytes(instance, study, anonymized):
                        entry.write(chunk)
                        if sink.size >= _ZIP_CHUNK:
                            yield sink.drain()
                yield sink.drain()
        yield sink.drain()
    except Exception:
        # The response has started: the only honest signal left is a broken download, which
        # the browser reports; never finish a ZIP that silently lacks images.
        logger.exception("Download of study id %s failed while streaming", study.pk)
        raise


@require_http_methods(["GET", "POST"])
def download_study(request: HttpRequest, study_uid: str) -> HttpResponse:
    try:
        study, access = get_study_for(request, study_uid)
    except Http404:
        if not request.user.is_authenticated:
            # The same answer whether or not the study exists: log in first.
            return redirect_to_login(request.get_full_path())
        raise
    members = _archive_members(study, images_only=not access.can_read_report)

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
        _zip_stream(members, study, access.anonymized), content_type="application/zip"
    )
    response.headers["Content-Disposition"] = content_disposition_header(True, archive_name(study))
    return response
