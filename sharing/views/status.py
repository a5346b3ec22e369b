"""The organization administrators' "Blocked shares" page (PACSonWEB's "Status Forwarding"):
``/shares/status/``.

It lists the share recipients blocked after too many wrong SMS codes, of the shares sent by the
organizations the user administers (Perm.ADMINISTER; a superuser sees all), with an Unblock
button each. Unblocking goes through ``sharing.services.two_factor.unblock``, which checks the
permission again and audits it. The list names the sender, the recipient and the studies'
descriptions and dates, never the patient (this is a screen an office shares).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts.http import AuthenticatedRequest
from accounts.models import User
from sharing.selectors import recipient_name, study_summaries
from sharing.services import two_factor


def _may_use_page(user: User) -> bool:
    scope = two_factor.unblocking_organizations(user)
    return scope is None or bool(scope)


@login_required
@require_GET
def blocked_shares(request: AuthenticatedRequest) -> HttpResponse:
    if not _may_use_page(request.user):
        raise PermissionDenied(_("Only an administrator of an organization can see this page."))
    recipients = list(two_factor.blocked_recipients(request.user)[:500])
    rows = []
    for recipient in recipients:
        share = recipient.share
        studies, more_studies = study_summaries(share)
        rows.append(
            {
                "recipient": recipient,
                "share": share,
                "who": recipient_name(recipient),
                "kind": recipient.get_kind_display(),
                "sender": share.sender.display_name,
                "studies": studies,
                "more_studies": more_studies,
            }
        )
    return render(request, "sharing/status/blocked.html", {"rows": rows})


@login_required
@require_POST
def unblock(request: AuthenticatedRequest, recipient_id: int) -> HttpResponse:
    recipient = None
    if _may_use_page(request.user):
        recipient = two_factor.administered_recipients(request.user).filter(pk=recipient_id).first()
    if recipient is None:
        # Someone else's share, or a removed one: nothing here to unblock.
        raise Http404("No such share.")
    if not two_factor.unblock(user=request.user, recipient=recipient, request=request):
        messages.info(request, _("This share is not blocked (any more): nothing to do."))
        return redirect("sharing:blocked_shares")
    messages.success(
        request,
        _("Share %(share)s unblocked for %(who)s: they can ask for a new code and open it again.")
        % {"share": recipient.share_id, "who": recipient_name(recipient)},
    )
    return redirect("sharing:blocked_shares")


urlpatterns = [
    path("status/", blocked_shares, name="blocked_shares"),
    path("status/<int:recipient_id>/unblock/", unblock, name="unblock"),
]
