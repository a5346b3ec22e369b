"""What the portal's option dialogs (Send Link, Share) have in common: options an organization's
policy may switch off, and a service that answers ValidationError({field: [messages]})."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError


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
