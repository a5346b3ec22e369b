"""The recipient's form on the link page: only the fields the link's gates need. It checks what
was typed; whether it is right is decided in ``guestlinks.services.opening``, behind the
throttle."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from guestlinks.services.opening import LinkPage
from notifications.codes import is_code_shaped, normalize_code


class OpenLinkForm(forms.Form):
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "autocapitalize": "none"}),
    )
    code = forms.CharField(
        label=_("Code from the SMS"),
        max_length=16,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "pattern": r"[0-9 \-]*",
                "size": 8,
            }
        ),
    )

    def __init__(self, *args: Any, page: LinkPage, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not page.password_required:
            del self.fields["password"]
        elif page.birth_date_password:
            self.fields["password"].label = _("Patient's date of birth")
            self.fields["password"].help_text = _("As year, month and day: YYYYMMDD.")
            self.fields["password"].widget.attrs["inputmode"] = "numeric"
            self.fields["password"].error_messages["required"] = _("Enter the date of birth.")
        else:
            self.fields["password"].error_messages["required"] = _("Enter the password.")
        if not page.code_required:
            del self.fields["code"]
        else:
            self.fields["code"].help_text = _("Six digits. Select Send code if you have none.")
            self.fields["code"].error_messages["required"] = _(
                "Enter the code we sent you by SMS. No code yet? Select Send code."
            )

    def clean_code(self) -> str:
        code = normalize_code(self.cleaned_data["code"])
        if not is_code_shaped(code):
            raise forms.ValidationError(_("Enter the six digits of the code we sent by SMS."))
        return code
