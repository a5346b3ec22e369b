"""The study viewer: images, report, priors and the message a study was shared with.

Whoever ``studies.access`` admits may open it: a logged-in user, or a guest holding a link grant
in the session. Each page view is audited. Patient data comes from ``patient_display`` only, so
an anonymized access never shows the real name, ID or birth date; the page title never carries
patient data.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from studies.access import StudyAccess, access_challenge, get_study_for
from studies.anonymize import patient_display
from studies.documents import study_documents
from studies.models import Report, Study
from studies.rendering import window_presets
from studies.selectors import (
    SeriesFrames,
    default_window,
    distinct_messages,
    priors_for,
    reached_through,
    shown_labels,
    study_series,
)
from studies.services.reports import (
    MAX_REPORT_LENGTH,
    ReportConflict,
    report_version,
    update_report,
)
from studies.services.viewing import record_study_view
from studies.viewer_extensions import extensions_context

# Placeholders reversed into the frame URL and replaced by static/js/viewer.js. UIDs are digits
# and dots, so these can never collide with a real one.
_SERIES, _INSTANCE, _FRAME = "SERIESUID", "INSTANCEUID", 987654321


class ReportForm(forms.Form):
    text = forms.CharField(
        label=gettext_lazy("Report"),
        required=False,
        max_length=MAX_REPORT_LENGTH,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "true"}),
    )
    version = forms.CharField(required=False, widget=forms.HiddenInput)


class _LoginRequired(Exception):
    """A logged-out visitor reached a study they have no grant for."""


def _study_or_login(request: HttpRequest, study_uid: str) -> tuple[Study, StudyAccess]:
    """The study and the caller's access; a logged-out visitor with no grant is asked to log in
    (and comes back here), whether or not the study exists."""
    try:
        return get_study_for(request, study_uid)
    except Http404:
        if not request.user.is_authenticated:
            raise _LoginRequired from None
        raise


def _frame_url_template(study: Study) -> str:
    url = reverse(
        "dicomweb:rendered_frame",
        kwargs={
            "study_uid": study.study_uid,
            "series_uid": _SERIES,
            "instance_uid": _INSTANCE,
            "frame": _FRAME,
        },
    )
    return (
        url.replace(f"/{_SERIES}/", "/{series}/")
        .replace(f"/{_INSTANCE}/", "/{instance}/")
        .replace(f"/{_FRAME}/", "/{frame}/")
    )


def viewer_frame_query(version: str) -> str:
    """The query of the viewer's frame addresses (static/js/viewer.js builds the same): the
    content version, and JPEG (a third of PNG's bytes for a CT) unless lossless is asked."""
    return f"?v={version}&accept=image/jpeg"


def _series_data(study: Study, series_list: list[SeriesFrames]) -> list[dict]:
    data = []
    for item in series_list:
        series = item.series
        middle = item.instances[len(item.instances) // 2] if item.instances else None
        window = default_window(middle) if middle is not None else None
        data.append(
            {
                "series_uid": series.series_uid,
                "number": series.number,
                "description": series.description,
                "modality": series.modality,
                "thumbnail": reverse(
                    "dicomweb:series_thumbnail",
                    kwargs={"study_uid": study.study_uid, "series_uid": series.series_uid},
                ),
                # [instance UID, frame number, content version]: the version makes the
                # image's address name its bytes, so the browser may keep it (issue 13).
                "frames": [list(frame) for frame in item.versioned_frames],
                "window": list(window) if window else None,
                "presets": [
                    [str(label), preset.center, preset.width]
                    for label, preset in window_presets(series.modality)
                ],
            }
        )
    return data


def _viewer_context(
    request: HttpRequest,
    study: Study,
    access: StudyAccess,
    *,
    report_form: ReportForm | None = None,
) -> dict:
    series_list = study_series(study, images_only=True)
    series_data = _series_data(study, series_list)
    report = None
    if access.can_read_report:
        report = Report.objects.filter(study=study).select_related("updated_by").first()
    if access.can_write_report and report_form is None:
        report_form = ReportForm(
            initial={"text": report.text if report else "", "version": report_version(report)}
        )
    shared_entries = reached_through(request.user, study)
    href = reverse("studies:study", args=[study.study_uid])
    frame_url = _frame_url_template(study)
    first_frame_url = None
    if series_data:
        instance_uid, number, version = series_data[0]["frames"][0]
        # Exactly the address static/js/viewer.js asks for the first frame, so it is fetched once.
        first_frame_url = frame_url.format(
            series=series_data[0]["series_uid"], instance=instance_uid, frame=number
        ) + viewer_frame_query(version)
    return {
        "study": study,
        "access": access,
        "patient": patient_display(study, anonymized=access.anonymized),
        "series_list": series_list,
        "first_series": series_data[0] if series_data else None,
        "first_frame_url": first_frame_url,
        "report": report,
        "report_form": report_form if access.can_write_report else None,
        # Structured reports are reports: shown only to those who may read the report.
        "documents": study_documents(study) if access.can_read_report else [],
        "priors": priors_for(request.user, study, access, request=request),
        # Each distinct message once, shown in the side panel and as the "Message" entry of the
        # series list (PACSonWEB: "available within the exam as a separate series").
        "shared_messages": distinct_messages(shared_entries),
        "labels": shown_labels(shared_entries),
        "study_link": request.build_absolute_uri(href),
        "viewer_data": {
            "frameUrl": frame_url,
            "series": series_data,
        },
        # What other apps add to the study page (guest links...), registered by them.
        **extensions_context(request, study, access),
    }


@require_GET
def study(request: HttpRequest, study_uid: str) -> HttpResponse:
    try:
        study, access = _study_or_login(request, study_uid)
    except _LoginRequired:
        return redirect_to_login(request.get_full_path())
    except Http404:
        # A study the user holds only through a share asking for an SMS code: to its code page.
        # Only this page asks; frames, downloads and the API just answer 404.
        challenge = access_challenge(request, study_uid)
        if challenge is None:
            raise
        return redirect(challenge)
    record_study_view(request=request, study=study, access=access)
    return render(request, "studies/viewer.html", _viewer_context(request, study, access))


@require_POST
def save_report(request: HttpRequest, study_uid: str) -> HttpResponse:
    try:
        study, access = _study_or_login(request, study_uid)
    except _LoginRequired:
        return redirect_to_login(reverse("studies:study", args=[study_uid]))
    form = ReportForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            update_report(
                user=request.user if request.user.is_authenticated else None,
                study=study,
                text=form.cleaned_data["text"],
                access=access,
                request=request,
                base_version=form.cleaned_data["version"],
            )
        except ReportConflict as exc:
            form.add_error(None, exc)
            status = 409
        else:
            messages.success(request, _("Report saved."))
            return redirect(reverse("studies:study", args=[study.study_uid]) + "#report")
    return render(
        request,
        "studies/viewer.html",
        _viewer_context(request, study, access, report_form=form),
        status=status,
    )
