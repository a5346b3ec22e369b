"""The guest links of the study page: a "Guest links" button in the viewer's header (New Guest
Link) and the dialog listing the study's links, for users who may create or view them."""

from studies.viewer_extensions import ViewerExtension, register_viewer_extension


def _context(request, study, access) -> dict:
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
