"""``manage.py dicom_listener``: receive studies from PACS and modalities (C-ECHO, C-STORE).

Runs until SIGTERM or SIGINT (Ctrl-C), then stops accepting associations, lets those in
progress finish for a few seconds and exits. Whatever a peer was told is stored is committed.
"""

import logging
import signal
import threading
from types import FrameType

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from dimse import listener
from dimse.models import DicomNode
from portal.preload import freeze_what_is_loaded


class Command(BaseCommand):
    help = (
        "Run the DICOM listener: C-ECHO, and C-STORE from the active DICOM nodes (Django admin) "
        "into their locations' worklists. Stops on SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host",
            default=settings.DICOM_LISTENER_HOST,
            help="Address to listen on (default: DICOM_LISTENER_HOST, %(default)s). "
            "0.0.0.0 listens on every interface.",
        )
        parser.add_argument(
            "--port",
            type=int,
            default=settings.DICOM_LISTENER_PORT,
            help="TCP port (default: DICOM_LISTENER_PORT, %(default)s).",
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=10.0,
            help="Seconds running associations get to finish at shutdown (default: 10).",
        )

    def handle(
        self, *args: object, host: str, port: int, grace: float, verbosity: int, **options: object
    ) -> None:
        if verbosity < 3:
            # pynetdicom describes every PDU and message at INFO and DEBUG; the portal's own
            # logger says what matters: associations admitted, refused and ended, refused instances.
            logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        try:
            server = listener.make_server(host, port)
        except OSError as error:
            raise CommandError(
                f"Cannot listen on {host}:{port}: {error.strerror or error}. Is another listener "
                "running, or is the port reserved (ports below 1024 need root)?"
            ) from error

        stopping = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        previous = {
            signum: signal.signal(signum, request_stop)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        nodes = DicomNode.objects.filter(is_active=True).count()
        connections.close_all()  # this thread only waits from here on
        self.stdout.write(
            f"DICOM listener {settings.DICOM_AE_TITLE} on {server.host}:{server.port}: C-ECHO and "
            f"C-STORE ({len(listener.storage_sop_classes())} storage SOP classes) from "
            f"{nodes} active DICOM node(s). Stop with Ctrl-C or SIGTERM."
        )
        # Loaded, the listener leaves what it holds out of Python's collections: a full one
        # scanned it all, some 90 ms every 12 seconds while associations stored (portal.preload).
        freeze_what_is_loaded()
        listener.start_in_thread(server)
        try:
            while not stopping.wait(1.0):
                pass
        finally:
            self.stdout.write("DICOM listener stopping...")
            listener.stop(server, grace=grace)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.stdout.write("DICOM listener stopped.")
