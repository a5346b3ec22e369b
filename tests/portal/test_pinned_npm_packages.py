"""axe-core is installed by the same pinned-package installer as OHIF (``portal.npm``): only the
tarball whose integrity is pinned is unpacked, and a second install of the pin does nothing."""

from __future__ import annotations

import io
import os

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from portal import npm
from portal.management.commands import install_axe
from tests.viewers.test_ohif import fake_npm, package


@pytest.fixture
def axe_folder(tmp_path, monkeypatch):
    folder = tmp_path / "axe-core"
    monkeypatch.setattr(install_axe, "axe_dir", lambda: folder)
    return folder


@pytest.fixture
def npm_packing(tmp_path, monkeypatch):
    """Puts a fake ``npm`` on PATH whose ``pack`` gives the tarball it is handed."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")

    def packing(tarball: bytes):
        fake_npm(bin_folder, tarball)
        return bin_folder / "package.tgz"

    return packing


def test_a_substituted_axe_core_is_refused(axe_folder, npm_packing):
    npm_packing(package({"package/axe.min.js": b"window.axe = 'not axe';"}))

    with pytest.raises(CommandError, match="not the pinned axe-core"):
        call_command("install_axe")
    assert not axe_folder.exists()


def test_the_pinned_axe_core_is_unpacked_once(axe_folder, npm_packing, monkeypatch):
    tarball = npm_packing(
        package({"package/axe.min.js": b"window.axe = {};", "package/package.json": b"{}"})
    )
    monkeypatch.setattr(install_axe, "INTEGRITY", npm.integrity_of(tarball))

    call_command("install_axe", stdout=io.StringIO())
    assert (axe_folder / "axe.min.js").read_bytes() == b"window.axe = {};"
    assert npm.installed_version(axe_folder).endswith(install_axe.INTEGRITY)

    tarball.unlink()  # a second install would fail to fetch: it is not attempted
    out = io.StringIO()
    call_command("install_axe", stdout=out)
    assert "is installed" in out.getvalue()
