"""Uploading studies in the browser.

The upload page posts files in small batches (static/js/upload.js) to ``upload_files``, which
answers in the REST API's JSON shape; without JavaScript the same form posts once and the page
shows the results.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from accounts.http import AuthenticatedRequest
from accounts.memberships import has_perm
from accounts.models import Location, User
from accounts.permissions import Perm
from studies.services.ingestion import (
    ingest_files,
    resolve_upload_location,
    upload_locations,
)

logger = logging.getLogger(__name__)

# Files per request sent by upload.js: small enough for steady progress and short requests
# behind proxies with timeouts, large enough not to pay a round trip per CT slice.
UPLOAD_BATCH_SIZE = 10


# --- Upload -----------------------------------------------------------------------------------


class UploadForm(forms.Form):
    location = forms.ModelChoiceField(
        queryset=Location.objects.none(),
        label=gettext_lazy("Location the studies arrive at"),
        empty_label=None,
    )

    def __init__(self, *args: Any, locations: list[Location], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The copy of the ModelChoiceField declared above.
        field = cast(forms.ModelChoiceField, self.fields["location"])
        field.queryset = Location.objects.filter(
            pk__in=[location.pk for location in locations]
        ).select_related("organization")


def _upload_context(
    user: User, *, form: UploadForm | None = None, **extra: object
) -> dict[str, object]:
    locations = upload_locations(user)
    return {
        "form": form
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
def upload_page(request: AuthenticatedRequest) -> HttpResponse:
    if not has_perm(request.user, Perm.UPLOAD_STUDIES):
        raise PermissionDenied
    return render(request, "studies/upload.html", _upload_context(request.user))


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _uploaded_files(request: HttpRequest) -> list[tuple[str, UploadedFile]]:
    """(name, file) pairs. upload.js sends each file's path within a chosen folder as "paths"
    (Django keeps only the base name of an uploaded file), so the results name files the way
    the user sees them on the disc."""
    files = request.FILES.getlist("files")
    paths = request.POST.getlist("paths")
    # Django names every file it parsed from the form: the name falls back on "" for the type's
    # sake only.
    if len(paths) != len(files):
        paths = [upload.name or "" for upload in files]
    return [(path or upload.name or "", upload) for path, upload in zip(paths, files, strict=True)]


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
            request, "studies/upload.html", _upload_context(request.user, form=form), status=400
        )

    if json_wanted:
        return JsonResponse(result.as_json(), status=result.status_code)
    form = UploadForm(initial={"location": location.pk}, locations=upload_locations(request.user))
    return render(
        request,
        "studies/upload.html",
        _upload_context(request.user, form=form, result=result),
        status=result.status_code,
    )
