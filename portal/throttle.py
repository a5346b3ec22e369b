"""The throttle counter: how many attempts a key (an account, a client address, a link) made in a
window, kept in Django's cache. Login, password and two-factor guesses (``accounts.services``)
and guest-link probes and guesses (``guestlinks.services.opening``) all count here.

An attempt is counted *before* the secret is checked, with the cache's atomic ``incr``: each of
many concurrent attempts gets its own number, so no more than the limit ever reach the check,
where a check made before counting would let all of them by. An attempt that turns out not to be
a failure is handed back (:func:`hand_back`). A window opens with the first attempt after the
counter was last at zero and lasts ``window`` seconds; later attempts do not lengthen it. Past
its hard limit a counter refuses until its window ends (:func:`reserve`); past a soft allowance
it spaces attempts by a doubling delay instead (:func:`reserve_spaced`).

Django's cache must be shared by every web process (Redis through ``CACHE_URL``) for a limit to
hold across them (deployment check portal.W001).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping

from django.core.cache import cache


def _until_key(key: str) -> str:
    return f"{key}:until"


def _over_key(key: str) -> str:
    return f"{key}:over"


def _count(key: str, window: int) -> int:
    """Add one to ``key``'s counter; its new value."""
    cache.add(key, 0, timeout=window)
    try:
        count = cache.incr(key)
    except ValueError:
        # The window ended between add() and incr().
        cache.set(key, 1, timeout=window)
        count = 1
    if count == 1:
        # The first attempt since the counter was last at zero opens a new window.
        cache.touch(key, window)
        cache.set(_until_key(key), int(time.time()) + window, timeout=window)
    return count


def reserve(limits: Mapping[str, int], *, window: int) -> int | None:
    """Count one attempt against every key of ``limits`` (key -> its limit). None when every
    count is within its limit: the attempt may go ahead. Otherwise the attempt is handed back
    everywhere (a refused attempt is not a failure: it neither lengthens a lock nor counts
    elsewhere) and the answer is when, in Unix seconds, the last of the exceeded windows ends."""
    over = [key for key, limit in limits.items() if _count(key, window) > limit]
    if not over:
        return None
    hand_back(*limits)
    untils = cache.get_many([_until_key(key) for key in over]).values()
    return max(untils, default=int(time.time()) + window)


def reserve_spaced(key: str, *, free: int, delay: int, window: int) -> int | None:
    """Count one attempt against ``key``, whose first ``free`` attempts in a window go ahead at
    once; beyond them attempts are spaced by a delay that doubles. The counter's first attempt
    over ``free`` fixes a start ``t0``; the n-th attempt over ``free`` may go ahead from
    ``t0 + delay * (2**n - 1)``: ``delay``, then ``2 * delay`` later, then ``4 * delay`` later...

    As in :func:`reserve`, the count comes first, so each of many concurrent attempts holds its
    own n and at most one goes ahead per slot; a refused attempt is handed back. None when the
    attempt may go ahead, otherwise when (Unix seconds) its slot comes, or the window ends if
    that is sooner (the counter then starts again from zero)."""
    count = _count(key, window)
    if count <= free:
        return None
    now = int(time.time())
    window_end: int = cache.get(_until_key(key)) or now + window
    # The first attempt over the allowance starts the schedule; concurrent ones find it set.
    cache.add(_over_key(key), now, timeout=max(1, window_end - now))
    start: int = cache.get(_over_key(key)) or now
    slot: int = start + delay * (2 ** min(count - free, 32) - 1)
    if now >= slot:
        return None
    hand_back(key)
    return min(slot, window_end)


def hand_back(*keys: str) -> None:
    """Give back an attempt that was not a failed guess (a right password, an open link)."""
    for key in keys:
        # ValueError: the window has ended meanwhile; nothing to hand back.
        with contextlib.suppress(ValueError):
            cache.decr(key)


def clear(*keys: str) -> None:
    """Forget these counters and their windows."""
    cache.delete_many([name for key in keys for name in (key, _until_key(key), _over_key(key))])


def seconds_until(until: float) -> int:
    """Whole seconds from now until ``until`` (Unix seconds), at least one: a Retry-After."""
    return max(1, int(until - time.time()))
