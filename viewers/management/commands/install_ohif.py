"""Fetch the pinned OHIF viewer from the npm registry and unpack it into ``OHIF_DIR``.

The package (``@ohif/app``, MIT) ships a prebuilt ``dist/``, which is what is installed, through
the portal's one installer of pinned npm packages (``portal.npm``: ``npm pack``, the integrity
check, the unpacking); nothing of it is committed, nothing is fetched at run time. Without npm,
``--if-npm`` says so and leaves the portal as it is (no OHIF entry points). The Dockerfile's node
stage packs the VERSION pinned here.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import npm

PACKAGE = "@ohif/app"
VERSION = "3.13.2"
INTEGRITY = (
    "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkyc"
    "ZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)


def pinned() -> npm.PinnedPackage:
    return npm.PinnedPackage(PACKAGE, VERSION, INTEGRITY, part="dist", proof="index.html")


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
        package = pinned()
        if npm.is_installed(package, folder):
            self.stdout.write(f"OHIF {VERSION} is installed in {folder}.")
            return
        try:
            npm.install(package, folder, tarball=tarball)
        except npm.NpmMissing:
            message = (
                "npm is not installed, so OHIF is not: the portal runs without its "
                "'Open in OHIF' entry points. Install Node.js and npm, then run "
                "`manage.py install_ohif` (or `make ohif`)."
            )
            if if_npm:
                self.stdout.write(message)
                return
            raise CommandError(message) from None
        except npm.NpmError as refused:
            raise CommandError(str(refused)) from None
        self.stdout.write(f"OHIF {VERSION} installed in {folder}.")
