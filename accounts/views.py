"""Login (password, then a one-time code where the account has a device), logout, password
change, the two-factor page and the API tokens page. Each view validates its form, calls one
service from ``accounts.services`` and turns a refusal into a form error."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render, resolve_url
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts import demo, services
from accounts.forms import CodeForm, LoginForm, PasswordChangeForm, PasswordConfirmForm
from accounts.http import AuthenticatedRequest
from accounts.models import User
from accounts.policy import has_two_factor, two_factor_required
from portal.csrf import accepts_opaque_origin
from portal.qr import qr_svg

# Refused attempts that hit the throttle answer 429, which monitoring can count apart from
# ordinary typing mistakes.
_TOO_MANY_REQUESTS = 429


def _safe_next(request: HttpRequest) -> str:
    """The ``next`` parameter if it points into this site, else an empty string."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


def _qr_svg(data: str) -> str:
    # Rendered here, from our own otpauth URL, as inline SVG: no image request carries the
    # secret, and the CSP needs no exception. The page's figure labels it.
    return mark_safe(qr_svg(data, border=2, css_class=""))  # noqa: S308


@sensitive_post_parameters("password", "otp_token")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request)
    success_url = next_url or resolve_url(settings.LOGIN_REDIRECT_URL)
    if request.method == "GET" and request.user.is_authenticated:
        return redirect(success_url)
    form = LoginForm(request.POST or None)
    # The code field is offered once the account's ceiling slowed a login down, and kept.
    with_code = bool(request.POST.get("with_code") or request.GET.get("with_code"))
    status, retry_after = 200, None
    if request.method == "POST" and form.is_valid():
        try:
            logged_in = services.log_in_with_password(
                request=request,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
                next_url=success_url,
                otp_token=form.cleaned_data["otp_token"],
            )
        except services.Throttled as exc:
            form.add_error(None, exc.message)
            status, retry_after = _TOO_MANY_REQUESTS, exc.retry_after
            with_code = with_code or exc.account_wide
        except services.AuthenticationRefused as exc:
            form.add_error(None, exc.message)
        else:
            if logged_in:
                return redirect(success_url)
            return redirect("accounts:two_factor_verify")
    response = render(
        request,
        "accounts/login.html",
        {
            "form": form,
            "next": next_url,
            "with_code": with_code,
            "demo_accounts": _demo_accounts(),
            "demo_password": demo.DEMO_PASSWORD,
        },
        status=status,
    )
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _demo_accounts() -> tuple[demo.DemoUser, ...]:
    return demo.USERS if settings.DEMO_MODE else ()


@sensitive_post_parameters("otp_token")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    """The second login step; also raises a logged-in session that began without the code to a
    verified one (the administration requires it)."""
    signed_in: User | None = None
    if request.user.is_authenticated:
        signed_in = request.user
        next_url = _safe_next(request) or resolve_url(settings.LOGIN_REDIRECT_URL)
        if signed_in.is_verified():
            return redirect(next_url)
        if not has_two_factor(signed_in):
            return redirect("accounts:two_factor")
        pending_user = None
    else:
        pending_user = services.pending_login_user(request)
        if pending_user is None:
            messages.warning(
                request, _("Your login took too long. Enter your username and password again.")
            )
            return redirect("accounts:login")
        next_url = ""
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        token = form.cleaned_data["otp_token"]
        try:
            if signed_in is not None:
                services.verify_session(request=request, user=signed_in, token=token)
            else:
                next_url = services.log_in_with_code(request=request, token=token)
        except services.PendingLoginExpired as exc:
            messages.warning(request, exc.message)
            return redirect("accounts:login")
        except services.Throttled as exc:
            form.add_error(None, exc.message)
            status = _TOO_MANY_REQUESTS
        except services.AuthenticationRefused as exc:
            form.add_error("otp_token", exc.message)
        else:
            return redirect(next_url)
    return render(
        request,
        "accounts/two_factor_verify.html",
        {
            "form": form,
            "next": next_url if pending_user is None else "",
            "session_verification": pending_user is None,
        },
        status=status,
    )


# The link page offers "log out" to a recipient logged in as the wrong account, and posts it
# from a no-referrer page; the project-wide CSRF middleware still checks the token.
@accepts_opaque_origin
@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    services.log_out(request=request)
    messages.info(request, _("You are logged out."))
    return redirect(settings.LOGOUT_REDIRECT_URL)


@login_required
@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def password_change(request: AuthenticatedRequest) -> HttpResponse:
    form = PasswordChangeForm(request.user, request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            services.change_password(
                request=request,
                user=request.user,
                old_password=form.cleaned_data["old_password"],
                new_password=form.cleaned_data["new_password1"],
            )
        except services.Throttled as exc:
            form.add_error(None, exc.message)
            status = _TOO_MANY_REQUESTS
        except services.AuthenticationRefused as exc:
            form.add_error("old_password", exc.message)
        else:
            return redirect("accounts:password_change_done")
    return render(request, "accounts/password_change.html", {"form": form}, status=status)


@login_required
@never_cache
def password_change_done(request: AuthenticatedRequest) -> HttpResponse:
    return render(request, "accounts/password_change_done.html")


@login_required
@sensitive_post_parameters("password", "otp_token")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def two_factor(request: AuthenticatedRequest) -> HttpResponse:
    """Set up an authenticator app (QR code, secret as text, confirmation code), or remove it
    after entering the password again."""
    next_url = _safe_next(request)
    enabled = has_two_factor(request.user)
    status = 200
    context = {
        "enabled": enabled,
        "next": next_url,
        "required": two_factor_required(request.user),
    }
    if enabled:
        remove_form = PasswordConfirmForm(request.POST or None)
        if request.method == "POST" and remove_form.is_valid():
            password = remove_form.cleaned_data["password"]
            try:
                services.remove_two_factor(request=request, password=password)
            except services.Throttled as exc:
                remove_form.add_error(None, exc.message)
                status = _TOO_MANY_REQUESTS
            except services.AuthenticationRefused as exc:
                remove_form.add_error("password", exc.message)
            else:
                messages.success(
                    request,
                    _("Two-factor authentication is off. Logins now ask only for your password."),
                )
                return redirect("accounts:two_factor")
        context["remove_form"] = remove_form
    else:
        confirm_form = CodeForm(request.POST or None)
        if request.method == "POST" and confirm_form.is_valid():
            token = confirm_form.cleaned_data["otp_token"]
            try:
                services.confirm_enrolment(request=request, token=token)
            except services.AuthenticationRefused as exc:
                confirm_form.add_error("otp_token", exc.message)
            else:
                messages.success(
                    request,
                    _(
                        "Two-factor authentication is on. Each login now asks for a code "
                        "from your authenticator app."
                    ),
                )
                return redirect(next_url or "accounts:two_factor")
        enrolment = services.start_enrolment(request=request)
        context.update(
            confirm_form=confirm_form,
            qr_svg=_qr_svg(enrolment.config_url),
            secret=enrolment.secret,
            issuer=settings.OTP_TOTP_ISSUER,
        )
    return render(request, "accounts/two_factor.html", context, status=status)


@login_required
@csrf_protect
@never_cache
@require_http_methods(["GET"])
def api_tokens(request: AuthenticatedRequest) -> HttpResponse:
    """The user's API tokens (REST API and DICOMweb): when each was made, last used and ends.
    Never a secret: the portal keeps only digests."""
    tokens = request.user.api_tokens.order_by("-created_at")
    return render(
        request,
        "accounts/api_tokens.html",
        {
            "tokens": tokens,
            "now": timezone.now(),
            "lifetime_days": settings.API_TOKEN_LIFETIME_DAYS,
            "idle_days": settings.API_TOKEN_IDLE_DAYS,
        },
    )


@login_required
@csrf_protect
@require_POST
def revoke_api_token(request: AuthenticatedRequest, token_id: int) -> HttpResponse:
    # Someone else's token is "not found", like one that does not exist.
    token = get_object_or_404(request.user.api_tokens.select_related("user"), pk=token_id)
    services.revoke_api_tokens(request=request, tokens=[token], reason="revoked by its owner")
    messages.success(
        request,
        _("Token %(prefix)s… is revoked: it no longer opens anything.") % {"prefix": token.prefix},
    )
    return redirect("accounts:api_tokens")


@accepts_opaque_origin
@require_POST
def language_view(request: HttpRequest) -> HttpResponse:
    """The language menu of every page: the language is remembered in a cookie for this browser
    (the login and guest pages too) and, for a logged-in user, on the account. Back to the page
    the menu was on."""
    response = redirect(_safe_next(request) or resolve_url("home"))
    try:
        language = services.set_language(
            user=request.user, language=request.POST.get("language", "")
        )
    except ValidationError as error:
        messages.error(request, error.messages[0])
        return response
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )
    return response
