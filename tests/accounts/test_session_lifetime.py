"""Sessions end after 30 idle minutes, and 12 hours after login however active
(accounts.middleware, with the clocks started by the login)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from audit.models import Action, AuditEvent
from tests.accounts.helpers import PASSWORD

pytestmark = pytest.mark.django_db

START = datetime(2025, 3, 3, 7, 30, tzinfo=UTC)
PAGE = reverse("accounts:password_change")


def log_in(client):
    response = client.post(reverse("accounts:login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302


def test_a_session_idle_for_31_minutes_is_logged_out(client, alice):
    with time_machine.travel(START, tick=False) as clock:
        log_in(client)
        assert client.get(PAGE).status_code == 200
        clock.shift(timedelta(minutes=31))

        response = client.get(PAGE)

        assert response.status_code == 302
        assert response.url.startswith(reverse("accounts:login"))
        assert "_auth_user_id" not in client.session
        event = AuditEvent.objects.get(action=Action.SESSION_EXPIRED)
        assert (event.actor, event.details) == (alice, {"reason": "idle"})
        login_page = client.get(response.url)
        assert "logged out after 30 minutes without activity" in login_page.text


def test_a_session_idle_for_29_minutes_stays_logged_in(client, alice):
    with time_machine.travel(START, tick=False) as clock:
        log_in(client)
        assert client.get(PAGE).status_code == 200
        clock.shift(timedelta(minutes=29))

        assert client.get(PAGE).status_code == 200
        assert client.session["_auth_user_id"] == str(alice.pk)
        assert not AuditEvent.objects.filter(action=Action.SESSION_EXPIRED).exists()


def test_idle_time_counts_from_the_login_itself(client, alice):
    with time_machine.travel(START, tick=False) as clock:
        log_in(client)
        clock.shift(timedelta(minutes=31))

        assert client.get(PAGE).status_code == 302


def test_an_active_session_still_ends_12_hours_after_login(client, alice):
    with time_machine.travel(START, tick=False) as clock:
        log_in(client)
        for _ in range(28):  # a request every 25 minutes: 11 hours 40 minutes
            clock.shift(timedelta(minutes=25))
            assert client.get(PAGE).status_code == 200
        clock.shift(timedelta(minutes=21))  # 12 hours 1 minute after login

        assert client.get(PAGE).status_code == 302
        event = AuditEvent.objects.get(action=Action.SESSION_EXPIRED)
        assert event.details == {"reason": "maximum age"}
