"""The Share dialog (PACSonWEB "Sharing studies with a user", CIMAR "Sharing a Study").

GET ``?study=<uid>`` (repeated for several selected studies) answers the form; POST shares
through ``sharing.services.shares.share_studies`` and answers the confirmation, or the form
again with status 400 and the service's errors beside their fields. The dialog's own buttons
(add a recipient, search, choose a result, favorites, remove a favorite, remove a row) post
too and answer the form as edited, status 200, sharing nothing: so the whole dialog works
without scripts, and ``static/js/share.js`` only makes it quicker.

Views answer HTML fragments for ``static/js/dialog.js``; a browser that asked for the page
itself (no scripts) gets the same fragment inside the portal's layout. A study the user may not
see answers 404 like one that does not exist; studies the user may see but not share answer 403
with an explanation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from accounts.http import AuthenticatedRequest
from accounts.models import User
from portal.http import MAX_ID, dialog_response, is_fragment_request
from sharing.forms import ACCESS_CHOICES, DetailedSearchForm, RecipientRows, ShareForm
from sharing.models import Favorite, RecipientKind, SenderDefaults, Share, ShareRecipient
from sharing.selectors import FavoriteItem, favorites_of, recipient_name, search_recipients
from sharing.services.favorites import remove_favorite
from sharing.services.shares import (
    ShareTerms,
    senders_access,
    share_studies,
    share_terms,
    studies_seen_by_sender,
)
from studies.access import StudyAccess
from studies.anonymize import patient_display
from studies.models import Study

MAX_STUDIES = 500

FORM_TEMPLATE = "sharing/_share_form.html"
DONE_TEMPLATE = "sharing/_share_done.html"
DONE_TEXT_TEMPLATE = "sharing/_share_done.txt"
REFUSED_TEMPLATE = "sharing/_share_refused.html"
PAGE_TEMPLATE = "sharing/_share_page.html"


def _respond(
    request: HttpRequest, template: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    return dialog_response(request, template, PAGE_TEMPLATE, context, status=status)


def _selected_studies(request: AuthenticatedRequest) -> list[tuple[Study, StudyAccess]]:
    """The selected studies and the user's access to each; 404 for any the user may not see
    (exactly like one that does not exist)."""
    data = request.POST if request.method == "POST" else request.GET
    uids = list(dict.fromkeys(uid.strip()[:64] for uid in data.getlist("study") if uid.strip()))
    if not uids or len(uids) > MAX_STUDIES:
        raise Http404("No such study.")
    seen = studies_seen_by_sender(request.user, uids, request)
    if len(seen) != len(uids):
        raise Http404("No such study.")
    return [seen[uid] for uid in uids]


def _study_context(selected: list[tuple[Study, StudyAccess]]) -> dict[str, Any]:
    """What the dialog says it shares. The patient's name is shown in the dialog's body so the
    sender can check it is the right patient; titles and URLs never carry it."""
    studies = [study for study, _access in selected]
    patients = list(
        dict.fromkeys(
            patient_display(study, anonymized=access.anonymized).name for study, access in selected
        )
    )
    return {"studies": studies, "patient_names": [name for name in patients if name]}


def _favorites(request: AuthenticatedRequest, kinds: Sequence[str]) -> list[FavoriteItem]:
    return favorites_of(request.user, kinds=[k for k in kinds if k in RecipientKind.values])


def _initial_choices(user: User) -> dict[str, bool]:
    """The two-factor and send-mail choices of the sender's last share with a user."""
    defaults = SenderDefaults.objects.filter(user=user).first()
    if defaults is None:
        defaults = SenderDefaults(user=user)
    return {"two_factor": defaults.two_factor, "send_mail": defaults.send_mail}


# The dialog's own buttons: they change the form and share nothing.
EDIT_INTENTS = frozenset({"add_recipient", "search", "detailed_search", "favorites"})


def _render_form(
    request: AuthenticatedRequest,
    context: dict[str, Any],
    *,
    form: ShareForm,
    rows: RecipientRows,
    finder: DetailedSearchForm,
    favorites: list[FavoriteItem],
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    context.update(
        {
            "form": form,
            "rows": rows,
            "finder": finder,
            "favorites": favorites,
            "finder_results": None,
            "show_favorites": False,
            **extra,
        }
    )
    return _respond(request, FORM_TEMPLATE, context, status=status)


def _remove_favorite(request: AuthenticatedRequest, value: str) -> None:
    """Remove one of the sender's favorites. Someone else's, or one already gone (removed in
    another tab), is left alone: the list shown afterwards is the truth either way."""
    try:
        pk = int(value)
    except (TypeError, ValueError):
        return
    favorite = (
        Favorite.objects.filter(pk=pk, owner=request.user).first() if 0 < pk <= MAX_ID else None
    )
    if favorite is not None:
        remove_favorite(owner=request.user, favorite=favorite)


def _edit(
    request: AuthenticatedRequest,
    context: dict[str, Any],
    *,
    terms: ShareTerms,
    rows: RecipientRows,
    favorites: list[FavoriteItem],
    show_favorites: bool = False,
) -> HttpResponse:
    """Add, remove or choose a recipient, search, show the favorites, remove one of them: the
    form as edited, without errors (it is still being filled in), status 200."""
    data = request.POST
    finder = DetailedSearchForm(data, kinds=terms.recipient_kinds)
    extra: dict[str, Any] = {"show_favorites": True} if show_favorites else {}
    intent = data.get("intent")
    if "remove_row" in data:
        rows.remove(data["remove_row"])
    elif "pick" in data:
        rows.pick(data["pick"])
    elif intent == "add_recipient":
        rows.add()
    elif intent == "search":
        rows.search()
    elif intent == "detailed_search" and finder.is_valid():
        extra["finder_results"] = search_recipients(
            request.user, finder.query(), kinds=terms.recipient_kinds
        )
    elif intent == "favorites":
        extra["show_favorites"] = True
    form = ShareForm.redisplay(data, terms=terms)
    return _render_form(
        request, context, form=form, rows=rows, finder=finder, favorites=favorites, **extra
    )


@login_required
@require_http_methods(["GET", "POST"])
def share_dialog(request: AuthenticatedRequest) -> HttpResponse:
    selected = _selected_studies(request)
    context = _study_context(selected)
    try:
        terms = share_terms(sender=request.user, studies=context["studies"], request=request)
    except PermissionDenied as exc:
        return _refused(request, context, exc)
    except ValidationError as exc:
        context["refusal"] = " ".join(exc.messages)
        return _respond(request, REFUSED_TEMPLATE, context, status=400)
    context["terms"] = terms
    favorites = _favorites(request, terms.recipient_kinds)
    favorite_keys = {item.recipient.key for item in favorites}
    finder = DetailedSearchForm(kinds=terms.recipient_kinds)

    if request.method == "GET":
        form = ShareForm(terms=terms, initial=_initial_choices(request.user))
        rows = RecipientRows(request.user, terms, favorite_keys=favorite_keys)
        return _render_form(
            request, context, form=form, rows=rows, finder=finder, favorites=favorites
        )

    data = request.POST
    if "remove_favorite" in data:
        # A favorite's remove button (without scripts; share.js asks the REST API instead):
        # the form as it was, the favorites shown without it.
        _remove_favorite(request, data["remove_favorite"])
        favorites = _favorites(request, terms.recipient_kinds)
        favorite_keys = {item.recipient.key for item in favorites}
    rows = RecipientRows(request.user, terms, data, favorite_keys=favorite_keys)
    if "remove_favorite" in data:
        return _edit(
            request, context, terms=terms, rows=rows, favorites=favorites, show_favorites=True
        )
    if "remove_row" in data or "pick" in data or data.get("intent") in EDIT_INTENTS:
        return _edit(request, context, terms=terms, rows=rows, favorites=favorites)

    form = ShareForm(data, terms=terms)
    # Both checked, so that every error shows at once.
    rows_valid = rows.check()
    if form.is_valid() and rows_valid:
        try:
            share = share_studies(
                sender=request.user,
                studies=context["studies"],
                recipients=rows.recipients(),
                options=form.options(),
                star=rows.starred(),
                request=request,
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
        except PermissionDenied as exc:
            return _refused(request, context, exc)
        else:
            if not is_fragment_request(request):
                # A whole page: to the confirmation's own address, so that reloading it never
                # posts the share again.
                return redirect("sharing:done", pk=share.pk)
            return _confirmation(request, share, context)
    return _render_form(
        request, context, form=form, rows=rows, finder=finder, favorites=favorites, status=400
    )


def _confirmation(request: HttpRequest, share: Share, context: dict[str, Any]) -> HttpResponse:
    context.update(_done_context(share, context["studies"]))
    context["text"] = render_to_string(DONE_TEXT_TEMPLATE, context, request=request)
    return _respond(request, DONE_TEMPLATE, context)


@login_required
@require_GET
def share_done(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """The confirmation of a share, for its sender (the page a browser without scripts lands
    on after sharing; "Share again" works from it as from the dialog)."""
    share = Share.objects.filter(pk=pk, sender=request.user).first() if pk <= MAX_ID else None
    if share is None:
        raise Http404("No such share.")
    studies = list(share.studies.select_related("patient", "organization").order_by("pk"))
    accesses = senders_access(request.user, studies, request)
    selected = []
    for study in studies:
        access = accesses[study.pk]
        if access is None:
            # The sender no longer holds one of them: nothing to confirm or share again.
            raise Http404("No such share.")
        selected.append((study, access))
    return _confirmation(request, share, _study_context(selected))


def _refused(request: HttpRequest, context: dict[str, Any], exc: PermissionDenied) -> HttpResponse:
    context["refusal"] = str(exc) or _("You may not share these studies.")
    return _respond(request, REFUSED_TEMPLATE, context, status=403)


# --- The confirmation --------------------------------------------------------------------------


def _recipient_line(recipient: ShareRecipient) -> dict[str, Any]:
    """Whom the share reached, in words for the sender."""
    kind = recipient.kind
    return {
        "kind": kind,
        "kind_label": RecipientKind(kind).label,
        "name": recipient_name(recipient),
        "pending": recipient.pending,
    }


def _done_context(share: Share, studies: list[Study]) -> dict[str, Any]:
    recipients = share.recipients.select_related(
        "user", "group__organization", "location__organization", "worklist"
    )
    options = []
    if share.anonymize:
        options.append(_("Anonymized"))
    if share.allow_further_sharing:
        options.append(_("Further sharing allowed"))
    if share.two_factor:
        options.append(_("SMS two-factor"))
    if share.urgent:
        options.append(_("Urgent"))
    if share.send_mail:
        options.append(_("Mail sent"))
    return {
        "share": share,
        "studies": studies,
        "recipient_lines": [_recipient_line(r) for r in recipients],
        "access_label": dict(ACCESS_CHOICES).get(share.level, share.level),
        "option_labels": options,
    }


urlpatterns = [
    path("dialog/", share_dialog, name="dialog"),
    path("<int:pk>/done/", share_done, name="done"),
]
