"""Fetch the pinned axe-core from the npm registry and unpack it into ``var/axe-core``.

axe-core (MPL-2.0) is the accessibility engine the browser test ``tests/browser/test_axe.py``
injects into the portal's pages; it is a tool of the tests, never served by the portal. It is
installed as OHIF is (``portal.npm``: ``npm pack``, the integrity check, the unpacking), by
``make install`` and ``make test``; nothing of it is committed or fetched at run time.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

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


class Command(npm.InstallCommand):
    help = f"Fetch {PACKAGE} {VERSION} (npm pack), check its integrity, unpack it into var/."
    label = "axe-core"
    without_npm = (
        "the accessibility browser test cannot run. Install Node.js and npm, then run `make axe`."
    )

    def pinned(self) -> npm.PinnedPackage:
        return pinned()

    def folder(self) -> Path:
        return axe_dir()
