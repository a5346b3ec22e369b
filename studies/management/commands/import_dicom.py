"""``manage.py import_dicom PATH... --organization NAME --location NAME``

Imports DICOM files and folders (recursively) from the server's disks, e.g. a copied CD or an
export folder of a modality, through the same service as the browser upload. Each file is
stored or rejected on its own; the summary lists every rejected file with its reason.
"""

from __future__ import annotations

import getpass
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Location, Organization
from studies.services.ingestion import FileOutcome, FileStatus, IngestResult, ingest_files

BAR_WIDTH = 30
# Without a terminal (cron, CI logs) print a line at most this often, and at every 10 %.
PLAIN_INTERVAL_SECONDS = 10.0


class _Unreadable(io.BytesIO):
    """Stands in for a file that could not be opened, so ingestion reports it by name: reading
    it raises the error of the opening."""

    def __init__(self, error: OSError):
        super().__init__()
        self.error = error

    def read(self, size: int | None = -1) -> bytes:
        raise self.error


class _Progress:
    def __init__(self, out, total: int, *, enabled: bool):
        self.out = out
        self.total = total
        self.enabled = enabled and total > 0
        self.tty = out.isatty()
        self.done = 0
        self.counts = {FileStatus.STORED: 0, FileStatus.DUPLICATE: 0, FileStatus.REJECTED: 0}
        self._last_line = 0.0
        self._last_tenth = 0

    def _line(self) -> str:
        filled = int(BAR_WIDTH * self.done / self.total)
        return (
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total} files"
            f"  stored {self.counts[FileStatus.STORED]}"
            f"  duplicates {self.counts[FileStatus.DUPLICATE]}"
            f"  rejected {self.counts[FileStatus.REJECTED]}"
        )

    def _write(self, text: str, ending: str) -> None:
        # Plain text: the default error style would colour every progress line red.
        self.out.write(text, style_func=lambda message: message, ending=ending)
        self.out.flush()

    def update(self, outcome: FileOutcome) -> None:
        self.done += 1
        self.counts[outcome.status] += 1
        if not self.enabled:
            return
        if self.tty:
            # The last update ends the line, before ingestion logs its own summary line.
            self._write("\r" + self._line(), ending="\n" if self.done == self.total else "")
            return
        tenth = 10 * self.done // self.total
        now = time.monotonic()
        if tenth > self._last_tenth or now - self._last_line >= PLAIN_INTERVAL_SECONDS:
            self._last_tenth, self._last_line = tenth, now
            self._write(self._line(), ending="\n")

    def finish(self) -> None:
        if self.enabled and self.tty and self.done < self.total:
            self._write("", ending="\n")  # interrupted: leave the bar on its own line


class Command(BaseCommand):
    help = (
        "Import DICOM files and folders (recursively) into an organization, as received at one "
        "of its locations. New studies are filed in that location's worklist."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files or folders.")
        parser.add_argument("--organization", required=True, help="Organization name.")
        parser.add_argument("--location", required=True, help="Location name in it.")
        parser.add_argument(
            "--quiet", action="store_true", help="No progress bar; print only the summary."
        )

    def handle(self, *args, **options):
        organization = self._organization(options["organization"])
        location = self._location(organization, options["location"])
        files = self._collect(options["paths"])
        if not files:
            raise CommandError("No files found in the given paths.")

        progress = _Progress(self.stderr, len(files), enabled=not options["quiet"])
        try:
            result = ingest_files(
                files=self._open_each(files),
                organization=organization,
                location=location,
                actor_label=self._actor_label(),
                on_file=progress.update,
            )
        finally:
            progress.finish()
        self._summary(result)
        if not result.stored and result.rejected:
            raise CommandError(
                f"Nothing was stored: {len(result.rejected)} file(s) rejected.", returncode=1
            )

    # --- Arguments -----------------------------------------------------------------------------

    def _organization(self, name: str) -> Organization:
        organization = (
            Organization.objects.filter(name=name).first()
            or Organization.objects.filter(name__iexact=name).first()
        )
        if organization is None:
            known = ", ".join(Organization.objects.values_list("name", flat=True)[:20])
            raise CommandError(f"Unknown organization {name!r}. Known organizations: {known}.")
        return organization

    def _location(self, organization: Organization, name: str) -> Location:
        locations = Location.objects.filter(organization=organization)
        location = (
            locations.filter(name=name).first() or locations.filter(name__iexact=name).first()
        )
        if location is None:
            known = ", ".join(locations.values_list("name", flat=True)) or "none"
            raise CommandError(
                f"Unknown location {name!r} in {organization.name!r}. Its locations: {known}."
            )
        return location

    def _collect(self, paths: list[str]) -> list[tuple[str, Path]]:
        files: list[tuple[str, Path]] = []
        for raw in paths:
            path = Path(raw)
            if path.is_file():
                files.append((str(path), path))
            elif path.is_dir():
                for found in sorted(path.rglob("*")):
                    relative = found.relative_to(path)
                    # Hidden files are system clutter (.DS_Store, AppleDouble "._" copies).
                    if found.is_file() and not any(p.startswith(".") for p in relative.parts):
                        files.append((str(found), found))
            else:
                raise CommandError(f"No such file or folder: {raw}")
        return files

    @staticmethod
    def _open_each(files: list[tuple[str, Path]]) -> Iterator[tuple[str, IO[bytes]]]:
        # One file open at a time, however many thousands there are.
        for name, path in files:
            try:
                handle = path.open("rb")
            except OSError as error:
                yield name, _Unreadable(error)
                continue
            with handle:
                yield name, handle

    @staticmethod
    def _actor_label() -> str:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "unknown user"
        return f"import_dicom ({who})"[:150]

    # --- Output --------------------------------------------------------------------------------

    def _summary(self, result: IngestResult) -> None:
        differing = len(result.differing_duplicates)
        lines = [
            f"Stored: {len(result.stored)}",
            f"Duplicates (already stored): {len(result.duplicates)}"
            + (f", {differing} with different content (stored copy kept)" if differing else ""),
            f"Rejected: {len(result.rejected)}",
        ]
        lines.extend(f"  {rejection.name}: {rejection.reason}" for rejection in result.rejected)
        lines.append(f"Studies: {len(result.studies)}")
        style = self.style.SUCCESS if result.stored and not result.rejected else self.style.WARNING
        self.stdout.write(lines[0], style_func=style)
        for line in lines[1:]:
            self.stdout.write(line)
