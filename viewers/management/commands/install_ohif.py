"""Fetch the pinned OHIF viewer from the npm registry and unpack it into ``OHIF_DIR``.

The package (``@ohif/app``, MIT) ships a prebuilt ``dist/``. It is fetched at install time with
``npm pack``, checked against the integrity hash pinned here (a changed or substituted tarball
is refused), and unpacked; nothing of it is committed, nothing is fetched at run time. Without
npm, ``--if-npm`` says so and leaves the portal as it is (no OHIF entry points).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

PACKAGE = "@ohif/app"
VERSION = "3.13.2"
INTEGRITY = (
    "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkyc"
    "ZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)
MARKER = ".installed"


def installed_version(folder: Path) -> str:
    marker = folder / MARKER
    return marker.read_text().strip() if marker.is_file() else ""


def integrity_of(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


class Command(BaseCommand):
    help = f"Fetch {PACKAGE} {VERSION} (npm pack), check its integrity, unpack it into OHIF_DIR."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-npm",
            action="store_true",
            help="without npm, say so and succeed (the portal then runs without OHIF)",
        )
        parser.add_argument(
            "--tarball",
            type=Path,
            help="install this package file (fetched by `npm pack` elsewhere, as the "
            "Dockerfile's ohif stage does) instead of fetching it; it is checked the same way",
        )

    def handle(
        self, *args: object, if_npm: bool = False, tarball: Path | None = None, **options: object
    ) -> None:
        folder = Path(settings.OHIF_DIR)
        wanted = f"{PACKAGE}@{VERSION} {INTEGRITY}"
        if installed_version(folder) == wanted and (folder / "index.html").is_file():
            self.stdout.write(f"OHIF {VERSION} is installed in {folder}.")
            return
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            if tarball is None:
                tarball = self._fetch(work, if_npm=if_npm)
                if tarball is None:
                    return
            found = integrity_of(tarball)
            if found != INTEGRITY:
                raise CommandError(
                    f"{tarball.name} is not the pinned {PACKAGE} {VERSION}: its integrity is "
                    f"{found}, not {INTEGRITY}. Nothing was installed."
                )
            with tarfile.open(tarball) as archive:
                members = [m for m in archive.getmembers() if m.name.startswith("package/dist/")]
                archive.extractall(work, members=members, filter="data")
            staged = folder.with_name(folder.name + ".new")
            shutil.rmtree(staged, ignore_errors=True)
            shutil.move(str(work / "package" / "dist"), staged)
            (staged / MARKER).write_text(wanted + "\n")
            shutil.rmtree(folder, ignore_errors=True)
            folder.parent.mkdir(parents=True, exist_ok=True)
            staged.rename(folder)
        self.stdout.write(f"OHIF {VERSION} installed in {folder}.")

    def _fetch(self, work: Path, *, if_npm: bool) -> Path | None:
        """``npm pack`` the pinned release into ``work``; None (said) without npm."""
        npm = shutil.which("npm")
        if npm is None:
            message = (
                "npm is not installed, so OHIF is not: the portal runs without its "
                "'Open in OHIF' entry points. Install Node.js and npm, then run "
                "`manage.py install_ohif` (or `make ohif`)."
            )
            if if_npm:
                self.stdout.write(message)
                return None
            raise CommandError(message)
        fetched = subprocess.run(  # noqa: S603 - npm found on PATH, fixed arguments
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(work)],
            cwd=work,
            capture_output=True,
            text=True,
        )
        if fetched.returncode != 0:
            raise CommandError(f"npm pack {PACKAGE}@{VERSION} failed: {fetched.stderr[-500:]}")
        (tarball,) = work.glob("*.tgz")
        return tarball
