from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression

from notifications.encryption import InvalidToken, UnreadableText, decrypt, encrypt


# Django's fields are generic in django-stubs only: not subscriptable at run time.
class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """Text stored encrypted (``notifications.encryption``) and read back in clear: code using
    the ORM sees the text, a raw read of the table sees only Fernet tokens.

    The empty string stays empty, so that ``filter(body_text="")`` and ``update(body_text="")``
    (the eraser) keep working. Any other lookup would compare with a fresh ciphertext and match
    nothing: these columns are read, never searched. A stored token no configured key decrypts
    reads as an :class:`~notifications.encryption.UnreadableText`."""

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, UnreadableText):
            return value.ciphertext
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)

    def from_db_value(
        self, value: str | None, expression: Expression, connection: BaseDatabaseWrapper
    ) -> str | None:
        if value is None or value == "":
            return value
        try:
            return decrypt(value)
        except (InvalidToken, ValueError):
            return UnreadableText(value)
