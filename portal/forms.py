"""What the portal's forms have in common: the date box, and for the option dialogs (Send Link,
Share) options an organization's policy may switch off, and a service that answers
ValidationError({field: [messages]})."""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# What a date box shows and its calendar writes back, in every language (portal/formats).
TYPED_DATE_FORMAT = "%d/%m/%Y"


class DateInput(forms.DateInput):
    """A date typed as dd/mm/yyyy, beside a button that opens the browser's calendar
    (static/js/date-input.js), which writes the date it picks back into the box in that form.
    The browser's own date box alone would order day and month as the browser's locale does
    (mm/dd/yyyy in an American one), whatever the page's language. ``min`` and ``max`` bound
    the calendar only; the form checks the date itself. Without scripts the box is a plain text
    box, whose placeholder spells the format in the page's language."""

    template_name = "portal/widgets/date_input.html"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(
            attrs={
                "placeholder": _("dd/mm/yyyy"),
                "inputmode": "numeric",
                "autocomplete": "off",
                "maxlength": "10",
                "data-date-text": "",
                **(attrs or {}),
            },
            format=TYPED_DATE_FORMAT,
        )

    def format_value(self, value: object) -> str | None:
        if isinstance(value, str):
            # A date typed in another accepted form comes back as dd/mm/yyyy; what is not a date
            # comes back as typed, so it can be corrected.
            with contextlib.suppress(ValidationError):
                value = forms.DateField().to_python(value) or value
        # An empty box renders no value, as Django's text inputs do.
        return super().format_value(value) or None

    def get_context(self, name: str, value: object, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        widget_attrs = context["widget"]["attrs"]
        bounds = {key: widget_attrs.pop(key, None) for key in ("min", "max")}
        context["widget"]["picker"] = {
            key: bound.isoformat() if isinstance(bound, date) else bound
            for key, bound in bounds.items()
        }
        return context


class DateField(forms.DateField):
    """A date of a form of ours: typed in the date box above, in any of the forms the portal
    accepts (``portal/formats``)."""

    widget = DateInput
    default_error_messages = {"invalid": _("Enter a date as dd/mm/yyyy, or pick one.")}


class PolicyOptionsForm(forms.Form):
    """Subclasses say which fields the policy offers (``allowed``: name -> offered); the
    template shows only those, so errors on the others are listed above the form."""

    @property
    def allowed(self) -> dict[str, bool]:
        raise NotImplementedError

    @property
    def hidden_errors(self) -> list[str]:
        """Errors of fields the template does not show (an option refused by policy)."""
        allowed = self.allowed
        return [
            str(message)
            for name, errors in self.errors.items()
            if name in allowed and not allowed[name]
            for message in errors
        ]

    def add_service_errors(self, exc: ValidationError) -> None:
        """Put the service's field errors on their fields (see :meth:`add_service_error`)."""
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)
            return
        for name, errors in exc.error_dict.items():
            self.add_service_error(name, errors)

    def add_service_error(self, name: str, errors: list[ValidationError]) -> None:
        """One field's errors: on the field, or above the form for a name it does not have."""
        self.add_error(name if name in self.fields else None, errors)
