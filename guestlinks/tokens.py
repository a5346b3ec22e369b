"""Link tokens that a database dump cannot open, yet authorized users can see again.

A link row stores a random salt and the keyed digest of its token, never the token. The token
is HMAC(SECRET_KEY, salt): whoever holds both the row and the key (the running portal) can show
the link again, as the manuals ask; a dump alone opens nothing. Lookups compute the digest of
the presented token under SECRET_KEY and each of SECRET_KEY_FALLBACKS, so rotating the key does
not break links already sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from django.conf import settings
from django.urls import reverse

if TYPE_CHECKING:
    from guestlinks.models import GuestLink

# 16 bytes of salt; the token itself carries 256 bits.
SALT_BYTES = 16


def new_salt() -> str:
    return secrets.token_hex(SALT_BYTES)


def _keys() -> list[str]:
    return [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]


def _token(salt: str, key: str) -> str:
    raw = hmac.new(key.encode(), f"guestlink-token:{salt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _digest(token: str, key: str) -> str:
    return hmac.new(key.encode(), f"guestlink-lookup:{token}".encode(), hashlib.sha256).hexdigest()


def token_for(salt: str) -> str:
    """The token of a new link (made under the current key)."""
    return _token(salt, settings.SECRET_KEY)


def digest_for(token: str) -> str:
    return _digest(token, settings.SECRET_KEY)


def candidate_digests(token: str) -> list[str]:
    """Digests to look a presented token up by, under the current and previous keys."""
    return [_digest(token, key) for key in _keys()]


def recover_token(salt: str, stored_digest: str) -> str | None:
    """The token of an existing link, under whichever key made it; None if no key still held
    can (the link then cannot be shown again, though it still opens if a fallback key made it)."""
    for key in _keys():
        token = _token(salt, key)
        if hmac.compare_digest(_digest(token, key), stored_digest):
            return token
    return None


def link_url(token: str) -> str:
    """The absolute address a recipient opens a link with."""
    return f"{settings.SITE_URL}{reverse('guest:link', args=[token])}"


def recovered_link_url(link: GuestLink) -> str | None:
    """An existing link's address, its token made again from the stored salt (to show the link
    again, or send it after a confirmation); None if no key still held made it."""
    token = recover_token(link.token_salt, link.token_digest)
    return link_url(token) if token is not None else None
