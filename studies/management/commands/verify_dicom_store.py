"""``manage.py verify_dicom_store [--batch N] [--remove-incoming-older-than HOURS]``

Reads every stored instance's file back and checks it against what ingestion recorded when it
stored it: the file is there, and its size and SHA-256 are the instance's. The portal's store
(``studies.storage``) only ever shows a whole file under a name, but a store written before it,
by Django's storage, may hold part of a file under its name where a disk filled up or a worker
was killed mid-write (later uploads of the same bytes then took it as stored); a file may also
have been lost to the disk, or left out of a restored backup.

Exit status 0 and ``OK: N files verified`` when every file checks out, 1 and one line per
instance otherwise, so that cron or monitoring can alert on it. A missing file comes back when
its sender sends the instance again (ingestion stores the bytes of a duplicate whose file is
gone); a damaged one once it is removed, or from a backup. A line names the instance's id
and its storage name (a digest), never the patient. Run it at a quiet hour: it reads the whole
store. It changes nothing, except that ``--remove-incoming-older-than HOURS`` removes the
unfinished writes (``.incoming-…``) a killed worker left behind, once older than that (a younger
one may be a write in progress).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from django.core.files.storage import FileSystemStorage, storages
from django.core.management.base import BaseCommand, CommandError, CommandParser

from studies.models import Instance
from studies.storage import INCOMING_PREFIX


class Command(BaseCommand):
    help = (
        "Check every stored DICOM file against its instance (present, same size, same SHA-256); "
        "exit status 1 if any is not."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch", type=int, default=1000, help="instances read per query (default 1000)"
        )
        parser.add_argument(
            "--remove-incoming-older-than",
            type=float,
            metavar="HOURS",
            help="remove unfinished writes older than this many hours",
        )

    def handle(
        self,
        *args: object,
        batch: int,
        remove_incoming_older_than: float | None,
        **options: object,
    ) -> None:
        if batch < 1:
            raise CommandError("--batch must be a positive number of instances.")
        if remove_incoming_older_than is not None and remove_incoming_older_than < 0:
            raise CommandError("--remove-incoming-older-than must be zero or more hours.")
        storage = storages["dicom"]
        verified, problems = 0, []
        stored = Instance.objects.order_by("pk").only("pk", "file", "sha256", "size")
        after = 0
        while chunk := list(stored.filter(pk__gt=after)[:batch]):
            after = chunk[-1].pk
            for instance in chunk:
                problem = _problem(storage, instance)
                if problem:
                    problems.append(f"Instance {instance.pk} ({instance.file}): {problem}")
                else:
                    verified += 1
        if remove_incoming_older_than is not None:
            removed = _remove_incoming(storage, remove_incoming_older_than * 3600)
            self.stdout.write(f"{removed} unfinished write(s) removed.")
        for line in problems:
            self.stderr.write(line)
        if problems:
            raise CommandError(
                f"{len(problems)} stored file(s) missing or not what was stored; "
                f"{verified} verified. Restore them from a backup, or remove the damaged files "
                "and have the sender send those instances again: an instance whose file is "
                "missing is stored again when it arrives again.",
                returncode=1,
            )
        self.stdout.write(f"OK: {verified} files verified.")


def _problem(storage, instance: Instance) -> str:
    """What is wrong with the instance's stored file, or "" when it is what was stored."""
    try:
        with storage.open(instance.file, "rb") as stored:
            digest = hashlib.file_digest(stored, "sha256")
            size = stored.tell()
    except FileNotFoundError:
        return "missing from the store"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if instance.size and size != instance.size:
        return f"{size} bytes where {instance.size} were stored"
    if instance.sha256 and digest.hexdigest() != instance.sha256:
        return "its bytes are not those stored (another SHA-256)"
    return ""


def _remove_incoming(storage, older_than_seconds: float) -> int:
    """Remove the unfinished writes older than ``older_than_seconds``; how many."""
    if not isinstance(storage, FileSystemStorage):
        return 0  # only a folder store writes under temporary names
    cutoff = time.time() - older_than_seconds
    removed = 0
    for path in Path(storage.location).rglob(f"{INCOMING_PREFIX}*"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue  # renamed into place or removed meanwhile
    return removed
