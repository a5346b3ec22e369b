"""The "Shares" page: ``/shares/``. The shares a user sent, and for an organization's
administrators the shares of their organization, with each one's patients and studies, recipients,
validity and state, and Remove, which ends the recipients' access at once (``remove_share``,
audited) after a confirmation step; and the share codes of the user's worklists.

A study's patient is named only to someone who may see the study now, as they may see it
(``sharing.selectors.shared_studies``): an administrator who may not open a colleague's study
sees its description and date only.

Removing a share ends a colleague's clinical access, so Remove is a page that says what ends
and for whom (``GET /shares/<id>/remove/``), whose form posts ``confirm``; a POST without it
removes nothing and answers that page. No script is needed.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from accounts.http import AuthenticatedRequest
from portal.http import MAX_ID
from sharing.models import Share
from sharing.selectors import (
    manageable_shares,
    recipient_name,
    shared_studies,
    worklist_share_codes,
)
from sharing.services.shares import remove_share
from studies.services.viewing import record_studies_listed

PAGE_SIZE = 50
# The confirmation page lists this many studies of the share before "and n more".
CONFIRM_STUDIES = 20


def _state(share: Share, today: date) -> str:
    if share.removed_at is not None:
        return "removed"
    if share.valid_until is not None and share.valid_until < today:
        return "expired"
    return "running"


def _with_recipients(shares: QuerySet[Share]) -> QuerySet[Share]:
    return shares.prefetch_related(
        "recipients__user", "recipients__group", "recipients__location", "recipients__worklist"
    )


def _rows(
    request: AuthenticatedRequest, shares: list[Share], *, limit: int = 5
) -> list[dict[str, Any]]:
    today = timezone.localdate()
    studies = shared_studies(request, shares, limit=limit)
    rows = []
    for share in shares:
        lines, more_studies = studies[share.pk]
        rows.append(
            {
                "share": share,
                "state": _state(share, today),
                "sender": share.sender.display_name,
                "own": share.sender_id == request.user.pk,
                "recipients": [
                    {
                        "name": recipient_name(r),
                        "kind": r.get_kind_display(),
                        "pending": r.pending,
                        "blocked": r.blocked_at is not None,
                    }
                    for r in share.recipients.all()
                ],
                "studies": lines,
                "more_studies": more_studies,
            }
        )
    return rows


def _audit_listed(request: HttpRequest, rows: list[dict[str, Any]]) -> None:
    """A page that names patients is a list of studies: one "Query" event (as the directory's),
    counting the studies whose patient it named."""
    named = sum(1 for row in rows for item in row["studies"] if item.patient is not None)
    if named:
        record_studies_listed(request=request, via="shares", keys=(), rows=named)


def _manageable(request: AuthenticatedRequest, pk: int) -> Share:
    share = (
        _with_recipients(manageable_shares(request.user)).filter(pk=pk).first()
        if pk <= MAX_ID
        else None
    )
    if share is None:
        raise Http404("No such share.")
    return share


@login_required
@require_GET
def shares_page(request: AuthenticatedRequest) -> HttpResponse:
    shares = _with_recipients(manageable_shares(request.user))
    # Keyset paging by id: ``?before=<id>`` shows the older ones.
    before = request.GET.get("before", "")
    if before.isdigit() and 0 < int(before) <= MAX_ID:
        shares = shares.filter(pk__lt=int(before))
    page = list(shares.order_by("-pk")[: PAGE_SIZE + 1])
    older = page[PAGE_SIZE - 1].pk if len(page) > PAGE_SIZE else None
    rows = _rows(request, page[:PAGE_SIZE])
    _audit_listed(request, rows)
    context = {
        "rows": rows,
        "older": older,
        "share_codes": worklist_share_codes(request.user),
    }
    return render(request, "sharing/sent/shares.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def remove(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """GET: what removing this share ends, and for whom, with the button that removes it. POST
    with ``confirm``: remove it. A POST without ``confirm`` (a form or script that skipped the
    question) removes nothing and shows the question."""
    share = _manageable(request, pk)
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        if share.removed_at is not None:
            messages.info(request, _("This share had already been removed."))
            return redirect("sharing:shares")
        (row,) = _rows(request, [share], limit=CONFIRM_STUDIES)
        _audit_listed(request, [row])
        status = 200 if request.method == "GET" else 400
        return render(request, "sharing/sent/remove.html", {"row": row}, status=status)
    if remove_share(user=request.user, share=share, request=request):
        messages.success(
            request,
            _("Share %(share)s removed: its recipients no longer have access.")
            % {"share": share.pk},
        )
    else:
        messages.info(request, _("This share had already been removed."))
    return redirect("sharing:shares")


urlpatterns = [
    path("", shares_page, name="shares"),
    path("<int:pk>/remove/", remove, name="remove"),
]
