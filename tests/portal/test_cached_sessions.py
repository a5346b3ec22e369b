"""Sessions read through the shared cache (``portal.cached_sessions``, issue 13), against the real
Redis: a logged-in page reads no session row, the cache never holds a session key, logging out
ends the session for every process, and a session the cache lost is read from the database.
Without a shared cache, sessions are the database's alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from portal.cached_sessions import SessionStore
from portal.decisions import digest
from tests.accounts.helpers import HttpsClient, password_login, statements_of_get

pytestmark = pytest.mark.django_db

SESSION_TABLE = '"django_session"'
SESSION_READ = f"FROM {SESSION_TABLE}"
KEY_PREFIX = "test-cached-sessions"


@pytest.fixture
def shared_cache(scratch_redis_url, settings):
    settings.CACHES = {
        **settings.CACHES,
        "default": {
            "BACKEND": "portal.cache.RedisCache",
            "LOCATION": scratch_redis_url,
            "KEY_PREFIX": KEY_PREFIX,
        },
    }
    settings.SESSION_ENGINE = "portal.cached_sessions"
    server = redis.Redis.from_url(scratch_redis_url)
    yield server
    for key in server.scan_iter(f"{KEY_PREFIX}:*"):
        server.delete(key)


def test_a_logged_in_page_reads_no_session_row(shared_cache, alice):
    client = password_login(alice)
    directory = reverse("studies:directory")
    assert client.get(directory).status_code == 200

    status, reads = statements_of_get(client, directory, SESSION_READ)

    assert status == 200
    assert reads == []


def test_the_cache_never_holds_a_session_key(shared_cache, alice):
    client = password_login(alice)
    client.get(reverse("studies:directory"))
    session_key = client.cookies[django_settings.SESSION_COOKIE_NAME].value

    keys = [key.decode() for key in shared_cache.scan_iter(f"{KEY_PREFIX}:*")]

    assert keys
    assert not [key for key in keys if session_key in key]
    assert [key for key in keys if digest(session_key) in key]


def test_logging_out_ends_the_session_for_every_process(shared_cache, alice):
    client = password_login(alice)
    directory = reverse("studies:directory")
    assert client.get(directory).status_code == 200
    session_key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    # Another web process finds the session in the shared cache.
    assert SessionStore(session_key).load()

    assert client.post(reverse("accounts:logout")).status_code == 302

    assert SessionStore(session_key).load() == {}
    stolen = HttpsClient()
    stolen.cookies[django_settings.SESSION_COOKIE_NAME] = session_key
    response = stolen.get(directory)
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))


def test_a_session_the_cache_lost_is_read_from_the_database(shared_cache, alice):
    client = password_login(alice)
    directory = reverse("studies:directory")
    assert client.get(directory).status_code == 200
    for key in shared_cache.scan_iter(f"{KEY_PREFIX}:*"):
        shared_cache.delete(key)

    status, reads = statements_of_get(client, directory, SESSION_READ)
    assert status == 200 and len(reads) == 1
    # And the cache has it again.
    status, reads = statements_of_get(client, directory, SESSION_READ)
    assert status == 200 and reads == []


@pytest.mark.parametrize(
    ("cache_url", "engine"),
    [("redis://127.0.0.1:6379/12", "portal.cached_sessions"), ("", "portal.sessions")],
)
def test_sessions_go_through_the_cache_only_when_every_process_shares_it(cache_url, engine):
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"}
    environment.pop("CACHE_URL", None)
    if cache_url:
        environment["CACHE_URL"] = cache_url
    printed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; print(settings.SESSION_ENGINE)",
        ],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        cwd=django_settings.BASE_DIR,
    )
    assert printed.stdout.strip() == engine


def test_a_new_session_is_written_once_to_each_store(shared_cache, monkeypatch):
    """Creating a session (a login, a guest link opened) is one INSERT and one cache write."""
    sent: list[bytes | str] = []
    real = redis.Redis.execute_command

    def counting(self, *args, **options):
        sent.append(args[0])
        return real(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counting)
    store = SessionStore()
    store["grant"] = "study"
    with CaptureQueriesContext(connection) as queries:
        store.save()

    assert [q["sql"].split()[0] for q in queries if SESSION_TABLE in q["sql"]] == ["INSERT"]
    assert sent == ["SET"]
    assert SessionStore(store.session_key).load() == {"grant": "study"}


@pytest.fixture
def redis_commands(monkeypatch):
    """The commands this process sends to Redis (one round trip each), by name."""
    sent: list[str] = []
    send = redis.Redis.execute_command

    def counting(self, *args, **options):
        sent.append(str(args[0]))
        return send(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counting)
    return sent


def test_a_logged_in_page_asks_the_cache_once(shared_cache, alice, redis_commands):
    """The session comes in the round trip that asks for its user's remembered answers (who the
    user is, their memberships, the remembered page), for the user this process saw it logged
    in as."""
    client = password_login(alice)
    directory = reverse("studies:directory")
    for _ in range(2):
        assert client.get(directory).status_code == 200
    redis_commands.clear()

    response = client.get(directory)

    assert response.status_code == 200
    assert response.wsgi_request.user == alice
    assert str(alice) in response.content.decode()
    assert redis_commands == ["MGET"]


def test_a_session_ended_since_is_not_taken_from_the_last_guess(shared_cache, alice):
    client = password_login(alice)
    directory = reverse("studies:directory")
    assert client.get(directory).status_code == 200
    session_key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    # Ended by another process (a logout there, an administrator).
    SessionStore(session_key).delete()

    response = client.get(directory)

    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))


def test_a_wrong_guess_of_the_sessions_user_answers_nothing(shared_cache, alice, carol):
    """What was asked ahead for another user is never taken as the session's user's answers:
    the page is the session's user's, from their own answers."""
    from portal import decisions

    client = password_login(alice)
    directory = reverse("studies:directory")
    other = password_login(carol)
    assert other.get(directory).status_code == 200
    assert client.get(directory).status_code == 200
    entry = SessionStore(client.cookies[django_settings.SESSION_COOKIE_NAME].value).entry()
    assert decisions.session_stood_for(entry) == f"user:{alice.pk}"
    decisions.note_session_stood_for(entry, f"user:{carol.pk}")

    response = client.get(directory)

    assert response.status_code == 200
    assert response.wsgi_request.user == alice
    page = response.content.decode()
    assert str(alice) in page and str(carol) not in page
    assert decisions.session_stood_for(entry) == f"user:{alice.pk}"


def test_forgetting_the_guesses_forgets_whom_each_session_stood_for(shared_cache, alice):
    """A cache that is gone takes every guess made from it: the sessions' users too, not only
    the users' and tokens' last questions."""
    from portal import decisions

    client = password_login(alice)
    assert client.get(reverse("studies:directory")).status_code == 200
    entry = SessionStore(client.cookies[django_settings.SESSION_COOKIE_NAME].value).entry()
    decisions.note_stood_for("token-key", f"user:{alice.pk}")
    assert decisions.session_stood_for(entry) == f"user:{alice.pk}"

    decisions.forget_asked()

    assert decisions.session_stood_for(entry) is None
    assert decisions.stood_for("token-key") is None
