"""The portal's own servers for real peers: its web application on plain HTTP, and its DICOM
listener, each optionally reachable from inside a network namespace only.

Both bind their listening socket inside the namespace (:meth:`NetworkNamespace.run`) and serve
it from threads of the root namespace, so Orthanc in the namespace can call them while their
request threads reach the database (PostgreSQL on 127.0.0.1 in CI) as every other test does.
With ``namespace=None`` they listen on the machine's 127.0.0.1, for clients in this process.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.db import connections
from django.test.testcases import LiveServerThread

from dimse import listener as dimse_listener
from tests.interop.netns import NetworkNamespace

HOST = "127.0.0.1"


class _ServerThread(LiveServerThread):
    """Django's live-server thread, with the listening socket made inside ``namespace``."""

    def __init__(self, namespace: NetworkNamespace | None, **kwargs) -> None:
        self.namespace = namespace
        super().__init__(HOST, StaticFilesHandler, **kwargs)
        self.name = "LivePortal"
        self.daemon = True

    def _create_server(self, connections_override=None):
        create = super()._create_server
        if self.namespace is None:
            return create(connections_override=connections_override)
        return self.namespace.run(create, connections_override=connections_override)


@contextlib.contextmanager
def live_portal(settings, namespace: NetworkNamespace | None = None) -> Iterator[str]:
    """Serve the portal on ``http://127.0.0.1:<free port>`` (inside ``namespace`` when given)
    for the block; yields that URL, which is also ``SITE_URL`` meanwhile, so the absolute URLs
    in answers (RetrieveURL, BulkDataURI) point at this server.

    The test must be transactional (``transactional_db``): the server's request threads read
    what the test committed. An in-memory SQLite test database is shared with them, as
    Django's LiveServerTestCase does; requests are then best kept sequential."""
    # The server is created after these changes, so its middleware sees plain HTTP allowed.
    settings.SECURE_SSL_REDIRECT = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, HOST]
    shared = {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()
    }
    for conn in shared.values():
        conn.inc_thread_sharing()
    thread = _ServerThread(namespace, connections_override=shared)
    try:
        thread.start()
        thread.is_ready.wait()
        if thread.error:
            raise thread.error
        url = f"http://{HOST}:{thread.port}"
        settings.SITE_URL = url
        yield url
    finally:
        _wait_for_requests_to_end()
        thread.terminate()
        for conn in shared.values():
            conn.dec_thread_sharing()


def _wait_for_requests_to_end(timeout: float = 5.0) -> None:
    """A request thread still closing its connection when the server stops would close a shared
    SQLite connection from another thread."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [t for t in threading.enumerate() if t.name.endswith("(process_request_thread)")]
        if not running:
            return
        for thread in running:
            thread.join(timeout=0.1)


@contextlib.contextmanager
def running_listener(
    namespace: NetworkNamespace | None = None, *, ae_title: str = "PORTAL", grace: float = 5
) -> Iterator[dimse_listener.ListenerServer]:
    """The portal's DICOM listener on 127.0.0.1, a free port (inside ``namespace`` when given),
    serving from a thread of this namespace. Its associations write through their own database
    connections: use it with the ``database_url`` fixture (tests/conftest.py) on SQLite."""
    make = dimse_listener.make_server
    if namespace is None:
        server = make(HOST, 0, ae_title=ae_title)
    else:
        server = namespace.run(make, HOST, 0, ae_title=ae_title)
    dimse_listener.start_in_thread(server)
    try:
        yield server
    finally:
        dimse_listener.stop(server, grace=grace)
