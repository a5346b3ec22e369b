"""The recipient's pages: the link page (``/l/<token>``), the email confirmation page
(``/l/<confirmation token>/confirm``) and the list of studies a worklist or folder link opened
(``/l/studies/``).

Each view validates the form, calls one service of ``guestlinks.services.opening`` and turns its
refusals into pages that say what the recipient can do next and nothing about the study. Every
answer carries ``Referrer-Policy: no-referrer`` (the token is in the address) and, like every
page, ``Cache-Control: no-store`` (portal.middleware). After the gates, the recipient is sent to
an address without the token.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from guestlinks.access import grant_for_link, live_grants
from guestlinks.forms_recipient import OpenLinkForm
from guestlinks.models import GuestLink
from guestlinks.services import opening
from guestlinks.services.messages import sender_name
from notifications.languages import speak
from portal import decisions
from portal.csrf import accepts_opaque_origin, no_referrer
from portal.http import SeeOther
from portal.remembered_pages import fills_as_is, page_question, render_page, shows_messages
from studies.models import Study

_LINK_PAGE = "guestlinks/recipient/link.html"
_UNAVAILABLE_PAGE = "guestlinks/recipient/unavailable.html"


def _unavailable(request: HttpRequest, *, status: int = 404, message: str = "") -> HttpResponse:
    return render(
        request,
        _UNAVAILABLE_PAGE,
        {"message": message or opening.unavailable_message()},
        status=status,
    )


def _speak_link_language(request: HttpRequest, link: GuestLink) -> None:
    """A guest page speaks the link's language, the one its email was written in, unless this
    browser picked another in the language menu or a logged-in user's account says which."""
    if settings.LANGUAGE_COOKIE_NAME not in request.COOKIES and not request.user.is_authenticated:
        speak(request, link.language)


def _link_page(
    request: HttpRequest,
    link: GuestLink,
    *,
    form: OpenLinkForm | None = None,
    page: opening.LinkPage | None = None,
    notice: str = "",
    code_error: str = "",
    status: int = 200,
) -> HttpResponse:
    page = page or opening.describe_link(link, request)
    context = {
        "page": page,
        "form": form if form is not None else OpenLinkForm(page=page),
        "notice": notice,
        "code_error": code_error,
        # The page's own address (the language menu and the login link lead back to it).
        "page_address": request.get_full_path(),
        "page_path": request.path,
    }
    if form is None and not notice and not code_error and _same_for_every_visitor(request):
        remembered = decisions.remember(
            _link_page_key(request, page),
            lambda: (render_page(request, _LINK_PAGE, context, holes=_ADDRESS_HOLES), None),
        )
        return remembered.response(
            request, status=status, **dict.fromkeys(_ADDRESS_HOLES, request.path)
        )
    return render(request, _LINK_PAGE, context, status=status)


# A link page before its gates is the same for every link with the same gates, organization and
# language, but for its address, which holds the link's token: remembered once for all of them
# (portal.remembered_pages), with the address filled in by each answer and never cached.
_ADDRESS_HOLES = ("page_address", "page_path")


def _same_for_every_visitor(request: HttpRequest) -> bool:
    """Whether this visitor's link page is the one every visitor of such a link sees: not a
    logged-in user's (the page then names them), not one with one-time messages, and at an
    address without a query (so that its two ways of naming the address agree) that fills the
    page as it is (a token always does; a deployment's prefix might not)."""
    return (
        not request.user.is_authenticated
        and request.get_full_path() == request.path
        and fills_as_is(request.path)
        and not shows_messages(request)
    )


def _link_page_key(request: HttpRequest, page: opening.LinkPage) -> str:
    return "guest-link-page:" + decisions.digest(
        *page.shown(), *page_question(request, address=False)
    )


@accepts_opaque_origin
@no_referrer
@sensitive_post_parameters("password", "code")
@require_http_methods(["GET", "POST"])
def link_page(request: HttpRequest, token: str) -> HttpResponse:
    try:
        link = opening.find_link(token=token, request=request)
    except opening.LinkUnavailable as refusal:
        return _unavailable(request, status=refusal.status)
    _speak_link_language(request, link)
    if grant_for_link(request, link.pk) is not None:
        # Opened before in this browser and still good: back to the studies, no use spent.
        return SeeOther(opening.destination_for(link))
    if request.method == "POST":
        if request.POST.get("action") == "send_code":
            return _send_code(request, link)
        return _open(request, link, token)
    try:
        page = opening.show_link(link=link, request=request)
    except opening.LinkUnavailable as refusal:
        return _unavailable(request, status=refusal.status)
    return _link_page(request, link, page=page)


def _open(request: HttpRequest, link: GuestLink, token: str) -> HttpResponse:
    form = OpenLinkForm(request.POST, page=opening.describe_link(link, request))
    try:
        if not form.is_valid():
            # A gate that asks nothing of the visitor refuses first, as it would have.
            opening.check_entry_gates(link=link, request=request)
            return _link_page(request, link, form=form, status=400)
        grant = opening.open_link(
            link=link,
            request=request,
            password=form.cleaned_data.get("password", ""),
            code=form.cleaned_data.get("code", ""),
        )
    except opening.LinkUnavailable as refusal:
        return _unavailable(request, status=refusal.status)
    except opening.LoginRequired:
        return redirect_to_login(reverse("guest:link", args=[token]))
    except opening.GateFailed as failure:
        if failure.locked:
            return _unavailable(request, status=failure.status, message=failure.message)
        link.refresh_from_db()
        form.add_error(failure.field, failure.message)
        return _link_page(request, link, form=form, status=failure.status)
    except opening.TooManyGuesses as refusal:
        form.add_error(None, refusal.message)
        response = _link_page(request, link, form=form, status=refusal.status)
        response.headers["Retry-After"] = str(refusal.retry_after)
        return response
    except opening.LinkError as refusal:
        # Waiting for the email confirmation, or the wrong account: the page says so.
        return _link_page(request, link, status=refusal.status)
    return SeeOther(grant.destination)


def _send_code(request: HttpRequest, link: GuestLink) -> HttpResponse:
    try:
        sent = opening.send_code(link=link, request=request)
    except opening.LinkUnavailable as refusal:
        return _unavailable(request, status=refusal.status)
    except opening.LoginRequired:
        return redirect_to_login(request.path)
    except opening.CodeNotSent as refusal:
        response = _link_page(request, link, code_error=refusal.message, status=refusal.status)
        if refusal.retry_after:
            response.headers["Retry-After"] = str(refusal.retry_after)
        return response
    except opening.LinkError as refusal:
        return _link_page(request, link, status=refusal.status)
    minutes = int(opening.sms_code_validity().total_seconds() // 60)
    notice = ngettext(
        "We sent a code by SMS to your mobile phone ending in %(digits)s. "
        "It is valid for %(minutes)d minute.",
        "We sent a code by SMS to your mobile phone ending in %(digits)s. "
        "It is valid for %(minutes)d minutes.",
        minutes,
    ) % {"digits": sent.mobile_hint, "minutes": minutes}
    return _link_page(request, link, notice=notice)


@no_referrer
@require_GET
def granted_studies(request: HttpRequest) -> HttpResponse:
    """The studies this browser's grants hold, by link, with the senders' messages."""
    grants = live_grants(request)
    if not grants:
        return _unavailable(
            request,
            message=_(
                "No shared studies are open in this browser. Open the link you received "
                "again, or ask the sender for a new link."
            ),
        )
    every_id = set().union(*(grant.study_ids for grant in grants))
    studies = list(
        Study.objects.filter(pk__in=every_id)
        .select_related("patient")
        .order_by(F("study_date").desc(nulls_last=True), "-pk")
    )
    groups = [
        {
            "link": grant.link,
            "sender": grant.link.created_by and sender_name(grant.link),
            "organization": grant.link.organization.name,
            "studies": [study for study in studies if study.pk in grant.study_ids],
        }
        for grant in grants
    ]
    return render(request, "guestlinks/recipient/studies.html", {"groups": groups})


@accepts_opaque_origin
@no_referrer
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The first email's address: a GET shows a button (mail scanners fetch addresses), the POST
    confirms and sends the second email, with the link."""
    try:
        confirmation = opening.find_confirmation(token=token, request=request)
    except opening.LinkUnavailable as refusal:
        return _unavailable(request, status=refusal.status)
    link = confirmation.link
    _speak_link_language(request, link)
    context = {
        "organization_name": link.organization.name,
        "email": opening.masked_email(link.email),
    }
    if request.method == "GET":
        already = confirmation.used_at is not None or link.confirmed_at is not None
        return render(request, "guestlinks/recipient/confirm.html", {**context, "already": already})
    try:
        sent = opening.confirm_email(confirmation=confirmation, request=request)
    except opening.LinkUnavailable as refusal:
        return _unavailable(request, status=refusal.status)
    return render(request, "guestlinks/recipient/confirmed.html", {**context, "sent": sent})
