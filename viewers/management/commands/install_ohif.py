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

from portal import npm

PACKAGE = "@ohif/app"
VERSION = "3.13.2"
INTEGRITY = (
    "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkyc"
    "ZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)


def pinned() -> npm.PinnedPackage:
    return npm.PinnedPackage(PACKAGE, VERSION, INTEGRITY, part="dist", proof="index.html")


class Command(npm.InstallCommand):
    help = f"Fetch {PACKAGE} {VERSION} (npm pack), check its integrity, unpack it into OHIF_DIR."
    label = "OHIF"
    without_npm = (
        "the portal runs without its 'Open in OHIF' entry points. Install Node.js and npm, then "
        "run `manage.py install_ohif` (or `make ohif`)."
    )

    def pinned(self) -> npm.PinnedPackage:
        return pinned()

    def folder(self) -> Path:
        return Path(settings.OHIF_DIR)
