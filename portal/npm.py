"""Pinned packages from the npm registry, installed at install time and never fetched at run time.

A package is named by its version and the integrity hash the registry publishes for it
(``npm view <name>@<version> dist.integrity``). ``npm pack`` fetches its tarball (or a tarball
packed elsewhere is given, as the Dockerfile's node stage does); a tarball whose hash is not the
pinned one is refused before anything is unpacked; the part the portal uses is unpacked beside
its destination and moved into place in one rename, with a marker naming what it is, so a
second install of the same pin does nothing. Used by ``install_ohif`` (the OHIF viewer) and
``install_axe`` (axe-core, which the accessibility browser test injects into pages).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

MARKER = ".installed"


class NpmError(Exception):
    """The package could not be fetched, or is not the pinned one; nothing was installed."""


class NpmMissing(NpmError):
    """npm is not on PATH."""


@dataclass(frozen=True)
class PinnedPackage:
    name: str
    version: str
    integrity: str
    # The folder of the package that is installed ("dist"), or "" for the whole package.
    part: str = ""
    # A file of the installed part whose presence says the install is whole.
    proof: str = "package.json"

    @property
    def pin(self) -> str:
        return f"{self.name}@{self.version} {self.integrity}"


def installed_version(folder: Path) -> str:
    """The pin the package in ``folder`` was installed from, or "" if none."""
    marker = Path(folder) / MARKER
    return marker.read_text().strip() if marker.is_file() else ""


def is_installed(package: PinnedPackage, folder: Path) -> bool:
    folder = Path(folder)
    return installed_version(folder) == package.pin and (folder / package.proof).is_file()


def integrity_of(path: Path) -> str:
    digest = hashlib.sha512(Path(path).read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def install(package: PinnedPackage, folder: Path, *, tarball: Path | None = None) -> None:
    """Install ``package`` into ``folder`` from ``tarball``, or from ``npm pack`` without one.
    Raises :class:`NpmMissing` without npm and :class:`NpmError` for anything else refused."""
    folder = Path(folder)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if tarball is None:
            tarball = _pack(package, work)
        found = integrity_of(tarball)
        if found != package.integrity:
            raise NpmError(
                f"{tarball.name} is not the pinned {package.name} {package.version}: its "
                f"integrity is {found}, not {package.integrity}. Nothing was installed."
            )
        prefix = "/".join(part for part in ("package", package.part) if part) + "/"
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            archive.extractall(work, members=members, filter="data")
        staged = folder.with_name(folder.name + ".new")
        shutil.rmtree(staged, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(work / prefix), staged)
        (staged / MARKER).write_text(package.pin + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        staged.rename(folder)


def _pack(package: PinnedPackage, work: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise NpmMissing(f"npm is not installed, so {package.name} is not.")
    fetched = subprocess.run(  # noqa: S603 - npm found on PATH, fixed arguments
        [npm, "pack", f"{package.name}@{package.version}", "--pack-destination", str(work)],
        cwd=work,
        capture_output=True,
        text=True,
    )
    if fetched.returncode != 0:
        raise NpmError(f"npm pack {package.name}@{package.version} failed: {fetched.stderr[-500:]}")
    (tarball,) = work.glob("*.tgz")
    return tarball


class InstallCommand(BaseCommand, metaclass=ABCMeta):
    """A management command that installs one pinned package (``install_ohif``, ``install_axe``):
    already installed, installed now, or, without npm, an error or (``--if-npm``) a note."""

    label: str  # how the messages name the package
    without_npm: str  # what is missing without it, and how to install it later

    @abstractmethod
    def pinned(self) -> PinnedPackage:
        """The package, its version and its integrity."""

    @abstractmethod
    def folder(self) -> Path:
        """Where it is unpacked."""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-npm",
            action="store_true",
            help="without npm, say so and succeed",
        )
        parser.add_argument(
            "--tarball",
            type=Path,
            help="install this package file (fetched by `npm pack` elsewhere) instead of "
            "fetching it; it is checked the same way",
        )

    def handle(
        self, *args: object, if_npm: bool = False, tarball: Path | None = None, **options: object
    ) -> None:
        package, folder = self.pinned(), self.folder()
        if is_installed(package, folder):
            self.stdout.write(f"{self.label} {package.version} is installed in {folder}.")
            return
        try:
            install(package, folder, tarball=tarball)
        except NpmMissing:
            message = f"npm is not installed, so {self.label} is not: {self.without_npm}"
            if if_npm:
                self.stdout.write(message)
                return
            raise CommandError(message) from None
        except NpmError as refused:
            raise CommandError(str(refused)) from None
        self.stdout.write(f"{self.label} {package.version} installed in {folder}.")
