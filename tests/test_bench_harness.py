"""The benchmarks' throwaway database (``bench/harness.py``): a run drops what a stopped run left
behind, never a database another run is using."""

import secrets

import psycopg
import pytest

from bench.harness import ThrowawayDatabase

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def server_url(require_postgres, database_url) -> str:
    """The test database's server, as the benchmarks take it (``--postgres-url``)."""
    return database_url.rsplit("/", 1)[0]


def test_a_database_another_run_uses_is_left_alone_and_taken_once_it_ends(server_url, tmp_path):
    name = f"portal_harness_{secrets.token_hex(4)}"
    running = ThrowawayDatabase("postgres", name=name, folder=tmp_path, postgres_url=server_url)
    starting = ThrowawayDatabase("postgres", name=name, folder=tmp_path, postgres_url=server_url)
    url = running.create()
    try:
        with psycopg.connect(url, autocommit=True) as server:
            server.execute("CREATE TABLE seeded (id int)")

            with pytest.raises(RuntimeError, match="is in use"):
                starting.create()
            # The refused run cleans up as every run does at its end, and leaves the other's
            # database where it is.
            starting.drop()

            assert server.execute("SELECT count(*) FROM seeded").fetchone() == (0,)
        # The run is over and left its database behind: the next run starts afresh.
        assert starting.create() == url
        with psycopg.connect(url) as fresh:
            assert fresh.execute("SELECT to_regclass('seeded')").fetchone() == (None,)
    finally:
        running.drop()
