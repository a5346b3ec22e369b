"""The check of a reused PostgreSQL connection (portal.postgresql.base): no round trip while the
server has said nothing, and a connection the server ended is found unusable and replaced before
a request's first query, as Django's ``SELECT 1`` would find it."""

import select

import psycopg
import pytest
from django.db import close_old_connections, connection, connections
from django.db.backends.postgresql import base as django_postgresql

from portal.postgresql.base import DatabaseWrapper

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def checks_asked_of_the_server(monkeypatch) -> list[bool]:
    """Each ``SELECT 1`` check (Django's ``is_usable``) and what it found."""
    asked: list[bool] = []
    djangos_check = django_postgresql.DatabaseWrapper.is_usable

    def counted(self) -> bool:
        asked.append(djangos_check(self))
        return asked[-1]

    monkeypatch.setattr(django_postgresql.DatabaseWrapper, "is_usable", counted)
    return asked


@pytest.fixture
def reused_connection(settings):
    """The connection as a request after the first finds it: open, kept between requests, due
    for a health check before its first query."""
    connection.close()
    connection.ensure_connection()
    assert connection.settings_dict["CONN_HEALTH_CHECKS"]
    # As between two requests (request_finished, then request_started).
    close_old_connections()
    assert connection.connection is not None
    assert not connection.health_check_done
    return connection.connection


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_the_portal_runs_on_its_own_postgresql_backend(require_postgres):
    assert isinstance(connections["default"], DatabaseWrapper)
    assert connection.settings_dict["ENGINE"] == "portal.postgresql"


def test_a_quiet_reused_connection_is_used_without_asking_the_server(
    require_postgres, reused_connection, checks_asked_of_the_server
):
    before = backend_pid()
    close_old_connections()
    assert backend_pid() == before
    assert connection.connection is reused_connection
    assert checks_asked_of_the_server == []


def test_a_connection_the_server_ended_is_replaced_before_the_first_query(
    require_postgres, reused_connection, checks_asked_of_the_server, database_url
):
    ended = backend_pid()
    close_old_connections()
    with psycopg.connect(database_url, autocommit=True) as administrator:
        assert administrator.execute("SELECT pg_terminate_backend(%s)", [ended]).fetchone()[0]
        # The server's FATAL message and the close reach the socket on the server's time.
        administrator.execute(
            "SELECT pg_sleep(0.05) FROM generate_series(1, 100) "
            "WHERE EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)",
            [ended],
        )
    # The request's first query runs on a new connection instead of failing.
    assert backend_pid() != ended
    assert checks_asked_of_the_server == [False]


def test_a_connection_with_something_to_read_is_asked_djangos_way(
    require_postgres, reused_connection, checks_asked_of_the_server, database_url
):
    """A notice or a notification waiting on the socket is no failure: ``SELECT 1`` decides,
    and the connection is kept."""
    with connection.cursor() as cursor:
        cursor.execute("LISTEN portal_health_check")
    close_old_connections()
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("NOTIFY portal_health_check")
    # The listening server process sends the notification on its own time, after the commit.
    readable, _, _ = select.select([reused_connection.fileno()], [], [], 5)
    assert readable, "the notification never reached the socket"
    before = reused_connection.info.backend_pid
    assert backend_pid() == before
    assert checks_asked_of_the_server == [True]
    with connection.cursor() as cursor:
        cursor.execute("UNLISTEN portal_health_check")


def test_a_broken_or_closed_connection_is_unusable_without_asking(
    require_postgres, reused_connection, checks_asked_of_the_server
):
    reused_connection.close()
    assert connection.is_usable() is False
    assert checks_asked_of_the_server == []
