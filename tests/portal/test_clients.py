"""The client's address: REMOTE_ADDR, or behind a trusted proxy the address it forwards, read
from the right of X-Forwarded-For so that nothing a client writes there is believed."""

import os
import runpy
from pathlib import Path

import pytest
from django.test import RequestFactory

from audit.services import client_ip as audit_client_ip
from portal.clients import client_ip, client_ip_from, parse_networks
from tests.servers import gunicorn_serving

ROOT = Path(__file__).resolve().parent.parent.parent
PROXY = "10.0.0.5"


def request_from(remote_addr: str, forwarded_for: str | None = None):
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().get("/", **extra)


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = [PROXY]


def test_without_trusted_proxies_x_forwarded_for_is_ignored(settings):
    settings.TRUSTED_PROXIES = []
    assert client_ip(request_from("203.0.113.9", "198.51.100.7")) == "203.0.113.9"


def test_a_trusted_proxy_names_the_client(behind_proxy):
    assert client_ip(request_from(PROXY, "198.51.100.7")) == "198.51.100.7"


def test_what_a_client_writes_in_x_forwarded_for_is_never_believed(behind_proxy):
    # Sent straight to the portal, not through the proxy.
    assert client_ip(request_from("203.0.113.9", "198.51.100.7")) == "203.0.113.9"
    # Sent through a proxy that appends to the header: only the proxy's entry counts.
    assert client_ip(request_from(PROXY, "10.0.0.5, 192.0.2.1, 203.0.113.9")) == "203.0.113.9"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/24", "fd00::/64"]
    assert client_ip(request_from("10.0.0.5", "192.0.2.1, 198.51.100.7, fd00::2")) == (
        "198.51.100.7"
    )
    # A request made by the proxies themselves (a health check): the furthest hop.
    assert client_ip(request_from("10.0.0.5", "10.0.0.9")) == "10.0.0.9"


def test_an_entry_that_is_no_address_stops_at_the_last_trusted_hop(behind_proxy):
    assert client_ip(request_from(PROXY, "198.51.100.7, unknown")) == PROXY
    assert client_ip(request_from(PROXY, "")) == PROXY
    assert client_ip(request_from(PROXY)) == PROXY


def test_forwarded_addresses_are_spelled_one_way(behind_proxy):
    assert client_ip(request_from(PROXY, "198.51.100.7:4711")) == "198.51.100.7"
    assert client_ip(request_from(PROXY, "[2001:0DB8::0001]:443")) == "2001:db8::1"
    assert client_ip(request_from(PROXY, "::ffff:198.51.100.7")) == "198.51.100.7"
    environ = {"REMOTE_ADDR": f"::ffff:{PROXY}", "HTTP_X_FORWARDED_FOR": "2001:db8::9"}
    assert client_ip_from(environ) == "2001:db8::9"


def test_the_audit_trail_asks_the_same_function():
    assert audit_client_ip is client_ip


def test_trusted_proxies_are_addresses_or_networks():
    assert [str(n) for n in parse_networks(["10.0.0.5", "10.1.0.0/16", "::1"])] == [
        "10.0.0.5/32",
        "10.1.0.0/16",
        "::1/128",
    ]
    for typo in ("proxy", "10.0.0.7/8", "10.0.0.0/33"):
        with pytest.raises(ValueError):
            parse_networks([typo])


# --- gunicorn -----------------------------------------------------------------------------------


def gunicorn_config(monkeypatch, **env) -> dict:
    for name in ("FORWARDED_ALLOW_IPS", "TRUSTED_PROXIES", "GUNICORN_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_trusts_no_forwarding_headers_by_default(monkeypatch):
    assert gunicorn_config(monkeypatch)["forwarded_allow_ips"] == ""


def test_gunicorn_trusts_the_portals_proxies_or_what_forwarded_allow_ips_says(monkeypatch):
    config = gunicorn_config(monkeypatch, TRUSTED_PROXIES="172.30.0.10")
    assert config["forwarded_allow_ips"] == "172.30.0.10"
    config = gunicorn_config(monkeypatch, TRUSTED_PROXIES="172.30.0.10", FORWARDED_ALLOW_IPS="")
    assert config["forwarded_allow_ips"] == ""


def test_gunicorn_workers_follow_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    assert gunicorn_config(monkeypatch)["workers"] == 4
    assert gunicorn_config(monkeypatch, GUNICORN_WORKERS="7")["workers"] == 7


def test_gunicorn_loads_the_application_once_for_all_its_workers(monkeypatch):
    assert gunicorn_config(monkeypatch)["preload_app"] is True
    assert gunicorn_config(monkeypatch, GUNICORN_PRELOAD="false")["preload_app"] is False


def test_a_gunicorn_worker_freezes_what_it_loaded(monkeypatch):
    frozen = []
    monkeypatch.setattr("portal.preload.freeze_what_is_loaded", lambda: frozen.append(True))
    gunicorn_config(monkeypatch)["post_worker_init"](object())
    assert frozen == [True]


def test_preloaded_gunicorn_serves_from_workers_sharing_the_masters_application(tmp_path):
    """The master holds the loaded application (its memory is large) and the workers it forks
    answer: nothing in loading opened a connection they would share."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))},
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_ENV_FILE": "",
        "DEBUG": "true",
        "SECRET_KEY": "test-" + "x" * 50,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        "GUNICORN_WORKERS": "2",
    }
    with gunicorn_serving(env, tmp_path / "gunicorn.log") as (_port, master_pid):
        master_kb = next(
            int(line.split()[1])
            for line in Path(f"/proc/{master_pid}/status").read_text().splitlines()
            if line.startswith("VmRSS")
        )
        assert master_kb > 60 * 1024, f"the master holds {master_kb} kB: the app was not loaded"
