"""Message texts at rest: encrypted with a key that never enters the database.

A message's subject and bodies carry what it announces: a guest link with its token, a
confirmation or invitation link, a one-time code, a patient's initials. The row must keep them
until a worker has sent it (the eraser blanks sent bodies after
``NOTIFICATIONS_BODY_RETENTION_DAYS``), and for that time a copy of the database (a backup, a
replica, a dump handed to support) would otherwise open every link sent. So they are stored as
Fernet tokens (AES-128-CBC with an HMAC-SHA256): unreadable without the key, and a text rewritten
in the database without the key fails to decrypt instead of going out in the portal's name.

The key is derived (HKDF-SHA256, with a label of its own) from ``OUTBOX_KEY``, or from
``SECRET_KEY`` when that is unset, so the embedded set-up needs no configuration. Texts are
encrypted with the first of these and decrypted with any of them:

1. ``OUTBOX_KEY`` (or ``SECRET_KEY``);
2. ``OUTBOX_KEY_FALLBACKS``, the previous values after a rotation;
3. ``SECRET_KEY``, once ``OUTBOX_KEY`` is set (for what was queued before it was);
4. ``SECRET_KEY_FALLBACKS``.

Keep a retired key in the fallbacks until every message it encrypted has been sent and erased.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

PURPOSE = b"study-portal notifications.Message texts v1"
UNREADABLE_NOTICE = "[Encrypted with a key the portal no longer has: see OUTBOX_KEY_FALLBACKS]"

__all__ = ["InvalidToken", "UnreadableText", "decrypt", "derive_key", "encrypt", "readable"]


class UnreadableText(str):
    """What a stored text reads as when no configured key decrypts it: a notice, keeping the
    stored token (``ciphertext``) so that saving the row again writes it back unchanged."""

    ciphertext: str

    def __new__(cls, ciphertext: str) -> UnreadableText:
        text = super().__new__(cls, UNREADABLE_NOTICE)
        text.ciphertext = ciphertext
        return text


def derive_key(secret: str) -> bytes:
    """The Fernet key for ``secret``: a key of its own, useless for anything else signed with
    the same secret."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(
        secret.encode("utf-8")
    )
    return base64.urlsafe_b64encode(raw)


def _secrets() -> tuple[str, ...]:
    outbox_key = getattr(settings, "OUTBOX_KEY", "") or ""
    candidates = [
        outbox_key or settings.SECRET_KEY,
        *getattr(settings, "OUTBOX_KEY_FALLBACKS", ()),
        settings.SECRET_KEY,
        *getattr(settings, "SECRET_KEY_FALLBACKS", ()),
    ]
    return tuple(dict.fromkeys(secret for secret in candidates if secret))


@lru_cache(maxsize=8)
def _fernet(secrets: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(derive_key(secret)) for secret in secrets])


def encrypt(text: str) -> str:
    return _fernet(_secrets()).encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """The text of ``token``; InvalidToken if no configured key made it (or it was altered)."""
    return _fernet(_secrets()).decrypt(token.encode("ascii")).decode("utf-8")


def readable(text: str) -> bool:
    """False for a text that could not be decrypted (an :class:`UnreadableText`)."""
    return not isinstance(text, UnreadableText)
