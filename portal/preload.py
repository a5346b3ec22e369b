"""Loading in the web process's master what each request would otherwise load for itself; and
leaving what a long-running process loaded out of Python's collections.

gunicorn loads the application once in its master (``preload_app``) and forks the workers from
it, so what the master loads is loaded once and its memory pages are shared by every worker.
Some libraries are only imported by the first request that uses them, in each worker anew:
the cache's client library (``redis``, about 100 ms), Pillow's image formats, the message and
session storages; and Django builds on first use the URLconf, with every view module it
imports, the table ``reverse`` looks names up in (for each language) and each language's
translations. A worker's first STOW-RS request of ten slices took 165 ms against 40 to 55 ms
for the next ones (in one process, on PostgreSQL), and 90 ms with those built before it; a
worker gunicorn starts again (after a crash or a timeout) paid it again.
:func:`load_what_requests_use` does all of it before the fork. It loads only: no connection is
opened, as each worker must open its own.

A process that serves for as long as it runs (a gunicorn worker, the DICOM listener, a Celery
worker's process) keeps what it loaded (Django, the apps, pydicom: some 160,000 objects the
collector tracks) for its whole life. Python's full collections scanned all of it every so
often, 70 to 120 ms here, in the middle of whichever request or association crossed the
threshold, and the marks they write on each object copied a forked process's shared pages into
its own memory. :func:`freeze_what_is_loaded` leaves them out of every collection from then on.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from typing import cast

from django.conf import settings
from django.core.cache.backends.redis import RedisCache
from django.urls import URLResolver, get_resolver
from django.utils import translation
from django.utils.module_loading import import_string
from PIL import Image


def load_what_requests_use() -> None:
    caches = cast("dict[str, dict[str, str]]", settings.CACHES)
    backends = [import_string(cache["BACKEND"]) for cache in caches.values()]
    if any(issubclass(backend, RedisCache) for backend in backends):
        importlib.import_module("redis")  # what RedisCache imports when first used
    Image.preinit()  # PNG, JPEG, GIF and the other common formats, as a first save loads them
    import_string(settings.MESSAGE_STORAGE)
    import_string(settings.SESSION_SERIALIZER)
    # Each language's translations, and the names reverse() looks up, which Django keeps per
    # language (the paths are translated) and per namespace ("dicomweb:study").
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            for resolver in _resolvers(get_resolver()):
                resolver.reverse_dict  # noqa: B018 - built on first use


def _resolvers(resolver: URLResolver) -> Iterator[URLResolver]:
    """The URLconf's resolvers (the root and each ``include``), importing the URLconf and its
    views on the way."""
    yield resolver
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _resolvers(pattern)


def freeze_what_is_loaded() -> None:
    """Leave every object this process holds now out of the collector's scans: called once a
    long-running process has loaded what it serves with, before it serves. A full collection
    then scans only what the process made since (3 to 18 ms in a gunicorn worker)."""
    gc.freeze()
