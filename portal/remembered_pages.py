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
- what a view fills in for each answer (``holes``): a guest link's page is the same for every
  link with the same gates but for its own address, which holds the link's token and so is
  never kept in the cache;
- one-time messages ("That search has expired"): a page showing any is rendered for its request
  alone, neither remembered nor answered from memory (:func:`shows_messages`).

The rendered HTML holds what the page shows of its patients, in the shared cache, as the frames
cache holds their images: for ``ACCESS_DECISION_SECONDS`` at most, under a key that names no
patient (``decisions.digest``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.staticfiles.storage import staticfiles_storage
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.utils import timezone, translation

# What a view may fill into a remembered page: text that reads the same wherever the page has
# it, escaped for HTML or encoded in a URL (an address such as /l/<token>), so that no
# escaping is owed when it is put in.
_PLAIN_FILL = re.compile(r"[A-Za-z0-9/_.~-]*")
_CSRF_TOKEN = "csrf_token"  # noqa: S105 - the context variable, not a secret
# The shape of RememberedPage, part of every page's question: moved on when the class changes,
# so that a release never reads the pages the one before it remembered (during a deploy both
# share the cache).
_SHAPE = "pieces-holes-facts"


@dataclass(frozen=True)
class RememberedPage:
    """A rendered page as it is remembered: its HTML in the pieces between its holes, what goes
    in each hole (``holes[i]`` between ``pieces[i]`` and ``pieces[i + 1]``: the CSRF token, or
    a value its view fills in), and what its view needs of it on every answer (``facts``: how
    many rows it listed, for the audit event each answer owes)."""

    pieces: tuple[str, ...]
    holes: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)

    def response(self, request: HttpRequest, *, status: int = 200, **fills: str) -> HttpResponse:
        """The page for this request, with the request's own CSRF token and ``fills``, one for
        each hole the page was rendered with (see :func:`render_page`)."""
        values = dict(fills)
        for name, value in values.items():
            if not fills_as_is(value):
                raise ValueError(f"{name} would need escaping: render the page instead")
        if _CSRF_TOKEN in self.holes:
            values[_CSRF_TOKEN] = get_token(request)
        html = [self.pieces[0]]
        for hole, piece in zip(self.holes, self.pieces[1:], strict=True):
            html += [values[hole], piece]
        return HttpResponse("".join(html), status=status)


def fills_as_is(value: str) -> bool:
    """Whether ``value`` may fill a remembered page's hole: it reads the same escaped for HTML
    and encoded in a URL."""
    return _PLAIN_FILL.fullmatch(value) is not None


def render_page(
    request: HttpRequest,
    template_name: str,
    context: dict[str, Any],
    *,
    holes: tuple[str, ...] = (),
    **facts: Any,
) -> RememberedPage:
    """The page ``render`` would answer, ready to be remembered: the CSRF token, and each
    context variable named in ``holes``, are left out and put in by each answer. The marks
    standing for them are drawn afresh for each rendering, so that nothing the page shows (a
    patient's name stored before) can be taken for one."""
    marks = {f"hole-{secrets.token_hex(16)}": name for name in (_CSRF_TOKEN, *holes)}
    by_name = {name: mark for mark, name in marks.items()}
    html = render_to_string(template_name, {**context, **by_name}, request)
    split = re.split(f"({'|'.join(marks)})", html)
    return RememberedPage(
        pieces=tuple(split[0::2]), holes=tuple(marks[mark] for mark in split[1::2]), facts=facts
    )


def shows_messages(request: HttpRequest) -> bool:
    """Whether the page will show one-time messages (``django.contrib.messages``): then it is
    this request's own, neither remembered nor answered from memory."""
    return len(messages.get_messages(request)) > 0


def page_question(request: HttpRequest, *, address: bool = True) -> tuple[str, ...]:
    """What a page's HTML depends on besides its view's own criteria and the principal: its
    address (the language menu leads back to it; ``address=False`` for a page that has it
    filled in, as a hole), the host its absolute links name, the language and time zone it is
    written in, and the static files it links to (a release with other files asks again), and
    the shape the page is remembered in."""
    return (
        _SHAPE,
        request.scheme or "",
        request.get_host(),
        request.get_full_path() if address else "",
        translation.get_language() or "",
        timezone.get_current_timezone_name(),
        getattr(staticfiles_storage, "manifest_hash", ""),
    )
