"""A live portal on plain HTTP for DICOMweb clients that speak over the network (dicomweb-client).

pytest-django's session-wide ``live_server`` builds its middleware once, when it first starts,
with whatever ``SECURE_SSL_REDIRECT`` was then in force: in a run of these tests alone, the
production redirect to HTTPS, which a client on plain HTTP cannot follow. This server is started
per test, after the redirect was turned off, so it answers plain HTTP whatever ran before.
Its tests need ``transactional_db``: on PostgreSQL the server's threads read through their own
connections and see only committed rows.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from pytest_django.live_server_helper import LiveServer


@contextlib.contextmanager
def live_portal(settings) -> Iterator[str]:
    """Serve the portal on http://localhost:<free port>; yields its URL, which is also SITE_URL
    for the duration (absolute URLs in answers point at it)."""
    settings.SECURE_SSL_REDIRECT = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    server = LiveServer("localhost:0")
    try:
        settings.SITE_URL = server.url
        yield server.url
    finally:
        _wait_for_requests_to_end()
        server.stop()


def dicomweb_client(url: str, token: str):
    """dicomweb-client on the live portal, with an API token. Each request closes its connection,
    so no server thread is left waiting on it when the server stops."""
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(
        f"{url}/dicomweb", headers={"Authorization": f"Bearer {token}", "Connection": "close"}
    )


def _wait_for_requests_to_end(timeout: float = 5.0) -> None:
    """A request thread still closing its connection when the server stops would close the
    shared SQLite test connection from another thread (an error, reported as a warning)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [t for t in threading.enumerate() if t.name.endswith("(process_request_thread)")]
        if not running:
            return
        for thread in running:
            thread.join(timeout=0.1)
