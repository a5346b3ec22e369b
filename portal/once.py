"""Once per period, across every web process: the first caller in a period acts (writes an
audit event, stamps a token's last use) and the others do not.

The shared cache decides (``add`` is atomic, so of concurrent first callers exactly one wins).
A process then remembers the answer for itself, so that a viewer scrolling through a series
does not ask the shared cache again at every frame: until the period it started ends, or for
a few seconds when another process started it (that period's end is unknown here, and a key
the cache lost must not silence the next period for long). Times are the cache's own kind
(Unix seconds), so that both agree on when a period ends.
"""

import time

from django.core.cache import caches

# How long a process trusts "another process did it" before asking the cache again.
RECHECK_SECONDS = 5
# Beyond this many remembered keys a process forgets the expired ones.
_PRUNE_AT = 10_000

_known_until: dict[str, float] = {}


def first_in_period(key: str, seconds: int) -> bool:
    """Whether this caller is the first for ``key`` in the current period of ``seconds``."""
    now = time.time()
    until = _known_until.get(key)
    if until is not None and now < until:
        return False
    if len(_known_until) >= _PRUNE_AT:
        forget(expired_before=now)
    if caches["default"].add(key, True, timeout=seconds):
        _known_until[key] = now + seconds
        return True
    _known_until[key] = now + min(RECHECK_SECONDS, seconds)
    return False


def forget(*, expired_before: float | None = None) -> None:
    """Drop what this process remembers (all of it, or what ended before a time (Unix seconds))."""
    if expired_before is None:
        _known_until.clear()
        return
    for key in [key for key, until in _known_until.items() if until <= expired_before]:
        del _known_until[key]
