"""Forms of the login, password and two-factor pages. They check what was typed; whether it is
right (passwords, codes) is decided in ``accounts.services``, behind the throttle."""

import re

from django import forms
from django.contrib.auth import password_validation
from django.utils.translation import gettext_lazy as _

from accounts.models import Language, User
from portal.phones import normalize_mobile

_CODE_SPACING = re.compile(r"[\s-]+")


class LoginForm(forms.Form):
    username = forms.CharField(
        label=_("Username"),
        max_length=150,
        widget=forms.TextInput(
            attrs={"autofocus": True, "autocomplete": "username", "autocapitalize": "none"}
        ),
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    # Offered when the account's ceiling slows logins down: a valid code gets past it.
    otp_token = forms.CharField(
        label=_("Code from your authenticator app"),
        max_length=16,
        required=False,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "pattern": r"[0-9 \-]*",
                "size": 8,
            }
        ),
    )

    def clean_otp_token(self) -> str:
        token = _CODE_SPACING.sub("", self.cleaned_data.get("otp_token", ""))
        if token and (not token.isdigit() or len(token) not in (6, 8)):
            raise forms.ValidationError(
                _("Enter the 6-digit code shown by your authenticator app.")
            )
        return token


class CodeForm(forms.Form):
    """A six-digit code from an authenticator app. Spaces and dashes that apps show for
    readability are accepted."""

    otp_token = forms.CharField(
        label=_("Code"),
        max_length=16,
        widget=forms.TextInput(
            attrs={
                "autofocus": True,
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "pattern": r"[0-9 \-]*",
                "size": 8,
            }
        ),
    )

    def clean_otp_token(self) -> str:
        token = _CODE_SPACING.sub("", self.cleaned_data["otp_token"])
        if not token.isdigit() or len(token) not in (6, 8):
            raise forms.ValidationError(
                _("Enter the 6-digit code shown by your authenticator app.")
            )
        return token


class PasswordConfirmForm(forms.Form):
    password = forms.CharField(
        label=_("Your password"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class PasswordChangeForm(forms.Form):
    old_password = forms.CharField(
        label=_("Current password"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )
    new_password1 = forms.CharField(
        label=_("New password"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    new_password2 = forms.CharField(
        label=_("New password again"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, user, *args, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)
        # Built per form, not at import, so it is in the language of the request.
        self.fields[
            "new_password1"
        ].help_text = password_validation.password_validators_help_text_html()

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        new1, new2 = cleaned.get("new_password1"), cleaned.get("new_password2")
        if new1 and new2:
            if new1 != new2:
                self.add_error("new_password2", _("The two new passwords differ."))
            elif new1 == cleaned.get("old_password"):
                self.add_error(
                    "new_password1", _("The new password must differ from the current one.")
                )
            else:
                try:
                    password_validation.validate_password(new1, self.user)
                except forms.ValidationError as exc:
                    self.add_error("new_password1", exc)
        return cleaned


class RegistrationForm(forms.Form):
    """A new account for an address that was invited (the address itself is fixed by the
    invitation and not part of the form). The mobile number is optional and accepted as people
    type it; it is stored in E.164 form."""

    first_name = forms.CharField(
        label=_("First name"),
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "given-name", "autofocus": True}),
    )
    last_name = forms.CharField(
        label=_("Last name"),
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "family-name"}),
    )
    password1 = forms.CharField(
        label=_("Password"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=_("Password again"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    mobile = forms.CharField(
        label=_("Mobile phone (optional)"),
        max_length=30,
        required=False,
        help_text=_(
            "Needed only for studies shared with an SMS code. With its country code, "
            "e.g. +32 470 12 34 56."
        ),
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )
    physician_number = forms.CharField(
        label=_("Physician number (optional)"),
        max_length=40,
        required=False,
        help_text=_("RIZIV, BIG, INSEE, HIN, UCGN, PNB..."),
    )
    language = forms.ChoiceField(label=_("Language"), choices=Language.choices)

    def __init__(self, *args, email: str, mobile_required: bool = False, **kwargs):
        self.email = email
        super().__init__(*args, **kwargs)
        if mobile_required:
            mobile = self.fields["mobile"]
            mobile.required = True
            mobile.label = _("Mobile phone")
            mobile.help_text = _(
                "Required: a study was shared with you with SMS codes, sent to this number. "
                "With its country code, e.g. +32 470 12 34 56."
            )
        # Built per form, not at import, so it is in the language of the request.
        self.fields[
            "password1"
        ].help_text = password_validation.password_validators_help_text_html()

    def clean_mobile(self) -> str:
        return normalize_mobile(self.cleaned_data["mobile"])

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2:
            if password1 != password2:
                self.add_error("password2", _("The two passwords differ."))
            else:
                # Judged against the person's own name and address, as the account will hold them.
                person = User(
                    username=self.email,
                    email=self.email,
                    first_name=cleaned.get("first_name", ""),
                    last_name=cleaned.get("last_name", ""),
                )
                try:
                    password_validation.validate_password(password1, person)
                except forms.ValidationError as exc:
                    self.add_error("password1", exc)
        return cleaned
