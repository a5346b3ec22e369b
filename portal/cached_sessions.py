"""Django's cached database sessions (``cached_db``), for installations with a shared cache
(``CACHE_URL``): every request of a logged-in browser reads its session from the cache, and the
database only when the cache has lost it; every change is written to both (the database first),
and logging out deletes both. A cache of each process's own would keep serving a session that
another process ended, so without ``CACHE_URL`` sessions are the database's alone
(``portal.sessions``).

The cache never holds a session key. A session key is a bearer credential (it is the cookie),
and a cache may be listed: each key the cache sees names the session by its digest
(``decisions.digest``) instead, whichever of Django's methods builds it. A new session's key is
drawn as ``portal.sessions`` draws it.

A logged-in request asks the cache for its session together with its user's remembered answers,
in one round trip (``portal.middleware.DecisionsAheadMiddleware``, :meth:`SessionStore.entry`):
the session read takes what was asked ahead (``decisions.taken_ahead``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDatabaseSessionStore
from django.core.cache import BaseCache, caches

from portal.decisions import digest, taken_ahead
from portal.sessions import NewKeyUnasked

_NOT_AHEAD = object()


class _SessionKeysDigested:
    """The session cache as Django's cached sessions use it, with the session key in each of
    their cache keys (the store's prefix, then the session key) replaced by its digest."""

    def __init__(self, cache: BaseCache, prefix: str) -> None:
        self._cache = cache
        self._prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{digest(key.removeprefix(self._prefix))}"

    def get(self, key: str, default: Any = None) -> Any:
        entry = self._key(key)
        ahead = taken_ahead(entry, default=_NOT_AHEAD)
        if ahead is not _NOT_AHEAD:
            return ahead
        return self._cache.get(entry, default)

    def set(self, key: str, value: Any, timeout: Any) -> None:
        self._cache.set(self._key(key), value, timeout)

    def delete(self, key: str) -> bool:
        return self._cache.delete(self._key(key))

    def __contains__(self, key: str) -> bool:
        return self._key(key) in self._cache

    async def aget(self, key: str, default: Any = None) -> Any:
        return await self._cache.aget(self._key(key), default)

    async def aset(self, key: str, value: Any, timeout: Any) -> None:
        await self._cache.aset(self._key(key), value, timeout)

    async def adelete(self, key: str) -> bool:
        return await self._cache.adelete(self._key(key))

    def __str__(self) -> str:
        return str(self._cache)


class SessionStore(NewKeyUnasked, CachedDatabaseSessionStore):
    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        cache = caches[settings.SESSION_CACHE_ALIAS]
        self._cache = _SessionKeysDigested(cache, self.cache_key_prefix)

    def entry(self) -> str | None:
        """The session's key in the cache, for asking it ahead with the remembered answers: None
        for a new session, and where sessions are kept in another cache than the answers."""
        if self.session_key is None or settings.SESSION_CACHE_ALIAS != "default":
            return None
        return self._cache._key(self.cache_key)

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            # A new session (a login, a guest link opened): create() saves it, to the database
            # and the cache. Django's cached save would then write the cache a second time.
            self.create()
            return
        super().save(must_create)
