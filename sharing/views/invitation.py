"""The invitation page of an email share (``/shares/invitation/<token>/``): who shared what, and
the registration form; or, for an address that has an account by now, the way to log in and
accept.

The view validates the form, calls one service of ``sharing.services.invitations`` and turns its
refusals into a page that says what to do next (404 for a token that names nothing, 410 for an
invitation used, withdrawn or expired, 429 while an address is throttled for probing). The token
is in the address, so every answer carries ``Referrer-Policy: no-referrer``; forms posted from
such a page arrive with ``Origin: null``, which this view accepts (portal.csrf). A GET changes
nothing: mail scanners open links too.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts.forms import RegistrationForm
from notifications.languages import supported_language
from portal.csrf import accepts_opaque_origin, no_referrer
from portal.http import SeeOther
from sharing.models import ShareRecipient
from sharing.services import invitations

_PAGE = "sharing/invitation/page.html"
_UNAVAILABLE = "sharing/invitation/unavailable.html"


def _unavailable(request: HttpRequest, refusal: invitations.InvitationError) -> HttpResponse:
    response = render(
        request,
        _UNAVAILABLE,
        {
            "message": refusal.message,
            "accepted": isinstance(refusal, invitations.InvitationAccepted),
        },
        status=refusal.status,
    )
    if isinstance(refusal, invitations.InvitationThrottled):
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def _to_directory(request: HttpRequest, activated: list[ShareRecipient]) -> HttpResponse:
    count = sum(r.entries.count() for r in activated)
    if count:
        messages.success(
            request,
            ngettext(
                "The invitation is accepted: %(count)s shared study is in your worklist.",
                "The invitation is accepted: %(count)s shared studies are in your worklist.",
                count,
            )
            % {"count": count},
        )
    return SeeOther(reverse("studies:directory"))


def _page(
    request: HttpRequest,
    invitation: invitations.Invitation,
    *,
    form: RegistrationForm | None = None,
    error: str = "",
    status: int = 200,
    account_exists: bool | None = None,
) -> HttpResponse:
    user = request.user
    if account_exists is None:
        account_exists = invitation.account_exists
    if user.is_authenticated:
        mode = "accept" if user.email.lower() == invitation.email.lower() else "wrong_account"
    elif account_exists:
        mode = "log_in"
    else:
        mode = "register"
        if form is None:
            language = supported_language(get_language()) or invitation.share.language
            form = RegistrationForm(
                email=invitation.email,
                mobile_required=invitation.needs_mobile,
                initial={"language": language},
            )
    return render(
        request,
        _PAGE,
        {
            "invitation": invitation,
            "mode": mode,
            "form": form,
            "error": error,
        },
        status=status,
    )


@accepts_opaque_origin
@no_referrer
@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def invitation_page(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invitation = invitations.find_invitation(token=token, request=request)
    except invitations.InvitationAccepted as refusal:
        if invitations.accepted_by(refusal, request.user):
            # A second click on the link (or a double submit): the studies are there already.
            messages.info(request, _("You have already accepted this invitation."))
            return SeeOther(reverse("studies:directory"))
        return _unavailable(request, refusal)
    except invitations.InvitationError as refusal:
        return _unavailable(request, refusal)
    if request.method == "GET":
        return _page(request, invitation)
    if request.POST.get("action") == "accept":
        return _accept(request, invitation)
    return _register(request, invitation)


def _accept(request: HttpRequest, invitation: invitations.Invitation) -> HttpResponse:
    try:
        activated = invitations.accept(invitation=invitation, request=request)
    except invitations.WrongAccount as refusal:
        return _page(request, invitation, error=refusal.message, status=refusal.status)
    except invitations.InvitationAccepted as refusal:
        if invitations.accepted_by(refusal, request.user):
            messages.info(request, _("You have already accepted this invitation."))
            return SeeOther(reverse("studies:directory"))
        return _unavailable(request, refusal)
    except invitations.InvitationError as refusal:
        return _unavailable(request, refusal)
    return _to_directory(request, activated)


def _register(request: HttpRequest, invitation: invitations.Invitation) -> HttpResponse:
    if request.user.is_authenticated or invitation.account_exists:
        # Someone with an account accepts; nobody registers the address twice.
        return _page(request, invitation, status=409)
    form = RegistrationForm(
        request.POST, email=invitation.email, mobile_required=invitation.needs_mobile
    )
    if not form.is_valid():
        return _page(request, invitation, form=form, status=400)
    data = form.cleaned_data
    try:
        user, activated = invitations.register(
            invitation=invitation,
            request=request,
            first_name=data["first_name"],
            last_name=data["last_name"],
            password=data["password1"],
            language=data["language"],
            mobile=data["mobile"],
            physician_number=data["physician_number"],
        )
    except ValidationError as exc:
        # The account rules, checked again by the service: name the fields they concern.
        for field, errors in exc.message_dict.items():
            form.add_error(
                {"password": "password1"}.get(field, field if field in form.fields else None),
                errors,
            )
        return _page(request, invitation, form=form, status=400)
    except invitations.InvitedAddressHasAccount as refusal:
        # Registered meanwhile (another tab, a double submit): that account logs in and accepts.
        return _page(
            request, invitation, error=refusal.message, status=refusal.status, account_exists=True
        )
    except invitations.InvitationAccepted as refusal:
        if invitations.accepted_by(refusal, request.user):
            return SeeOther(reverse("studies:directory"))
        return _unavailable(request, refusal)
    except invitations.InvitationError as refusal:
        return _unavailable(request, refusal)
    messages.success(
        request,
        _("Welcome! Your account is ready. Next time, log in with the username %(username)s.")
        % {"username": user.get_username()},
    )
    return _to_directory(request, activated)


urlpatterns = [
    path("invitation/<str:token>/", invitation_page, name="invitation"),
]
