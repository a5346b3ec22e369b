"""The audit chain's key: HMAC-SHA256 under ``AUDIT_KEY``, never stored in the database.

Whoever can rewrite the database can recompute a plain hash chain; a keyed chain cannot be
recomputed without the key. Each signature names the key that made it by a short key id (an
HMAC of a constant under that key: it says which key, and nothing about it), so that after a
rotation new events are signed with the new key while older ones still verify with the key kept
in ``AUDIT_KEY_FALLBACKS``.

Nothing here touches the database: the migration that sealed the unkeyed chain of earlier
versions uses it too.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from django.conf import settings

KEY_ID_LENGTH = 8


@dataclass(frozen=True)
class SigningKey:
    id: str
    secret: bytes = field(repr=False)

    def mac(self, message: bytes) -> str:
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def _key(secret: str) -> SigningKey:
    raw = secret.encode()
    key_id = hmac.new(raw, b"audit.key-id", hashlib.sha256).hexdigest()[:KEY_ID_LENGTH]
    return SigningKey(id=key_id, secret=raw)


def current_key() -> SigningKey:
    """The key new events, chain heads and checkpoints are signed with."""
    return _key(settings.AUDIT_KEY)


def verification_keys() -> dict[str, SigningKey]:
    """Every key a signature may have been made with, by key id: the current key first, then
    the fallbacks of earlier rotations."""
    keys: dict[str, SigningKey] = {}
    for secret in [settings.AUDIT_KEY, *settings.AUDIT_KEY_FALLBACKS]:
        key = _key(secret)
        keys.setdefault(key.id, key)
    return keys


# --- Chain heads ---------------------------------------------------------------------------
# A head's seal is a MAC over its chain, count and last hash, stored as "<key id>:<mac>". Without
# it, whoever deletes a chain's newest events could move the head back and hide the cut.


def _head_message(chain: int, count: int, last_hash: str) -> bytes:
    return f"audit.head:{chain}:{count}:{last_hash}".encode()


def seal_head(chain: int, count: int, last_hash: str, key: SigningKey | None = None) -> str:
    key = key or current_key()
    return f"{key.id}:{key.mac(_head_message(chain, count, last_hash))}"


def head_seal_valid(
    chain: int, count: int, last_hash: str, seal: str, keys: dict[str, SigningKey]
) -> bool:
    key_id, _, mac = seal.partition(":")
    key = keys.get(key_id)
    if key is None or not mac:
        return False
    return hmac.compare_digest(mac, key.mac(_head_message(chain, count, last_hash)))
