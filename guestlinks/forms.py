"""The Send Link dialog's form and the administrator's revocation form.

The form parses what the sender typed; the rules (the organization's policy, bounds, the
acknowledgement, addresses) are enforced by ``guestlinks.services.creation.create_link``, whose
field errors come back onto this form. Every field exists whatever the policy, so that an option
the policy disables is refused with an error rather than silently dropped; the template shows
only the allowed ones (:meth:`SendLinkForm.allowed`).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts.models import Organization
from guestlinks.selectors import LinkTarget
from guestlinks.services.creation import (
    MAX_MESSAGE_LENGTH,
    MAX_PASSWORD_LENGTH,
    OPTION_POLICIES,
    LinkOptions,
    default_validity_hours,
)
from guestlinks.services.ending import MAX_REASON_LENGTH
from portal.forms import PolicyOptionsForm

# Form fields and the organization policy flag that offers each (the rule create_link applies).
POLICY_OF_FIELD = {name: flag for name, (flag, _words) in OPTION_POLICIES.items()}


def _number(attrs: dict[str, Any] | None = None) -> forms.NumberInput:
    return forms.NumberInput(attrs={"inputmode": "numeric", "class": "short", **(attrs or {})})


class SendLinkForm(PolicyOptionsForm):
    acknowledged = forms.BooleanField(
        label=_("I understand that authorization cannot be removed once the secure link is sent."),
        required=False,
        widget=forms.CheckboxInput(attrs={"aria-required": "true"}),
        help_text=_(
            "Your organization's administrator can revoke a study link. However, the recipient "
            "may receive and use the link before it is revoked."
        ),
    )
    email = forms.CharField(
        label=_("Send via email to"),
        required=False,
        max_length=254,
        widget=forms.EmailInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "name@example.org"}
        ),
    )
    require_email_confirmation = forms.BooleanField(
        label=_("Require confirmation via email"),
        required=False,
        help_text=_(
            "Two steps: the recipient first confirms this address, then receives a second "
            "email with the link."
        ),
    )
    mobile = forms.CharField(
        label=_("Mobile phone (SMS with the link)"),
        required=False,
        max_length=32,
        widget=forms.TextInput(
            attrs={"type": "tel", "autocomplete": "off", "placeholder": "+32 470 12 34 56"}
        ),
    )
    sms_code = forms.BooleanField(
        label=_("Require a code sent by SMS to this number"),
        required=False,
        help_text=_("The recipient receives a one-time code when opening the link."),
    )
    max_uses = forms.IntegerField(
        label=_("Limit number of uses to"),
        required=False,
        widget=_number({"min": 1}),
        help_text=_("Empty: no limit."),
    )
    expires_in_days = forms.IntegerField(
        label=_("days"), required=False, widget=_number({"min": 0})
    )
    expires_in_hours = forms.IntegerField(
        label=_("hours"), required=False, widget=_number({"min": 0})
    )
    login_required = forms.BooleanField(label=_("User must log in to see images"), required=False)
    password = forms.CharField(
        label=_("Require user to enter this password"),
        required=False,
        strip=False,
        max_length=MAX_PASSWORD_LENGTH,
        # Shown as typed: the sender has to pass it on to the recipient themselves.
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}
        ),
        help_text=_(
            "You must give this password to the recipient yourself: for security reasons the "
            "portal never sends it."
        ),
    )
    password_is_birth_date = forms.BooleanField(
        label=_("Password is the patient's date of birth"),
        required=False,
        help_text=_(
            "The recipient enters it as YYYYMMDD. A password typed above takes precedence."
        ),
    )
    max_password_attempts = forms.IntegerField(
        label=_("Max password attempts"),
        required=False,
        widget=_number({"min": 1}),
        help_text=_("When reached, the link expires, whatever uses are left."),
    )
    include_priors = forms.BooleanField(
        label=_("Include priors"),
        required=False,
        help_text=_("The recipient can also view this patient's earlier studies in the worklist."),
    )
    message = forms.CharField(
        label=_("Message"),
        required=False,
        max_length=MAX_MESSAGE_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Included in the email to the recipient."),
    )
    language = forms.ChoiceField(
        label=_("Language of the email and SMS"),
        required=False,
        choices=settings.LANGUAGES,
    )

    def __init__(
        self,
        *args: Any,
        organization: Organization,
        target: LinkTarget,
        language: str = "",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("initial", {}).setdefault("language", language)
        # Unique on the study page, which has forms of its own.
        kwargs.setdefault("auto_id", "send-link-%s")
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.target = target

    # --- What the template shows ---------------------------------------------------------

    @property
    def allowed(self) -> dict[str, bool]:
        """Field name -> whether the organization's policy offers it here."""
        allowed = {
            name: bool(getattr(self.organization, flag)) for name, flag in POLICY_OF_FIELD.items()
        }
        # A worklist or folder has no single date of birth.
        allowed["password_is_birth_date"] &= self.target.study is not None
        allowed["require_email_confirmation"] &= allowed["email"]
        allowed["language"] = allowed["email"] or allowed["mobile"]
        return allowed

    @property
    def default_expiry(self) -> str:
        """The validity a link gets when the sender leaves the expiry empty, in words."""
        hours = default_validity_hours(self.organization)
        if hours % 24 == 0:
            days = hours // 24
            return ngettext("%(count)s day", "%(count)s days", days) % {"count": days}
        return ngettext("%(count)s hour", "%(count)s hours", hours) % {"count": hours}

    @property
    def any_security_option(self) -> bool:
        allowed = self.allowed
        return any(
            allowed[name]
            for name in (
                "login_required",
                "password",
                "password_is_birth_date",
                "sms_code",
                "require_email_confirmation",
            )
        )

    # --- Into the service ------------------------------------------------------------------

    def options(self) -> LinkOptions:
        data = self.cleaned_data
        return LinkOptions(
            email=data["email"],
            mobile=data["mobile"],
            max_uses=data["max_uses"],
            expires_in_days=data["expires_in_days"],
            expires_in_hours=data["expires_in_hours"],
            login_required=data["login_required"],
            password=data["password"],
            password_is_birth_date=data["password_is_birth_date"],
            max_password_attempts=data["max_password_attempts"],
            require_email_confirmation=data["require_email_confirmation"],
            sms_code=data["sms_code"],
            include_priors=data["include_priors"],
            message=data["message"],
            language=data["language"] or None,
        )


class RevokeForm(forms.Form):
    """The administrator's reason, asked for before any link is revoked."""

    reason = forms.CharField(
        label=_("Reason"),
        max_length=MAX_REASON_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_(
            "Recorded in the audit trail. The link stops opening at the recipient's next "
            "request; what they have already seen cannot be taken back."
        ),
    )
