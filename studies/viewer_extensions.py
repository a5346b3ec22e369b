"""Panels other apps add to the study viewer, registered from their AppConfig.ready().

The viewer belongs to studies, and studies imports no feature app (the arrows run from sharing
and guest links to studies). A feature that shows something on the study page, like the guest
links button and list, registers a :class:`ViewerExtension`: a function giving its template
context for this request and study, and the templates to include in the page's header and body.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from studies.access import StudyAccess
from studies.models import Study

ContextFunction = Callable[[HttpRequest, Study, StudyAccess], dict[str, Any]]


@dataclass(frozen=True)
class ViewerExtension:
    key: str
    # Returns the extension's context, or {} when it has nothing to show to this viewer.
    context: ContextFunction
    header_template: str = ""
    body_template: str = ""


_registry: dict[str, ViewerExtension] = {}


def register_viewer_extension(extension: ViewerExtension) -> None:
    _registry[extension.key] = extension


def extensions_context(request: HttpRequest, study: Study, access: StudyAccess) -> dict[str, Any]:
    """The merged context of every extension with something to show, plus the templates to
    include: ``viewer_header_templates`` and ``viewer_body_templates``."""
    context: dict[str, Any] = {}
    headers: list[str] = []
    bodies: list[str] = []
    for key in sorted(_registry):
        extension = _registry[key]
        extra = extension.context(request, study, access)
        if not extra:
            continue
        context.update(extra)
        if extension.header_template:
            headers.append(extension.header_template)
        if extension.body_template:
            bodies.append(extension.body_template)
    return {**context, "viewer_header_templates": headers, "viewer_body_templates": bodies}
