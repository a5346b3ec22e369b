"""Fifty recipients open a three-use link at the same instant: exactly three get in.

The use is counted by one conditional UPDATE (``uses < max_uses``). On PostgreSQL concurrent
UPDATEs of the row queue on its lock and each re-checks the condition on the row as the previous
one left it; SQLite serializes write transactions (BEGIN IMMEDIATE). Either way the count can
never pass the limit, and the audit trail holds one LINK_USED per grant.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator

import pytest
from django.db import connection

from audit.models import Action, AuditEvent
from audit.selectors import verify_chain
from guestlinks.access import GRANTS_SESSION_KEY
from guestlinks.models import GuestLink
from guestlinks.services import opening
from tests.guestlinks.conftest import service_request

RECIPIENTS = 50
USES = 3


def open_all_at_once(link: GuestLink, *, password: str = "") -> tuple[list, list, list]:
    """Every recipient calls the service at the barrier, on a connection of its own."""
    start = threading.Barrier(RECIPIENTS)
    granted: list[opening.Grant] = []
    sessions: list = []
    refused: list[opening.LinkError] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def recipient(number: int) -> None:
        try:
            row = GuestLink.objects.select_related("organization", "study__patient").get(pk=link.pk)
            request = service_request(address=f"198.51.100.{number + 1}")
            start.wait(timeout=30)
            try:
                grant = opening.open_link(link=row, request=request, password=password)
            except opening.LinkError as refusal:
                with lock:
                    refused.append(refusal)
            else:
                with lock:
                    granted.append(grant)
                    sessions.append(dict(request.session))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=recipient, args=(n,)) for n in range(RECIPIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return granted, sessions, refused


def assert_exactly_three_admitted(link, granted, sessions, refused):
    assert len(granted) == USES
    assert len(refused) == RECIPIENTS - USES
    assert all(isinstance(refusal, opening.LinkUnavailable) for refusal in refused)
    assert all(session[GRANTS_SESSION_KEY][0]["link"] == link.pk for session in sessions)
    link.refresh_from_db()
    assert link.uses == USES
    assert AuditEvent.objects.filter(action=Action.LINK_USED).count() == USES
    assert AuditEvent.objects.filter(action=Action.LINK_REFUSED).count() == RECIPIENTS - USES
    assert verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_openings_of_a_three_use_link_admit_three_on_postgresql(
    require_postgres, study, make_link
):
    link, _token = make_link(study, max_uses=USES)
    assert_exactly_three_admitted(link, *open_all_at_once(link))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_guesses_never_pass_the_attempt_limit_on_postgresql(
    require_postgres, study, make_link, settings, monkeypatch
):
    """Each guess is counted as a failure before it is checked, by a conditional UPDATE: of
    fifty guesses arriving together at a link that locks after five, five are checked, the
    others are refused like any dead link, and the count stops at five."""
    settings.GUESTLINK_GUESSES_PER_LINK = RECIPIENTS
    checked = []
    real_check = opening.check_link_password

    def counting_check(password, encoded):
        checked.append(password)
        return real_check(password, encoded)

    monkeypatch.setattr(opening, "check_link_password", counting_check)
    link, _token = make_link(study, password="19610203", max_password_attempts=5)

    granted, _sessions, refused = open_all_at_once(link, password="19610204")

    assert granted == []
    assert len(checked) == 5
    assert sum(isinstance(r, opening.LinkUnavailable) for r in refused) == RECIPIENTS - 5
    link.refresh_from_db()
    assert link.password_failures == 5
    assert AuditEvent.objects.filter(action=Action.LINK_WRONG_PASSWORD).count() == 5


@pytest.fixture
def sqlite_file_database(transactional_db, tmp_path) -> Iterator[None]:
    """SQLite's test database lives in this process's memory, shared between connections in a
    mode that answers "table is locked" instead of waiting. The threads get what an installation
    has: a database file, where BEGIN IMMEDIATE waits for the writer before it (the in-memory
    database is set aside, not closed, and comes back after the test)."""
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite variant of the story")
    settings_dict = connection.settings_dict
    if not connection.is_in_memory_db():
        yield
        return
    path = tmp_path / "links.sqlite3"
    connection.ensure_connection()
    with contextlib.closing(sqlite3.connect(path)) as target:
        connection.connection.backup(target)
    in_memory_name, in_memory_connection = settings_dict["NAME"], connection.connection
    connection.connection = None
    settings_dict["NAME"] = str(path)
    try:
        yield
    finally:
        connection.close()
        settings_dict["NAME"] = in_memory_name
        connection.connection = in_memory_connection


def test_fifty_concurrent_openings_of_a_three_use_link_admit_three_on_sqlite(
    sqlite_file_database, org, location, make_link
):
    from tests.factories import make_study

    study = make_study(org, location=location)
    link, _token = make_link(study, max_uses=USES)
    assert_exactly_three_admitted(link, *open_all_at_once(link))
