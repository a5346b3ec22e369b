"""Remembered decisions: who an API token is, what a principal may reach of a study. A viewer
asks for hundreds of frames in a minute; each would otherwise read the token, the memberships,
the worklists and the entries again. Remembering the answer lets all but the first request of a
viewing run without SQL, and nothing of the access rules changes: the answer is the authority's
(``studies.access``), only computed less often.

Every remembered answer carries the *generation* current when it was computed. Any change to
what an answer depends on (a token, a user, a membership, a role, an entry, a share, a guest
link, a study, a two-factor device: the models registered with :func:`watch`, and the bulk
updates that revoke, through :func:`changed`) moves the generation on once its transaction has
committed, and from then on no answer of an older generation is used: removing a share or
revoking a link stops the frames it opened at the very next request. Answers also end after
``ACCESS_DECISION_SECONDS`` and never outlive the access they describe (``valid_until``).

Answers about accounts alone (who an API token is, a user's memberships, whether they have a
two-factor device, which worklists they see) carry the accounts' own generation too
(``scope=ACCOUNTS``), which only the accounts' models and the worklists move on
(``watch(..., scope=ACCOUNTS)``), besides everything's: a study arriving (ingestion moves
everything's generation on, every few seconds in a busy hospital) leaves them standing, while a
membership ended still ends every answer.

Answers about what is stored, the same for everybody (which file an instance is, its frame
count: ``studies.frame_sources``), carry the stored objects' generation alone
(``scope=STORED``), which only their deletion moves on (``watch(..., saves=False,
scope=STORED)``): they never say who may see anything, and nothing but a deletion changes them.

The generations live in Django's default cache, which every web process must share for this to
hold (``CACHE_URL``, Redis): ``ACCESS_DECISION_SECONDS`` defaults to 0, nothing remembered,
without it.

Within one request (:func:`kept_for_request`, which ``portal.middleware.DecisionsMiddleware``
opens around each one) an answer is asked of the cache once: a directory page asks for the
user's memberships twenty times. Answers too particular to be shared (a page's access to its
studies) are kept for the request alone (:func:`once_per_request`). The request's copy is
dropped by :func:`changed`, so a request that changes access and then reads it sees the
change.

A logged-in user's request asks the cache first, in one round trip, for the answers their last
request asked for and for the generations (:func:`ask_as_last_time`). A page remembered whole
(``near=True``: the directory at one search) is seldom the one the last request asked for, so
each process keeps its own copy of the pages it answered, as the cache holds them: a request
that has read the generations ahead takes a page from there when it carries a current one, and
asks the cache only for a page this process has not answered, or not since it changed. The
ask-ahead leaves out the pages this process keeps: the last page reloaded is answered from the
process's copy, not carried over from the cache a second time (a directory page is some 18 kB,
ten times the rest of what a request asks ahead).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db import transaction
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save

_GENERATION_KEY = "decisions:generation"
# The scopes of answers with a generation of their own (see the module's docstring).
ACCOUNTS = "accounts"
STORED = "stored"
_SCOPES = (ACCOUNTS, STORED)
_MISSING = object()
# The answers this request has already had (None outside a request): of every kind, as the
# cache holds them.
_request_answers: ContextVar[dict[str, Any] | None] = ContextVar(
    "decisions_request_answers", default=None
)
# The remembered answers this request asked for (None outside a request), in the order asked:
# what its user's next request asks ahead (:func:`note_asked`). Answers asked ahead and never
# asked for are not among them, or every request would go on asking ahead for them.
_request_asked: ContextVar[dict[str, None] | None] = ContextVar(
    "decisions_request_asked", default=None
)

# The generations this request's ask-ahead found current (:func:`prefetch`; None before it, and
# again after a change in the request): what a page kept in this process must carry to be used.
_request_generations: ContextVar[set[str] | None] = ContextVar(
    "decisions_request_generations", default=None
)

# Plain cache entries asked for ahead with the answers (a session, :func:`taken_ahead`), by their
# key in the default cache, for the request to take once (None outside a request).
_request_taken_ahead: ContextVar[dict[str, Any] | None] = ContextVar(
    "decisions_request_taken_ahead", default=None
)

T = TypeVar("T")
V = TypeVar("V")


def enabled() -> bool:
    return settings.ACCESS_DECISION_SECONDS > 0


def _cache() -> BaseCache:
    return caches["default"]


def _generation_key(scope: str | None) -> str:
    return _GENERATION_KEY if scope is None else f"{_GENERATION_KEY}:{scope}"


def _carried(scope: str | None, generation: str) -> str:
    """What an answer of ``scope`` carries of its generation: tagged with the scope, so that an
    answer of one scope never matches another's generation."""
    return generation if scope is None else f"{scope}:{generation}"


def current_generation(scope: str | None = None) -> str:
    """The generation now (of everything, or of ``scope``'s answers). A cache that lost it
    (restarted, evicted) starts a new one, which no remembered answer can carry."""
    cache = _cache()
    key = _generation_key(scope)
    generation = cache.get(key)
    if generation is None:
        cache.add(key, secrets.token_hex(8), timeout=None)
        generation = cache.get(key)
    return generation


def _advance(scope: str | None = None) -> None:
    # A fresh random value rather than a count: nothing stored under an earlier one can match,
    # whichever of two concurrent changes writes last.
    scopes: list[str | None] = [None] if scope is None else [None, scope]
    _cache().set_many(
        {_generation_key(each): secrets.token_hex(8) for each in scopes}, timeout=None
    )


def changed(*, scope: str | None = None) -> None:
    """Something a remembered answer may depend on changed (with ``scope``: something that
    answers of that scope depend on, too): forget every answer now, and again once the current
    transaction commits. The second matters: a request that read the old rows while the change
    was being made carries the generation of the first, so its answer is never used either."""
    _advance(scope)
    _forget_request_answers()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _advance(scope), robust=True)


def everything_changed() -> None:
    """Every table was emptied (``manage.py flush``): no remembered answer of any scope holds,
    not even those that only a deletion ends, since emptying a table deletes without signals."""
    for scope in _SCOPES:
        changed(scope=scope)


def _forget_request_answers() -> None:
    kept = _request_answers.get()
    if kept:
        kept.clear()
    # The generations read ahead are no longer current: pages are asked of the cache again.
    _request_generations.set(None)


@contextlib.contextmanager
def kept_for_request() -> Iterator[None]:
    """Within this block each remembered answer is asked of the cache once."""
    token = _request_answers.set({})
    asked = _request_asked.set({})
    ahead = _request_taken_ahead.set({})
    generations = _request_generations.set(None)
    try:
        yield
    finally:
        _request_generations.reset(generations)
        _request_taken_ahead.reset(ahead)
        _request_asked.reset(asked)
        _request_answers.reset(token)


# Which scope's answers (``ACCOUNTS``, or None: none in particular) a change to each watched
# model or relation ends, besides everyone's.
_watched_scopes: dict[object, str | None] = {}


def _on_change(sender: object, **kwargs: object) -> None:
    changed(scope=_watched_scopes.get(sender))


def _on_m2m_change(sender: object, action: str, **kwargs: object) -> None:
    if action in {"post_add", "post_remove", "post_clear"}:
        changed(scope=_watched_scopes.get(sender))


def watch(*models: type[Model], saves: bool = True, scope: str | None = None) -> None:
    """Forget remembered answers (with ``scope``, that scope's too) whenever a row of these
    models is deleted and, with ``saves``, saved. Called from the apps' ``ready()``; a model
    whose rows never change what an answer says once written (an instance) is watched for
    deletion only."""
    for model in models:
        _watched_scopes[model] = scope
        if saves:
            post_save.connect(_on_change, sender=model, dispatch_uid=f"decisions-save-{model}")
        post_delete.connect(_on_change, sender=model, dispatch_uid=f"decisions-delete-{model}")


def watch_relation(through: type[Model], *, scope: str | None = None) -> None:
    """Forget remembered answers (with ``scope``, that scope's too) when a many-to-many
    relation (``Model.field.through``) changes."""
    _watched_scopes[through] = scope
    m2m_changed.connect(_on_m2m_change, sender=through, dispatch_uid=f"decisions-m2m-{through}")


def digest(*parts: object) -> str:
    """A cache-key fragment for these parts that holds none of them (a token, a session key and
    a UID stay out of a cache that may be listed)."""
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()[:40]


def remember(
    key: str,
    compute: Callable[[], tuple[T, datetime | None]],
    *,
    ttl: int | None = None,
    scope: str | None = None,
    together: str | None = None,
    near: bool = False,
) -> T:
    """The answer remembered under ``key``, or ``compute()``'s, remembered. ``compute`` returns
    the answer and when it stops being true (None: not by itself); an answer that is None (no
    access) is remembered too. An answer that depends on ``scope``'s models alone (``ACCOUNTS``)
    says so, and outlives changes to anything else. With ``together``, of the requests that find
    no answer at the same moment one computes it and the others wait for it
    (:func:`remember_with_neighbours`). A page remembered whole says ``near``: this process
    keeps a copy of its own too (see the module's docstring)."""

    def compute_alone() -> tuple[dict[str, T], datetime | None]:
        answer, until = compute()
        return {key: answer}, until

    return remember_with_neighbours(
        key, compute_alone, ttl=ttl, scope=scope, together=together, near=near
    )


def remember_when_committed(answers: dict[str, Any], *, scope: str | None = None) -> None:
    """Remember ``answers`` (by key) once the current transaction commits, as if computed now:
    they carry the generation current now, so that a change made before they are written (a
    deletion of what they describe) still ends them. For answers known as the rows they describe
    are written (the facts of an instance being stored)."""
    seconds = settings.ACCESS_DECISION_SECONDS
    if seconds <= 0 or not answers:
        return
    generation = _carried(scope, current_generation(scope))
    valid_until = time.time() + seconds
    transaction.on_commit(lambda: _store(answers, generation, valid_until, seconds), robust=True)


def _store(answers: dict[str, Any], generation: str, valid_until: float, seconds: int) -> None:
    """Write remembered answers as :func:`_holds` reads them, in one round trip."""
    _cache().set_many(
        {f"decisions:{key}": (generation, valid_until, answer) for key, answer in answers.items()},
        timeout=max(1, int(seconds)),
    )


def remember_with_neighbours(
    key: str,
    compute: Callable[[], tuple[dict[str, T], datetime | None]],
    *,
    ttl: int | None = None,
    together: str | None = None,
    scope: str | None = None,
    near: bool = False,
) -> T:
    """As :func:`remember`, for a question asked with many like it (each frame of a series):
    ``compute`` answers ``key`` and its neighbours' keys at once, with when they all stop being
    true, and every answer is remembered in one write, so the neighbours' requests find theirs.
    ``compute``'s answers must hold ``key``.

    ``together`` names what ``compute`` decides for all of them (a principal's series): of the
    requests that find no answer at the same moment (a viewer asks for a series' first frames
    four at a time), one computes and the others wait for its answers (``_wait_for``) rather
    than each computing the same ones."""
    seconds = settings.ACCESS_DECISION_SECONDS if ttl is None else ttl
    if seconds <= 0:
        return compute()[0][key]
    asked = _request_asked.get()
    if asked is not None:
        asked[key] = None
    kept = _request_answers.get()
    if kept is not None and key in kept:
        return kept[key]
    answer = _remembered(key, compute, seconds, together, scope, near)
    if kept is not None:
        kept[key] = answer
    return answer


def once_per_request(key: str, compute: Callable[[], T]) -> T:
    """``compute()``'s answer, computed once within a request (:func:`kept_for_request`) and
    forgotten with the request's other answers when something changes (:func:`changed`); outside
    a request, computed each time. For answers a page asks several times (a page's access to its
    studies, asked by each of its menu items) that are too particular to one page to be worth
    keeping in the shared cache."""
    kept = _request_answers.get()
    if kept is None:
        return compute()
    key = f"request:{key}"
    if key in kept:
        answer: T = kept[key]
        return answer
    answer = compute()
    kept[key] = answer
    return answer


def asked_in_request() -> list[str]:
    """The keys of the remembered answers this request has asked for so far (none outside a
    request), for :func:`note_asked`."""
    asked = _request_asked.get()
    return list(asked) if asked else []


class _KeptInProcess(Generic[V]):
    """What this process keeps by key, at most ``limit`` entries at once: when full, all are
    forgotten together (cheaper than knowing which is oldest, and an entry lost costs one round
    trip to the cache). Guesses from a principal's, token's or session's last request decide
    only what is asked of the cache ahead, never an answer; pages kept answer only with a
    generation the request read. Every one is cleared by :func:`forget_asked`."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._by_key: dict[str, V] = {}
        _all_kept.append(self)

    def note(self, key: str, value: V) -> None:
        if len(self._by_key) >= self.limit:
            self._by_key.clear()
        self._by_key[key] = value

    def get(self, key: str) -> V | None:
        return self._by_key.get(key)

    def drop(self, key: str) -> None:
        self._by_key.pop(key, None)

    def clear(self) -> None:
        self._by_key.clear()


_all_kept: list[_KeptInProcess[Any]] = []

# By whom ("user:<pk>"): the keys their last request in this process asked, which their next
# request asks for in one round trip (:func:`ask_as_last_time`). An answer prefetched under a
# key answers only a request that asks the same key, and every key about what someone may reach
# names them.
_asked_last: _KeptInProcess[tuple[str, ...]] = _KeptInProcess()


def note_asked(principal: str, keys: list[str]) -> None:
    """Remember which answers ``principal``'s request asked for, for their next request. Asking
    ahead for one answer saves nothing, and costs a round trip when the next request asks
    another (a frame's decision is about its own instance): only two or more are remembered."""
    if len(keys) < 2:
        _asked_last.drop(principal)
        return
    _asked_last.note(principal, tuple(keys))


def forget_asked() -> None:
    """Forget every guess: what everyone's last request asked, and whom every token and session
    stood for (the cache they were asked of is gone)."""
    for kept in _all_kept:
        kept.clear()


def ask_as_last_time(principal: str, *entries: str) -> None:
    """Ask the cache in one round trip for every answer ``principal``'s last request asked for
    (:func:`prefetch`), and for the plain ``entries`` (the session): a user going from page to
    page asks for the same memberships, worklists and tree each time, and a round trip each
    costs more than asking for one too many."""
    keys = _asked_last.get(principal) or ()
    if keys or entries:
        prefetch(*keys, entries=entries)


# By a session's entry in the cache (its key names the session by a digest, never by its key):
# whom its last request in this process was logged in as, so that its next request asks for the
# session and that user's answers in one round trip. Should the session name someone else now,
# what was asked ahead for the guess answers nothing.
_session_stood_for: _KeptInProcess[str] = _KeptInProcess()


def note_session_stood_for(entry: str, principal: str) -> None:
    _session_stood_for.note(entry, principal)


def session_stood_for(entry: str) -> str | None:
    return _session_stood_for.get(entry)


def taken_ahead(entry: str, default: Any = None) -> Any:
    """The plain cache entry asked for ahead in this request (:func:`prefetch`), once; else
    ``default``: it was not asked ahead, not found, or taken already (a session read again after
    a change is read from the cache again)."""
    ahead = _request_taken_ahead.get()
    return default if ahead is None else ahead.pop(entry, default)


@dataclass(frozen=True)
class StoodFor:
    """Whom a token's last request in this process stood for (a principal, as remembered
    decisions name it), and the token's own other decisions that request asked (whether a
    viewer token's principal still reaches its studies)."""

    principal: str
    own_keys: tuple[str, ...] = ()


# By a token's decision key (the key its verdict is remembered under): a token's next request
# asks the cache for the verdict, the token's other decisions and what its view will ask for the
# principal in one round trip (:func:`ask_ahead_for_token`). Should the token stand for someone
# else now, what was asked ahead is another principal's and answers nothing.
_stood_for: _KeptInProcess[StoodFor] = _KeptInProcess()


def note_stood_for(token_key: str, principal: str, *own_keys: str) -> None:
    """Remember whom the token's request stood for, for its next request."""
    _stood_for.note(token_key, StoodFor(principal, own_keys))


def stood_for(token_key: str) -> StoodFor | None:
    return _stood_for.get(token_key)


def ask_ahead_for_token(token_key: str, ahead: Callable[[str], Iterable[str]]) -> None:
    """Before the token is authenticated, ask the cache in one round trip (:func:`prefetch`)
    for its verdict, its own other decisions and ``ahead(principal)``: the decisions the view
    will ask for the principal the token stood for last time. Nothing when this process has not
    seen the token (its verdict alone is asked as usual)."""
    before = _stood_for.get(token_key)
    if before is not None:
        prefetch(token_key, *before.own_keys, *ahead(before.principal))


def prefetch(*keys: str, entries: Iterable[str] = ()) -> None:
    """Ask the cache in one round trip for the answers to questions this request is about to
    ask (a viewer's frame: who its token is, and whether its principal reaches the instance),
    rather than in one round trip each. The answers found still true are kept for the request
    and answer those questions there; any other is asked and computed as usual. A page this
    process keeps (``near``) is not asked: its copy answers if it carries a generation read
    here, and the cache is asked for it otherwise. The plain ``entries`` found (keys of the
    default cache) are kept for the request to take once (:func:`taken_ahead`). Outside a
    request, nothing is kept, so nothing is asked."""
    kept = _request_answers.get()
    ahead = _request_taken_ahead.get()
    if kept is None or ahead is None or not enabled():
        return
    wanted = [key for key in keys if key not in kept and _near_answers.get(key) is None]
    entries = list(entries)
    if not wanted and not entries:
        return
    generation_keys = {scope: _generation_key(scope) for scope in (None, *_SCOPES)}
    found = _cache().get_many(
        [*generation_keys.values(), *(f"decisions:{key}" for key in wanted), *entries]
    )
    for entry in entries:
        if entry in found:
            ahead[entry] = found[entry]
    # Whatever its scope, an answer carrying a generation current now holds.
    current = {
        _carried(scope, found[key]) for scope, key in generation_keys.items() if key in found
    }
    _request_generations.set(current)
    now = time.time()
    for key in wanted:
        stored = found.get(f"decisions:{key}", _MISSING)
        if stored is not _MISSING and _holds(stored, current, now):
            kept[key] = stored[2]


def _holds(stored: tuple[str, float, Any], current: set[str], now: float) -> bool:
    """Whether a remembered (generation carried, valid until, answer) is still the answer."""
    carried, valid_until, _answer = stored
    return bool(carried in current and now < valid_until)


def _remembered(
    key: str,
    compute: Callable[[], tuple[dict[str, T], datetime | None]],
    seconds: int,
    together: str | None = None,
    scope: str | None = None,
    near: bool = False,
) -> T:
    if near:
        nearby = _near_answer(key)
        if nearby is not _MISSING:
            return nearby
    cache = _cache()
    full_key = f"decisions:{key}"
    generation_key = _generation_key(scope)
    # One round trip to the cache for both.
    found = cache.get_many([generation_key, full_key])
    generation = _carried(scope, found.get(generation_key) or current_generation(scope))
    stored = found.get(full_key, _MISSING)
    now = time.time()
    if stored is not _MISSING and _holds(stored, {generation}, now):
        if near:
            _near_answers.note(key, stored)
        answer: T = stored[2]
        return answer
    computing = None
    if together is not None:
        computing = f"decisions:computing:{together}"
        # Of concurrent requests, exactly one adds the mark and computes.
        if not cache.add(computing, True, timeout=_COMPUTING_SECONDS):
            waited: T = _wait_for(full_key, computing, scope)
            if waited is not _MISSING:
                return waited
            computing = None  # the other request is done without this answer: compute it
    try:
        answers, until = compute()
        valid_until = now + seconds
        if until is not None:
            valid_until = min(valid_until, until.timestamp())
        # An answer that ends by the time it is known (a refusal says "now") is not kept.
        if valid_until > time.time():
            _store(answers, generation, valid_until, seconds)
            if near:
                _near_answers.note(key, (generation, valid_until, answers[key]))
    finally:
        if computing is not None:
            cache.delete(computing)
    return answers[key]


# The pages (answers remembered with ``near=True``) this process answered, by key, as the cache
# holds them: (generation carried, valid until, page).
_near_answers: _KeptInProcess[tuple[str, float, Any]] = _KeptInProcess(limit=64)


def _near_answer(key: str) -> Any:
    """The page this process keeps under ``key``, if it carries a generation this request's
    ask-ahead found current and has not ended; else ``_MISSING``."""
    generations = _request_generations.get()
    stored = _near_answers.get(key)
    if generations is None or stored is None or not _holds(stored, generations, time.time()):
        return _MISSING
    return stored[2]


# How long the request computing answers for others (``together``) holds its mark at most, and
# how long the others wait for them: deciding a 200-slice series takes some 20 ms in one process.
_COMPUTING_SECONDS = 2
_WAIT_SECONDS = 0.5
_WAIT_STEP_SECONDS = 0.005


def _wait_for(full_key: str, computing: str, scope: str | None) -> Any:
    """The answer another request is computing, once it is remembered (and of the generation
    current then); ``_MISSING`` when that request is done (or gone) without it: a refusal is not
    remembered, and a series longer than its neighbours holds instances it did not decide."""
    cache = _cache()
    deadline = time.monotonic() + _WAIT_SECONDS
    generation_key = _generation_key(scope)
    while time.monotonic() < deadline:
        time.sleep(_WAIT_STEP_SECONDS)
        found = cache.get_many([generation_key, full_key, computing])
        stored = found.get(full_key, _MISSING)
        generation = found.get(generation_key)
        current = {_carried(scope, generation)} if generation else set()
        if stored is not _MISSING and _holds(stored, current, time.time()):
            return stored[2]
        if computing not in found:
            return _MISSING
    return _MISSING
