"""What the web process loads before gunicorn forks its workers (``portal.preload``), so that no
worker's first request pays for it and the workers share its memory; and how a long-running
process leaves what it loaded out of Python's collections."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter with the test settings and a Redis cache at a port nothing listens on: if
# preloading opened a connection, it would fail.
_SCRIPT = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
django.setup()
from django.conf import settings
settings.CACHES = {"default": {"BACKEND": "portal.cache.RedisCache",
                               "LOCATION": "redis://127.0.0.1:9/0"}}
before = set(sys.modules)
from portal.preload import load_what_requests_use
load_what_requests_use()
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _loaded_by_preload() -> set[str]:
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(completed.stdout.strip().splitlines()[-1]))


def test_the_libraries_a_first_request_would_load_are_loaded_before_the_fork():
    loaded = _loaded_by_preload()
    assert {
        "redis",
        "PIL.JpegImagePlugin",
        "PIL.PngImagePlugin",
        "PIL.GifImagePlugin",
        "django.contrib.messages.storage.fallback",
        "django.contrib.sessions.serializers",
    } <= loaded


_URLS_SCRIPT = """
import json, os
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
django.setup()
from django.db import connection
from django.urls import get_resolver
from django.utils.translation import trans_real
from portal.preload import load_what_requests_use
load_what_requests_use()
root = get_resolver()
namespaces = next(iter(root._namespace_dict.values()), {})
dicomweb = namespaces["dicomweb"][1]._reverse_dict if "dicomweb" in namespaces else {}
print(json.dumps({
    "root": sorted(root._reverse_dict),
    "dicomweb": sorted(dicomweb),
    "translations": sorted(trans_real._translations),
    "connected": connection.connection is not None,
}))
"""


def test_urls_and_translations_are_built_for_every_language_before_the_fork(settings):
    completed = subprocess.run(
        [sys.executable, "-c", _URLS_SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True
    )
    built = json.loads(completed.stdout.strip().splitlines()[-1])

    languages = sorted(code for code, _name in settings.LANGUAGES)
    # reverse("studies:study") or reverse("dicomweb:study"), in any language, finds its tables
    # built: the root's, and the namespace's (dicomweb's checked here).
    assert built["root"] == languages
    assert built["dicomweb"] == languages
    assert set(languages) <= set(built["translations"])
    assert built["connected"] is False


def test_the_web_process_preloads_them():
    # Nothing else the web process loads at import brings these in: only the preload does.
    script = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'; "
        "import portal.wsgi; "
        "print(all(name in sys.modules for name in ('PIL.JpegImagePlugin', "
        "'django.contrib.messages.storage.fallback', 'django.contrib.sessions.serializers')))"
    )
    completed = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip().splitlines()[-1] == "True"


def test_what_is_loaded_is_left_out_of_the_collectors_scans():
    from portal.preload import freeze_what_is_loaded

    loaded = {"a route": ["a view"]}
    before = gc.get_freeze_count()
    try:
        freeze_what_is_loaded()
        assert gc.get_freeze_count() > before
        # Frozen objects are in no generation a collection scans.
        assert not any(loaded is tracked for tracked in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(loaded is tracked for tracked in gc.get_objects())


def test_each_process_of_a_celery_worker_freezes_what_it_loaded():
    from celery.signals import worker_process_init

    import portal.celery

    before = gc.get_freeze_count()
    try:
        answered = [receiver for receiver, _ in worker_process_init.send(sender=None)]
        assert portal.celery._freeze_what_is_loaded in answered
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
