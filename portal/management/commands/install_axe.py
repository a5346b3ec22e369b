"""Fetch the pinned axe-core from the npm registry and unpack it into ``var/axe-core``.

axe-core (MPL-2.0) is the accessibility engine the browser test ``tests/browser/test_axe.py``
injects into the portal's pages; it is a tool of the tests, never served by the portal. It is
installed as OHIF is (``portal.npm``: ``npm pack``, the integrity check, the unpacking), by
``make install`` and ``make test``; nothing of it is committed or fetched at run time.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import npm

PACKAGE = "axe-core"
VERSION = "4.14.1"
INTEGRITY = (
    "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37Og"
    "udVGtQ=="
)


def pinned() -> npm.PinnedPackage:
    return npm.PinnedPackage(PACKAGE, VERSION, INTEGRITY, proof="axe.min.js")


def axe_dir() -> Path:
    return Path(settings.BASE_DIR) / "var" / "axe-core"


class Command(BaseCommand):
    help = f"Fetch {PACKAGE} {VERSION} (npm pack), check its integrity, unpack it into var/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-npm",
            action="store_true",
            help="without npm, say so and succeed (the accessibility test then cannot run)",
        )

    def handle(self, *args: object, if_npm: bool = False, **options: object) -> None:
        folder = axe_dir()
        package = pinned()
        if npm.is_installed(package, folder):
            self.stdout.write(f"axe-core {VERSION} is installed in {folder}.")
            return
        try:
            npm.install(package, folder)
        except npm.NpmMissing:
            message = (
                "npm is not installed, so axe-core is not: the accessibility browser test "
                "cannot run. Install Node.js and npm, then run `make axe`."
            )
            if if_npm:
                self.stdout.write(message)
                return
            raise CommandError(message) from None
        except npm.NpmError as refused:
            raise CommandError(str(refused)) from None
        self.stdout.write(f"axe-core {VERSION} installed in {folder}.")
