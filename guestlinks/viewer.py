"""The guest links of the study page: a "Guest links" button in the viewer's header (New Guest
Link) and the dialog listing the study's links, for users who may create or view them."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from studies.access import StudyAccess
from studies.models import Study
from studies.viewer_extensions import ViewerExtension, register_viewer_extension


def _context(request: HttpRequest, study: Study, access: StudyAccess) -> dict[str, Any]:
    from guestlinks.views.sender import study_links_context  # views import forms and services

    return study_links_context(request, study)


GUEST_LINKS = ViewerExtension(
    key="guest_links",
    context=_context,
    header_template="guestlinks/_study_links_button.html",
    body_template="guestlinks/_study_links.html",
)


def register() -> None:
    register_viewer_extension(GUEST_LINKS)
