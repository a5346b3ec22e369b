"""``manage.py describe_plain_images [--batch N]``

Reads once the header of each image stored before instances kept a plain description
(``Instance.plain_image``), so that their frames, like those of every image stored since, render
without reading the header again. Run it once after upgrading, at a quiet hour: it reads every
such file's header (not its pixels), a batch at a time, and may be stopped and run again. An
image that is not plain (compressed, colour, with LUT sequences...) keeps rendering from its
header, as it did; a file missing from storage or unreadable is named and left as it was.
"""

from __future__ import annotations

from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError

from portal import decisions
from studies.dicom_header import FileRejected, read_header
from studies.models import Instance


class Command(BaseCommand):
    help = (
        "Read the header of each image stored before instances kept a plain description, so "
        "that its frames render without reading it again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--batch",
            type=int,
            default=500,
            help="instances read and saved together (default 500)",
        )

    def handle(self, *args, batch: int, verbosity: int, **options) -> None:
        if batch < 1:
            raise CommandError("--batch must be a positive number of instances.")
        storage = storages["dicom"]
        waiting = Instance.objects.filter(has_pixels=True, plain_image__isnull=True).order_by("pk")
        described = other = failed = 0
        after = 0
        while chunk := list(waiting.filter(pk__gt=after).only("pk", "file", "size")[:batch]):
            after = chunk[-1].pk
            plain = []
            for instance in chunk:
                try:
                    with storage.open(instance.file, "rb") as stored:
                        header = read_header(stored, instance.size or storage.size(instance.file))
                except (OSError, FileRejected) as error:
                    failed += 1
                    self.stderr.write(f"Instance {instance.pk} ({instance.file}): {error}")
                    continue
                if header.plain_image is None:
                    other += 1
                    continue
                instance.plain_image = header.plain_image
                plain.append(instance)
            Instance.objects.bulk_update(plain, ["plain_image"])
            # A bulk update sends no signal: the facts remembered for viewers must be read again.
            decisions.changed(scope=decisions.STORED)
            described += len(plain)
            if verbosity > 1:
                self.stdout.write(f"{described + other + failed} instances read")
        self.stdout.write(
            f"{described} plain images described, {other} left to render from their header, "
            f"{failed} unreadable."
        )
