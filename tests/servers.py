"""Servers a test starts as processes of their own: a free port on the loopback for them (in a
network namespace: ``tests.interop.netns.free_port``), and the portal under gunicorn as
production serves it."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port free on 127.0.0.1 at the time of asking; the server must bind it itself."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers_health_check(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
            return connection.getresponse().status == 200
        finally:
            connection.close()
    except OSError:
        return False


@contextlib.contextmanager
def gunicorn_serving(env: dict[str, str], log_path: Path) -> Iterator[tuple[int, int]]:
    """``gunicorn -c gunicorn.conf.py`` (the portal, sync workers) with ``env`` on a free port of
    127.0.0.1, once it answers ``/healthz``: (its port, its master's pid). Its output goes to
    ``log_path``; its whole process group is stopped afterwards."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn",
        "-c", str(ROOT / "gunicorn.conf.py"),
        "--bind", f"127.0.0.1:{port}",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not _answers_health_check(port):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not start:\n{log_path.read_text()}")
            time.sleep(0.3)
        yield port, server.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
