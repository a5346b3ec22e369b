"""Loading in the web process's master what each request would otherwise load for itself.

gunicorn loads the application once in its master (``preload_app``) and forks the workers from
it, so what the master loads is loaded once and its memory pages are shared by every worker.
Some libraries are only imported by the first request that uses them, in each worker anew:
the cache's client library (``redis``, about 100 ms), Pillow's image formats, the message and
session storages. :func:`load_what_requests_use` imports them before the fork. It imports
modules only: no connection is opened, as each worker must open its own.
"""

from __future__ import annotations

import importlib
from typing import cast

from django.conf import settings
from django.core.cache.backends.redis import RedisCache
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
