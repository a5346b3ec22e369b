"""portal.sessions: database sessions created without asking whether the new key is taken."""

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal import sessions
from portal.sessions import SessionStore

pytestmark = pytest.mark.django_db


def test_the_portal_uses_it():
    assert settings.SESSION_ENGINE == "portal.sessions"


def test_a_new_session_is_one_insert_and_no_lookup():
    store = SessionStore()
    store["grant"] = 1
    with CaptureQueriesContext(connection) as captured:
        store.save()
    statements = [q["sql"].split()[0].upper() for q in captured]
    assert "SELECT" not in statements
    assert statements.count("INSERT") == 1
    assert SessionStore(store.session_key)["grant"] == 1


def test_a_key_already_taken_is_never_shared_another_is_drawn(monkeypatch):
    taken = SessionStore()
    taken["owner"] = "first"
    taken.save()
    draws = iter([taken.session_key, "k" * 32])
    monkeypatch.setattr(sessions, "get_random_string", lambda length, chars: next(draws))

    second = SessionStore()
    second["owner"] = "second"
    second.save()

    assert second.session_key == "k" * 32
    assert SessionStore(taken.session_key)["owner"] == "first"
    assert Session.objects.count() == 2
