"""The "Shares" page: ``/shares/``. The shares a user sent, and for an organization's
administrators the shares of their organization, with each one's recipients, validity and state,
and a Remove button that ends the recipients' access at once (``remove_share``, audited).

Like the Blocked shares page it names studies by description and date, never the patient.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from sharing.selectors import manageable_shares, recipient_name, study_summaries
from sharing.services import remove_share
from studies.selectors import MAX_ID

PAGE_SIZE = 50


def _state(share, today) -> str:
    if share.removed_at is not None:
        return "removed"
    if share.valid_until is not None and share.valid_until < today:
        return "expired"
    return "running"


@login_required
@require_GET
def shares_page(request: HttpRequest) -> HttpResponse:
    shares = manageable_shares(request.user).prefetch_related(
        "recipients__user", "recipients__group", "recipients__location", "recipients__worklist"
    )
    # Keyset paging by id: ``?before=<id>`` shows the older ones.
    before = request.GET.get("before", "")
    if before.isdigit() and 0 < int(before) <= MAX_ID:
        shares = shares.filter(pk__lt=int(before))
    page = list(shares.order_by("-pk")[: PAGE_SIZE + 1])
    today = timezone.localdate()
    rows = []
    for share in page[:PAGE_SIZE]:
        studies, more_studies = study_summaries(share)
        rows.append(
            {
                "share": share,
                "state": _state(share, today),
                "sender": share.sender.get_full_name() or share.sender.get_username(),
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
                "studies": studies,
                "more_studies": more_studies,
            }
        )
    older = page[PAGE_SIZE - 1].pk if len(page) > PAGE_SIZE else None
    return render(request, "sharing/sent/shares.html", {"rows": rows, "older": older})


@login_required
@require_POST
def remove(request: HttpRequest, pk: int) -> HttpResponse:
    share = manageable_shares(request.user).filter(pk=pk).first() if pk <= MAX_ID else None
    if share is None:
        raise Http404("No such share.")
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
