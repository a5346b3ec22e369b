"""OHIF's origin (``viewers.ohif``) and its installation (``install_ohif``)."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import tarfile
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from portal import npm
from viewers.management.commands import install_ohif
from viewers.ohif import OhifApplication, app_config

PORTAL = "https://portal.example.org"


@pytest.fixture
def dist(tmp_path) -> Path:
    """A stand-in for the package's dist/: its page, a bundle, and its own configuration."""
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "index.html").write_text("<!doctype html><title>OHIF</title>")
    (folder / "app.bundle.0f6159c5.js").write_text("console.log('ohif');")
    (folder / "app-config.js").write_text("window.config = {dataSources: ['public demo']};")
    (folder / "_redirects").write_text("/* /index.html 200")
    return folder


def get(app, path: str, method: str = "GET") -> tuple[str, dict, bytes]:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method}
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body


def test_the_configuration_reads_the_portal_alone(dist):
    app = OhifApplication(dist, portal_url=PORTAL, max_requests=8)
    status, headers, body = get(app, "/app-config.js")

    assert status == "200 OK" and headers["Cache-Control"] == "no-store"
    config = json.loads(body.decode().removeprefix("window.config = ").rstrip(";\n"))
    assert config == app_config(portal_url=PORTAL, max_requests=8)
    (source,) = config["dataSources"]
    assert source["namespace"].endswith("dataSourcesModule.dicomweb")
    roots = {source["configuration"][key] for key in ("qidoRoot", "wadoRoot", "wadoUriRoot")}
    assert roots == {f"{PORTAL}/dicomweb"}
    # Nothing read from the address or the user's disk; no study list; what the workers hold.
    assert "dangerouslyUseDynamicConfig" not in config
    assert "customizationUrlPrefixes" not in config
    assert config["showStudyList"] is False
    assert set(config["maxNumRequests"].values()) <= {4, 8}
    assert "public demo" not in body.decode()


def test_files_are_served_and_every_other_address_is_the_app(dist):
    app = OhifApplication(dist, portal_url=PORTAL, max_requests=8)

    status, headers, body = get(app, "/app.bundle.0f6159c5.js")
    assert status == "200 OK" and body == b"console.log('ohif');"
    assert "max-age=31536000" in headers["Cache-Control"]
    for address in ("/viewer", "/", "/_redirects"):
        status, headers, body = get(app, address)
        assert (status, body) == ("200 OK", b"<!doctype html><title>OHIF</title>"), address
        assert headers["Cache-Control"] == "no-store"
    assert get(app, "/viewer", method="POST")[0].startswith("405")


def test_every_answer_keeps_the_token_and_the_page_to_itself(dist):
    app = OhifApplication(dist, portal_url=PORTAL, max_requests=8)
    for address in ("/viewer", "/app-config.js", "/app.bundle.0f6159c5.js"):
        _status, headers, _body = get(app, address)
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Frame-Options"] == "DENY"
        policy = headers["Content-Security-Policy"]
        assert f"connect-src 'self' {PORTAL};" in policy
        assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy


def test_without_the_package_it_says_how_to_install_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="install_ohif"):
        OhifApplication(tmp_path / "missing", portal_url=PORTAL, max_requests=8)


# --- Installing it ------------------------------------------------------------------------------


def fake_npm(folder: Path, tarball: bytes) -> None:
    """An ``npm`` on PATH whose ``pack`` writes ``tarball`` where it is told."""
    (folder / "package.tgz").write_bytes(tarball)
    script = folder / "npm"
    script.write_text(
        '#!/bin/sh\n[ "$1" = pack ] || exit 9\ncp "$(dirname "$0")/package.tgz" "$4/ohif.tgz"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def package(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def test_a_tarball_that_is_not_the_pinned_release_is_refused(settings, tmp_path, monkeypatch):
    settings.OHIF_DIR = tmp_path / "ohif"
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    fake_npm(bin_folder, package({"package/dist/index.html": b"<title>not OHIF</title>"}))
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")

    with pytest.raises(CommandError, match="not the pinned"):
        call_command("install_ohif")
    assert not settings.OHIF_DIR.exists()


def test_the_pinned_release_is_unpacked(settings, tmp_path, monkeypatch):
    settings.OHIF_DIR = tmp_path / "ohif"
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    tarball = package(
        {
            "package/dist/index.html": b"<title>OHIF</title>",
            "package/dist/app.bundle.js": b"bundle",
            "package/package.json": b"{}",
        }
    )
    fake_npm(bin_folder, tarball)
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(install_ohif, "INTEGRITY", npm.integrity_of(bin_folder / "package.tgz"))

    call_command("install_ohif", stdout=io.StringIO())

    assert (settings.OHIF_DIR / "index.html").read_bytes() == b"<title>OHIF</title>"
    assert not (settings.OHIF_DIR / "package.json").exists()
    assert npm.installed_version(settings.OHIF_DIR).endswith(install_ohif.INTEGRITY)


def test_without_npm_the_portal_runs_without_ohif(settings, tmp_path, monkeypatch):
    settings.OHIF_DIR = tmp_path / "ohif"
    monkeypatch.setenv("PATH", str(tmp_path))
    out = io.StringIO()

    call_command("install_ohif", "--if-npm", stdout=out)

    assert "npm is not installed" in out.getvalue()
    with pytest.raises(CommandError, match="npm is not installed"):
        call_command("install_ohif")


def test_a_package_file_fetched_elsewhere_is_checked_the_same_way(settings, tmp_path):
    """The Dockerfile's ohif stage runs `npm pack`; the portal's stage installs its file."""
    settings.OHIF_DIR = tmp_path / "ohif"
    substituted = tmp_path / "ohif-app-3.13.2.tgz"
    substituted.write_bytes(package({"package/dist/index.html": b"<title>not OHIF</title>"}))

    with pytest.raises(CommandError, match="not the pinned"):
        call_command("install_ohif", "--tarball", str(substituted))
    assert not settings.OHIF_DIR.exists()


def test_the_dockerfile_fetches_the_pinned_version():
    root = Path(__file__).resolve().parents[2]
    dockerfile = (root / "Dockerfile").read_text()
    assert "FROM node:20-slim AS ohif" in dockerfile
    assert "install_ohif --tarball" in dockerfile
    # The version comes from the one place it is pinned.
    command = re.search(r"npm pack \"@ohif/app@\$\((sed .*)\)\"", dockerfile).group(1)
    found = subprocess.run(
        ["sh", "-c", command.replace("install_ohif.py", str(Path(install_ohif.__file__)))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found == install_ohif.VERSION


def test_the_token_in_ohifs_address_is_masked_in_the_logs():
    from portal.logging import mask_secrets

    line = '"GET /viewer?StudyInstanceUIDs=1.2.3&token=vt_Zm9vYmFy-_x HTTP/1.1" 200'
    assert mask_secrets(line) == '"GET /viewer?StudyInstanceUIDs=1.2.3&token=[masked] HTTP/1.1" 200'


def test_ohifs_page_runs_the_portals_session_script_first(dist):
    (dist / "index.html").write_text(
        '<html><head><script defer src="/app.bundle.0f6159c5.js"></script></head></html>'
    )
    app = OhifApplication(dist, portal_url=PORTAL, max_requests=8, token_seconds=900)

    page = get(app, "/viewer")[2].decode()
    assert page.index('<script src="/portal-session.js"></script>') < page.index("</head>")
    status, headers, script = get(app, "/portal-session.js")
    assert status == "200 OK" and headers["Content-Type"] == "application/javascript"
    assert f'"refresh": "{PORTAL}/viewers/ohif/token/"' in script.decode()
    assert '"seconds": 450' in script.decode()
