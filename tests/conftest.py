"""Fixtures shared by the whole suite: one small world of organizations and users that the tests
tell their stories with.

- ``org``: St. Elsewhere Hospital, with location "Radiology" and group "Neuroradiology".
- ``alice``: clinician of ``org``, works from the Radiology location (every share/link permission).
- ``bob``: clinician of ``org`` in the Neuroradiology group only.
- ``dana``: administrator of ``org`` (sees every study of it; staff in the Django admin).
- ``carol``: clinician of ``other_org`` — the outsider for ``org``'s studies.
"""

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from accounts.models import Group, Location, Membership, Organization, Role, User
from accounts.permissions import ADMINISTRATOR, CLINICIAN
from portal.decisions import forget_asked
from portal.once import forget as forget_once
from studies.services.rendered_images import recent_renderings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_service(available: bool, reason: str) -> None:
    """A test that needs a real service fails in CI when it is missing, and skips elsewhere."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI requires this service: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path):
    """Each test stores DICOM files and rendered frames in its own temporary folder."""
    settings.STORAGES = {
        **settings.STORAGES,
        "dicom": {
            "BACKEND": "studies.storage.DicomFileStorage",
            "OPTIONS": {"location": str(tmp_path / "dicom")},
        },
    }
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"default-{tmp_path.name}",
        },
        "frames": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"frames-{tmp_path.name}",
        },
    }
    from django.core.cache import caches
    from django.core.files.storage import storages

    # Django caches backend instances; make the overridden settings take effect.
    storages._storages.pop("dicom", None)
    for alias in ("default", "frames"):
        caches[alias].clear()
    # What this process remembers of the shared cache goes with it.
    forget_once()
    forget_asked()
    recent_renderings.clear()
    yield
    storages._storages.pop("dicom", None)


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the portal's default language: a page an earlier test requested in
    Dutch (or as a user who reads German) leaves that language active in the thread, as every
    request in production does until the next one activates its own."""
    from django.conf import settings
    from django.utils import translation

    with translation.override(settings.LANGUAGE_CODE):
        yield


@pytest.fixture(autouse=True)
def _fresh_mail_connection():
    """A test's emails go to the mail server (or fake) it set up, not over a connection an
    earlier test left open (notifications.backends keeps one per process)."""
    from notifications.backends import close_kept_connection

    close_kept_connection()
    yield
    close_kept_connection()


@pytest.fixture
def org(db):
    return Organization.objects.create(name="St. Elsewhere Hospital")


@pytest.fixture
def other_org(db):
    return Organization.objects.create(name="Riverside Clinic", kind="clinic")


@pytest.fixture
def clinician_role(db):
    return Role.objects.create(name="Clinician", permissions=[p.value for p in CLINICIAN])


@pytest.fixture
def admin_role(db):
    return Role.objects.create(name="Administrator", permissions=[p.value for p in ADMINISTRATOR])


@pytest.fixture
def location(org):
    return Location.objects.create(organization=org, name="Radiology")


@pytest.fixture
def group(org):
    return Group.objects.create(organization=org, name="Neuroradiology")


def make_user(username: str, **extra) -> User:
    user = User.objects.create_user(
        username=username,
        password="correct-horse-battery",
        email=extra.pop("email", f"{username}@example.org"),
        first_name=extra.pop("first_name", username.title()),
        last_name=extra.pop("last_name", "Tester"),
        **extra,
    )
    return user


@pytest.fixture
def alice(org, clinician_role, location):
    user = make_user("alice", physician_number="RIZIV-1001")
    membership = Membership.objects.create(user=user, organization=org, role=clinician_role)
    membership.locations.add(location)
    return user


@pytest.fixture
def bob(org, clinician_role, group):
    user = make_user("bob", physician_number="RIZIV-1002")
    membership = Membership.objects.create(user=user, organization=org, role=clinician_role)
    membership.groups.add(group)
    return user


@pytest.fixture
def dana(org, admin_role):
    user = make_user("dana", is_staff=True)
    Membership.objects.create(user=user, organization=org, role=admin_role)
    return user


@pytest.fixture
def carol(other_org, clinician_role):
    user = make_user("carol")
    location = Location.objects.create(organization=other_org, name="Imaging")
    membership = Membership.objects.create(user=user, organization=other_org, role=clinician_role)
    membership.locations.add(location)
    return user


@pytest.fixture
def require_postgres():
    from django.db import connection

    require_service(
        connection.vendor == "postgresql",
        "set DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal to run PostgreSQL tests",
    )


@pytest.fixture
def require_redis():
    import redis

    url = os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        available = True
    except redis.RedisError:
        available = False
    require_service(available, f"Redis is not reachable at {url}")
    return url


# `make test` runs the suite in up to four processes (pytest-xdist); each has its own Redis
# database for the tests that write to and flush one: 12 for the first, 13 to 15 for the others.
SCRATCH_REDIS_DATABASES = 4


@pytest.fixture
def scratch_redis_url(require_redis) -> str:
    """A Redis database this test process alone writes to and flushes, on the server of
    ``CELERY_BROKER_URL``."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    database = 12 + int(worker.removeprefix("gw")) % SCRATCH_REDIS_DATABASES
    return f"{require_redis.rsplit('/', 1)[0]}/{database}"


@pytest.fixture
def require_chromium():
    path = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    require_service(
        os.path.exists(path) or shutil.which("chromium") is not None,
        "Chromium is not installed (apt-get install chromium) for browser tests",
    )
    return path if os.path.exists(path) else shutil.which("chromium")


@pytest.fixture
def database_url(transactional_db, tmp_path) -> Iterator[str]:
    """The test database as a ``DATABASE_URL`` that other threads and processes can open (Celery
    workers, the DICOM listener's association threads, a WSGI server thread): the test is
    transactional, so rows this process commits are what they read, and the other way round.
    SQLite's in-memory test database is copied into a file for the test."""
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        user = quote(settings_dict.get("USER") or "postgres", safe="")
        password = settings_dict.get("PASSWORD")
        credentials = f"{user}:{quote(password, safe='')}" if password else user
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        yield f"postgres://{credentials}@{host}:{port}/{settings_dict['NAME']}"
        return
    if connection.vendor != "sqlite":
        pytest.skip(f"these tests know PostgreSQL and SQLite, not {connection.vendor}")
    if not connection.is_in_memory_db():
        yield f"sqlite:///{settings_dict['NAME']}"
        return
    # SQLite's test database is in this process's memory: copy it (migrated, empty) into a file
    # and point this process's connections at the file for the test. The in-memory connection
    # is kept aside, not closed (closing would destroy the database the rest of the suite uses).
    path = tmp_path / "test.sqlite3"
    connection.ensure_connection()
    with contextlib.closing(sqlite3.connect(path)) as target:
        connection.connection.backup(target)
    in_memory_name, in_memory_connection = settings_dict["NAME"], connection.connection
    connection.connection = None
    settings_dict["NAME"] = str(path)
    try:
        yield f"sqlite:///{path}"
    finally:
        connection.close()
        settings_dict["NAME"] = in_memory_name
        connection.connection = in_memory_connection


class CountingCache:
    """The default cache as remembered decisions (``portal.decisions``) ask it, counting how
    often it is asked (``get_many``: a round trip each) and for which answers."""

    def __init__(self, cache):
        self.cache = cache
        self.asked = 0
        self.answers_asked: list[str] = []

    def get_many(self, keys):
        self.asked += 1
        self.answers_asked += [key for key in keys if not key.startswith("decisions:generation")]
        return self.cache.get_many(keys)

    def __getattr__(self, name):
        return getattr(self.cache, name)


@pytest.fixture
def counting_cache(monkeypatch):
    from django.core.cache import caches

    from portal import decisions

    counting = CountingCache(caches["default"])
    monkeypatch.setattr(decisions, "_cache", lambda: counting)
    return counting


@pytest.fixture
def built_queries(monkeypatch) -> list:
    """The models of the queries the ORM compiles from here on, one per compilation
    (``SQLCompiler.as_sql``): what a query built once (``portal.prepared_queries``) no longer
    adds to."""
    from django.db.models.sql.compiler import SQLCompiler

    built: list = []
    as_sql = SQLCompiler.as_sql

    def counted(compiler, *args, **kwargs):
        built.append(compiler.query.model)
        return as_sql(compiler, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counted)
    return built
