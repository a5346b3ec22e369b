"""Field errors a service collects over a whole request before refusing it, so that the sender
fixes every one in one pass (the Send Link and Share services)."""

from __future__ import annotations

from django.core.exceptions import ValidationError


class FieldErrors:
    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.by_field.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        """ValidationError({field: [messages]}) if anything was added."""
        if self.by_field:
            raise ValidationError(self.by_field)
