"""Keyed digests for secrets the portal hands out: API tokens, guest-link, invitation and viewer
tokens, and one-time codes.

Only the HMAC of a secret is stored. Lookups compute the digest under the current SECRET_KEY and
each of SECRET_KEY_FALLBACKS, so rotating the key does not invalidate tokens already issued.
"""

import hashlib
import hmac

from django.conf import settings


def secret_digest(secret: str, *, purpose: str, key: str | None = None) -> str:
    key_bytes = (key or settings.SECRET_KEY).encode()
    message = f"{purpose}:{secret}".encode()
    return hmac.new(key_bytes, message, hashlib.sha256).hexdigest()


def candidate_digests(secret: str, *, purpose: str) -> list[str]:
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return [secret_digest(secret, purpose=purpose, key=key) for key in keys]
