"""The "Open in OHIF" button of the study page, where OHIF is installed."""

from typing import Any

from django.http import HttpRequest

from studies.access import StudyAccess
from studies.models import Study
from studies.viewer_extensions import ViewerExtension, register_viewer_extension
from viewers.services import ohif_available


def _context(request: HttpRequest, study: Study, access: StudyAccess) -> dict[str, Any]:
    return {"ohif_study": study} if ohif_available() else {}


OPEN_IN_OHIF = ViewerExtension(
    key="ohif", context=_context, header_template="viewers/_open_in_ohif.html"
)


def register() -> None:
    register_viewer_extension(OPEN_IN_OHIF)
