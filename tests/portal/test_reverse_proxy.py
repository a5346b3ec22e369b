"""Behind a real reverse proxy (Caddy, as docker-compose ships it, from Debian's package) every
request reaches the portal from the proxy's address. Two clients on different loopback
addresses (127.0.0.2 and 127.0.0.3) show that one client's failures do not throttle the other
and that the audit trail names each client, not the proxy."""

from __future__ import annotations

import http.client
import json
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from audit.models import Action, AuditEvent
from guestlinks.models import GuestLink, TargetKind
from guestlinks.tokens import digest_for, new_salt, token_for
from tests.accounts.helpers import PASSWORD
from tests.conftest import require_service
from tests.factories import make_study
from tests.servers import free_port

MALLORY = "127.0.0.2"
ALICE = "127.0.0.3"
CADDY = shutil.which("caddy")


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"Caddy stopped with status {process.returncode}:\n{log.read_text()[-2000:]}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"Caddy did not listen on port {port} within {timeout} s")


@pytest.fixture
def proxy(live_server, tmp_path):
    """Caddy on a free loopback port in front of the live server, configured as
    deploy/Caddyfile is (reverse_proxy, which sets X-Forwarded-For to the address it sees). TLS
    ends at the proxy in production; here it says so with X-Forwarded-Proto. Runs as a child of
    this test, never as the system service, and is stopped afterwards."""
    require_service(
        CADDY is not None, "Caddy is needed for the reverse-proxy test (apt-get install caddy)"
    )
    upstream = urlsplit(live_server.url)
    port = free_port()
    config = tmp_path / "Caddyfile"
    config.write_text(
        "{\n"
        "\tadmin off\n"
        "\tauto_https off\n"
        "}\n"
        f"http://:{port} {{\n"
        "\tbind 127.0.0.1\n"
        f"\treverse_proxy {upstream.hostname}:{upstream.port} {{\n"
        "\t\theader_up X-Forwarded-Proto https\n"
        "\t}\n"
        "}\n"
    )
    home = tmp_path / "caddy-home"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
    }
    log_path = tmp_path / "caddy.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, process, log_path)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def send(port: int, source: str, method: str, path: str, body: dict | None = None, **headers):
    """One request to the proxy from ``source`` (a loopback address of its own)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0)
    )
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Host": "localhost", **headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.fixture
def portal_behind_proxy(settings, live_server):
    settings.TRUSTED_PROXIES = ["127.0.0.1", "::1"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["localhost"]


def test_behind_the_proxy_one_clients_failures_do_not_throttle_another(
    proxy, portal_behind_proxy, settings, alice, org, location
):
    settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS = 3
    settings.GUESTLINK_PROBE_LIMIT = 3
    token_path = reverse("api-token")

    # Mallory guesses passwords of accounts that do not exist, each request claiming some other
    # address in X-Forwarded-For; the proxy names her real one.
    for n in range(3):
        status = send(
            proxy,
            MALLORY,
            "POST",
            token_path,
            {"username": f"nobody-{n}", "password": "guess"},
            **{"X-Forwarded-For": f"198.51.100.{n}"},
        )
        assert status == 400
    assert send(proxy, MALLORY, "POST", token_path, {"username": "x", "password": "y"}) == 429
    # Alice, behind the same proxy, still logs in.
    assert (
        send(proxy, ALICE, "POST", token_path, {"username": "alice", "password": PASSWORD}) == 200
    )

    # Mallory probes guest-link tokens until she is turned away; Alice's unknown token is not.
    for _ in range(3):
        assert send(proxy, MALLORY, "GET", f"/l/{secrets.token_urlsafe(32)}") == 404
    assert send(proxy, MALLORY, "GET", f"/l/{secrets.token_urlsafe(32)}") == 429
    assert send(proxy, ALICE, "GET", f"/l/{secrets.token_urlsafe(32)}") == 404
    study = make_study(org, location=location)
    salt = new_salt()
    token = token_for(salt)
    GuestLink.objects.create(
        target_kind=TargetKind.STUDY,
        study=study,
        organization=org,
        token_salt=salt,
        token_digest=digest_for(token),
    )
    assert send(proxy, ALICE, "GET", f"/l/{token}") == 200

    # The audit trail names each client, never the proxy.
    def addresses(action):
        return set(AuditEvent.objects.filter(action=action).values_list("ip", flat=True))

    assert addresses(Action.LOGIN_FAILED) == {MALLORY}
    assert addresses(Action.LOGIN_THROTTLED) == {MALLORY}
    assert addresses(Action.TOKEN_ISSUED) == {ALICE}
    assert addresses(Action.LINK_REFUSED) == {MALLORY}
    assert addresses(Action.LINK_OPENED) == {ALICE}
