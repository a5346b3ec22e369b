"""The code page of a share that asks for SMS two-factor: ``/shares/two-factor/<recipient id>/``.

The study page of such a share leads here (``sharing.access.code_page_for``). The page has two
forms: "Send code" (texts a code to the user's registered mobile) and the code itself; the right
code is remembered in this browser session and the user goes on to the study. A blocked share
gets a page naming the organization to contact. The address carries the ShareRecipient's id and,
at most, the study page to return to: nothing about the patient. Only a recipient of the share
(their personal worklist, or the group or location it was shared with) finds the page; anyone
else gets a 404.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts.http import AuthenticatedRequest
from notifications.codes import is_code_shaped, normalize_code
from portal.http import SeeOther
from sharing.access import verified_recipient_ids
from sharing.models import ShareRecipient
from sharing.services import two_factor

_CODE_PAGE = "sharing/two_factor/code.html"
_BLOCKED_PAGE = "sharing/two_factor/blocked.html"


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code from the SMS"),
        max_length=16,
        help_text=gettext_lazy("Six digits. Select Send code if you have none."),
        error_messages={
            "required": gettext_lazy(
                "Enter the code we sent you by SMS. No code yet? Select Send code."
            )
        },
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "pattern": r"[0-9 \-]*",
                "size": 8,
                "autofocus": True,
            }
        ),
    )

    def clean_code(self) -> str:
        code = normalize_code(self.cleaned_data["code"])
        if not is_code_shaped(code):
            raise forms.ValidationError(
                gettext_lazy("Enter the six digits of the code we sent by SMS.")
            )
        return code


def _next_url(request: HttpRequest) -> str:
    """Where to go once the code is right: the study page that sent the user here, if it is a
    page of this site."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate.startswith("/") and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


def _destination(request: HttpRequest, recipient: ShareRecipient) -> str:
    next_url = _next_url(request)
    if next_url:
        return next_url
    studies = list(recipient.share.studies.values_list("study_uid", flat=True)[:2])
    if len(studies) == 1:
        return reverse("studies:study", args=[studies[0]])
    return reverse("studies:directory")


def _page(
    request: AuthenticatedRequest,
    recipient: ShareRecipient,
    *,
    form: CodeForm | None = None,
    notice: str = "",
    send_error: str = "",
    status: int = 200,
) -> HttpResponse:
    page = two_factor.describe(user=request.user, recipient=recipient)
    if page.blocked:
        return _blocked(request, recipient)
    return render(
        request,
        _CODE_PAGE,
        {
            "page": page,
            "form": form or CodeForm(),
            "next": _next_url(request),
            "notice": notice,
            "send_error": send_error,
        },
        status=status,
    )


def _blocked(request: HttpRequest, recipient: ShareRecipient, message: str = "") -> HttpResponse:
    return render(
        request,
        _BLOCKED_PAGE,
        {
            "organization_name": recipient.share.organization.name,
            "message": message or two_factor.blocked_message(recipient),
        },
        status=403,
    )


@login_required
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def code_page(request: AuthenticatedRequest, recipient_id: int) -> HttpResponse:
    try:
        recipient = two_factor.find_recipient(user=request.user, recipient_id=recipient_id)
    except two_factor.ShareUnavailable:
        raise Http404("No such share.") from None
    if recipient.blocked_at is not None:
        return _blocked(request, recipient)
    if recipient.pk in verified_recipient_ids(request):
        # Entered before in this browser: nothing to ask.
        return SeeOther(_destination(request, recipient))
    if request.method == "POST":
        if request.POST.get("action") == "send_code":
            return _send_code(request, recipient)
        return _verify(request, recipient)
    return _page(request, recipient)


def _send_code(request: AuthenticatedRequest, recipient: ShareRecipient) -> HttpResponse:
    try:
        sent = two_factor.send_code(user=request.user, recipient=recipient, request=request)
    except two_factor.ShareUnavailable:
        raise Http404("No such share.") from None
    except two_factor.ShareBlocked as refusal:
        return _blocked(request, recipient, refusal.message)
    except two_factor.TwoFactorError as refusal:
        response = _page(request, recipient, send_error=refusal.message, status=refusal.status)
        retry_after = getattr(refusal, "retry_after", None)
        if retry_after:
            response.headers["Retry-After"] = str(retry_after)
        return response
    minutes = int(two_factor.code_validity().total_seconds() // 60)
    notice = ngettext(
        "We sent a code by SMS to your mobile phone ending in %(digits)s. "
        "It is valid for %(minutes)d minute.",
        "We sent a code by SMS to your mobile phone ending in %(digits)s. "
        "It is valid for %(minutes)d minutes.",
        minutes,
    ) % {"digits": sent.mobile_hint, "minutes": minutes}
    return _page(request, recipient, notice=notice)


def _verify(request: AuthenticatedRequest, recipient: ShareRecipient) -> HttpResponse:
    form = CodeForm(request.POST)
    if not form.is_valid():
        return _page(request, recipient, form=form, status=400)
    try:
        two_factor.verify_code(
            user=request.user,
            recipient=recipient,
            code=form.cleaned_data["code"],
            request=request,
        )
    except two_factor.ShareUnavailable:
        raise Http404("No such share.") from None
    except two_factor.ShareBlocked as refusal:
        return _blocked(request, recipient, refusal.message)
    except two_factor.CodeRefused as refusal:
        recipient.refresh_from_db(fields=["code_failures", "blocked_at"])
        form.add_error("code", refusal.message)
        return _page(request, recipient, form=form, status=refusal.status)
    return SeeOther(_destination(request, recipient))


urlpatterns = [
    path("two-factor/<int:recipient_id>/", code_page, name="two_factor"),
]
