"""Mobile numbers as every app stores them: E.164, whatever way they were typed."""

import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


def normalize_mobile(value: str, default_region: str | None = "BE") -> str:
    """Return the number in E.164 form, or raise ValidationError saying what is wrong.

    A number written with a leading + is read as international; one without is read in the
    default region, which is how a Belgian, Dutch or French clinician types a local number.
    """
    text = (value or "").strip()
    if not text:
        return ""
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            _(
                "“%(value)s” is not a phone number. "
                "Write it with its country code, e.g. +32 470 12 34 56."
            ),
            code="invalid_phone",
            params={"value": text},
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(
            _("“%(value)s” is not a valid phone number."),
            code="invalid_phone",
            params={"value": text},
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_e164(value: str) -> None:
    if value and normalize_mobile(value) != value:
        raise ValidationError(_("Store phone numbers in E.164 form, e.g. +32470123456."))
