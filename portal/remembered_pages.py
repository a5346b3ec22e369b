"""Pages remembered for the session that asked for them (``portal.decisions``).

A user goes back to the same list again and again: the directory after each study, the same
search refreshed. Rendering such a page costs far more than everything else its request does (a
page of 50 studies some 30 ms of templates and queries), and what it shows rests on exactly what
a remembered decision rests on: the principal's access, the studies, entries, worklists and
folders, and the accounts, each of which moves the decisions' generation on when it changes.
So a page is remembered as a decision is, under a key of its own view that names the session
(never shared by two sessions, let alone two users), and is forgotten with the generation, at
the first of the principal's dated accesses to end, and after ``ACCESS_DECISION_SECONDS``.

What differs from one answer of the page to the next is left out of what is remembered:

- the CSRF token, which each answer carries afresh: the page is rendered with a mark in its
  place and kept in pieces around it (:class:`RememberedPage`);
- one-time messages ("That search has expired"): a page showing any is rendered for its request
  alone, neither remembered nor answered from memory (:func:`shows_messages`).

The rendered HTML holds what the page shows of its patients, in the shared cache, as the frames
cache holds their images: for ``ACCESS_DECISION_SECONDS`` at most, under a key that names no
patient (``decisions.digest``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.staticfiles.storage import staticfiles_storage
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.utils import timezone, translation


@dataclass(frozen=True)
class RememberedPage:
    """A rendered page as it is remembered: its HTML in the pieces between the places its CSRF
    token goes, and what its view needs of it on every answer (``facts``: how many rows it
    listed, for the audit event each answer owes)."""

    pieces: tuple[str, ...]
    facts: dict[str, Any] = field(default_factory=dict)

    def response(self, request: HttpRequest, *, status: int = 200) -> HttpResponse:
        """The page for this request, with the request's own CSRF token."""
        return HttpResponse(get_token(request).join(self.pieces), status=status)


def render_page(
    request: HttpRequest, template_name: str, context: dict[str, Any], **facts: Any
) -> RememberedPage:
    """The page ``render`` would answer, ready to be remembered. The mark standing for the CSRF
    token is drawn afresh for each rendering, so that nothing the page shows (a patient's name
    stored before) can be taken for it."""
    mark = f"csrf-{secrets.token_hex(16)}"
    html = render_to_string(template_name, {**context, "csrf_token": mark}, request)
    return RememberedPage(tuple(html.split(mark)), facts)


def shows_messages(request: HttpRequest) -> bool:
    """Whether the page will show one-time messages (``django.contrib.messages``): then it is
    this request's own, neither remembered nor answered from memory."""
    return len(messages.get_messages(request)) > 0


def page_question(request: HttpRequest) -> tuple[str, ...]:
    """What a page's HTML depends on besides its view's own criteria and the principal: its
    address (the language menu leads back to it), the host its absolute links name, the
    language and time zone it is written in, and the static files it links to (a release with
    other files asks again)."""
    return (
        request.scheme or "",
        request.get_host(),
        request.get_full_path(),
        translation.get_language() or "",
        timezone.get_current_timezone_name(),
        getattr(staticfiles_storage, "manifest_hash", ""),
    )
