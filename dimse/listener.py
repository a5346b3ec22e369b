"""The DIMSE listener: a pynetdicom Application Entity that answers C-ECHO and files every
instance it is sent (C-STORE) through :mod:`dimse.services`, one thread per association.

Public API (``manage.py dicom_listener``, the tests and the benchmarks use nothing else):

- :func:`make_server` binds and listens on ``(host, port)`` but does not serve yet, so that a
  caller may bind in one place (a network namespace entered by one thread) and serve from
  another thread. Port 0 picks a free port: read it from ``server.port``.
- :func:`start_in_thread` serves in a daemon thread and returns at once; :func:`serve` serves
  in the calling thread until :func:`stop` is called from another one.
- :func:`stop` stops accepting associations, lets running ones finish for a grace period,
  aborts what is left and closes the socket. Everything a peer was answered "stored" for is
  committed by then.
- :func:`running` is all of that as a context manager.

What it accepts: C-ECHO (Verification), and C-STORE for every storage SOP class pydicom knows
(:func:`storage_sop_classes`) in the transfer syntaxes of :data:`TRANSFER_SYNTAXES`: the ones
the portal can decode, uncompressed preferred, never a lossy syntax when the peer also offers a
lossless one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from socketserver import BaseRequestHandler
from typing import TYPE_CHECKING, cast

from django.conf import settings
from django.db import close_old_connections, connections
from pydicom._uid_dict import UID_dictionary  # pydicom's registry of UIDs, as pynetdicom reads it
from pydicom.dataset import Dataset
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MediaStorageDirectoryStorage,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, _config, evt, register_uid
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.service_class import ServiceClass, StorageServiceClass

# pynetdicom makes its SOP class names at import time, so its types cannot list them.
from pynetdicom.sop_class import Verification, uid_to_service_class  # type: ignore[attr-defined]
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

if TYPE_CHECKING:
    import ssl

    from pynetdicom.presentation import PresentationContext

from dimse.services import (
    OUT_OF_RESOURCES,
    STORAGE_FAILED_COMMENT,
    AssociationRefused,
    AssociationRequest,
    Reception,
    StoreStatus,
    accept_association,
)

logger = logging.getLogger(__name__)

# In order of preference: pynetdicom accepts, per presentation context, the first of these the
# peer proposes. Uncompressed first (any viewer reads it, frames are served without decoding),
# then lossless compression, and a lossy syntax only when the peer offers nothing else; Deflate
# and Big Endian last, as DICOMweb must transcode them anyway.
TRANSFER_SYNTAXES: list[UID] = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGLSLossless,
    JPEG2000Lossless,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    RLELossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    JPEG2000,
    HTJ2K,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]

# How long a peer may stay silent in an open association before it is aborted (seconds).
NETWORK_TIMEOUT = 60
# The largest PDU we accept, announced at association. Larger PDUs mean fewer round trips through
# pynetdicom's Python state machine; each is held in memory once on its way to a temporary file.
MAXIMUM_PDU_SIZE = 256 * 1024
DEFAULT_MAX_ASSOCIATIONS = 20
_POLL_INTERVAL = 0.2


def _pydicom_only_storage_classes() -> dict[str, UID]:
    """Storage SOP classes in pydicom's dictionary that pynetdicom has no service for: the
    retired and trial ones (old archives still send ultrasound and NM images under them) and
    a few non-medical ones. Keyword -> UID. Left out: the DICOMDIR (media only), Storage
    Commitment and print "storage" (other services), and the non-patient objects (hanging
    protocols, colour palettes...), which pynetdicom does know and which hold no study."""
    extra = {}
    for uid, (name, kind, _info, _retired, keyword) in UID_dictionary.items():
        if kind != "SOP Class" or "Storage" not in name or name.endswith("SOP Class"):
            continue
        if uid == MediaStorageDirectoryStorage or not keyword:
            continue
        if uid_to_service_class(uid) is ServiceClass:
            extra[keyword] = UID(uid)
    return extra


# Taken before registering them below, after which pynetdicom lists them as its own.
_EXTRA_STORAGE_CLASSES = _pydicom_only_storage_classes()
for _keyword, _uid in _EXTRA_STORAGE_CLASSES.items():
    # Without this, pynetdicom answers a C-STORE of a SOP class it does not list with an abort.
    register_uid(_uid, _keyword, StorageServiceClass)


def storage_sop_classes() -> list[UID]:
    """Every storage SOP class the listener accepts: pynetdicom's (the current standard's) and
    the retired and trial ones pydicom also knows."""
    uids = [cast(UID, context.abstract_syntax) for context in AllStoragePresentationContexts]
    known = set(uids)
    uids.extend(uid for uid in _EXTRA_STORAGE_CLASSES.values() if uid not in known)
    return uids


# --- The server -------------------------------------------------------------------------------


class _RequestHandler(RequestHandler):
    """Runs each association's clean-up in its own thread when it ends, however it ends
    (release, abort, timeout, dropped connection): pynetdicom raises no event for all of
    those, and Django's database connections belong to the thread that opened them."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        server = cast(ListenerServer, self.server)
        run = assoc.run

        def run_then_clean_up() -> None:
            try:
                run()
            finally:
                server._association_ended(assoc)

        assoc.run = run_then_clean_up  # type: ignore[method-assign]
        return assoc


class ListenerServer(ThreadedAssociationServer):
    """pynetdicom's threaded association server, with a stop that works whether or not it was
    ever started, and one :class:`Reception` per accepted association."""

    def __init__(
        self,
        ae: AE,
        address: tuple[str, int] | tuple[str, int, int, int],
        ae_title: str,
        contexts: list[PresentationContext],
        ssl_context: ssl.SSLContext | None = None,
        evt_handlers: list[evt.EventHandlerType] | None = None,
        request_handler: Callable[..., BaseRequestHandler] | None = None,
    ) -> None:
        self._receptions: dict[Association, Reception] = {}
        self._lock = threading.Lock()
        self._serve_requested = False
        super().__init__(
            ae, address, ae_title, contexts, ssl_context, evt_handlers, request_handler
        )

    @property
    def host(self) -> str:
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def serve_forever(self, poll_interval: float = _POLL_INTERVAL) -> None:
        self._serve_requested = True
        super().serve_forever(poll_interval)

    def shutdown(self) -> None:
        """Stop accepting associations and close the socket. (pynetdicom's own shutdown
        expects the server to be serving and registered with its AE.)"""
        if self._serve_requested:
            socketserver.BaseServer.shutdown(self)
        self.server_close()

    # Per association, in the association's thread.
    def _association_started(self, assoc: Association, reception: Reception) -> None:
        with self._lock:
            self._receptions[assoc] = reception

    def _reception(self, assoc: Association) -> Reception | None:
        with self._lock:
            return self._receptions.get(assoc)

    def _association_ended(self, assoc: Association) -> None:
        with self._lock:
            reception = self._receptions.pop(assoc, None)
        try:
            if reception is not None:
                result = reception.close()
                logger.info(
                    "DICOM association from %s (node id %s) ended: %d stored, %d duplicate(s), "
                    "%d refused",
                    reception.node.ae_title,
                    reception.node.pk,
                    len(result.stored),
                    len(result.duplicates),
                    len(result.rejected),
                )
        finally:
            connections.close_all()


def _on_requested(event: evt.Event, server: ListenerServer) -> None:
    """Accept or reject the association before pynetdicom negotiates it. pynetdicom swallows
    exceptions raised here and would go on to accept, so every failure is a rejection."""
    assoc = event.assoc
    primitive = assoc.requestor.primitive
    request = AssociationRequest(
        calling_ae=str(getattr(primitive, "calling_ae_title", "") or "").strip(),
        called_ae=str(getattr(primitive, "called_ae_title", "") or "").strip(),
        address=str(assoc.requestor.address),
        port=assoc.requestor.port,
    )
    try:
        node = accept_association(request=request, ae_title=server.ae_title)
        reception = Reception(node=node, request=request)
    except AssociationRefused as refused:
        _reject(assoc, result=0x01, diagnostic=refused.diagnostic)  # rejected-permanent
        return
    except Exception:
        logger.exception(
            "DICOM association from %r at %s could not be checked; rejected (transient)",
            request.calling_ae,
            request.address,
        )
        _reject(assoc, result=0x02, diagnostic=0x01)  # rejected-transient, no reason given
        return
    server._association_started(assoc, reception)
    # pynetdicom may still refuse it (too many associations, no presentation context in common).
    logger.info(
        "DICOM association request from node %s (id %s) at %s admitted",
        node.ae_title,
        node.pk,
        request.address,
    )


def _reject(assoc: Association, *, result: int, diagnostic: int) -> None:
    # As pynetdicom's own negotiation rejects: A-ASSOCIATE-RJ from the service user, then the
    # association ends (the reactor sees it rejected and does not negotiate).
    assoc.acse.send_reject(result, 0x01, diagnostic)
    assoc.kill()


def _on_store(event: evt.Event, server: ListenerServer) -> Dataset:
    reception = server._reception(event.assoc)
    response = Dataset()
    if reception is None:  # not accepted by _on_requested: cannot happen, but never store
        response.Status = OUT_OF_RESOURCES
        return response
    # As Django does per request: a connection the database dropped is replaced, not reused.
    close_old_connections()
    # pynetdicom calls this handler for EVT_C_STORE alone, whose request is a C-STORE.
    request = cast(C_STORE, event.request)
    # The data set exactly as the peer encoded it, behind file meta information naming the
    # negotiated transfer syntax: in the temporary file pynetdicom spooled it into as it arrived
    # (make_server turns that on), else from memory.
    path = event.dataset_path
    try:
        with open(path, "rb") if path else io.BytesIO(event.encoded_dataset()) as stream:
            status = reception.store(
                stream,
                sop_class_uid=str(request.AffectedSOPClassUID or ""),
                sop_instance_uid=str(request.AffectedSOPInstanceUID or ""),
            )
    except OSError:  # the temporary file pynetdicom received the data set into
        logger.exception("A received C-STORE data set could not be read back")
        status = StoreStatus(OUT_OF_RESOURCES, STORAGE_FAILED_COMMENT)
    response.Status = status.status
    if status.comment:
        response.ErrorComment = status.comment
    return response


def make_server(
    host: str | None = None,
    port: int | None = None,
    *,
    ae_title: str | None = None,
    max_associations: int = DEFAULT_MAX_ASSOCIATIONS,
) -> ListenerServer:
    """A listener bound to ``(host, port)`` (defaults: settings.DICOM_LISTENER_HOST and
    DICOM_LISTENER_PORT; port 0 picks a free one) as ``ae_title`` (settings.DICOM_AE_TITLE).
    The socket listens, so peers may connect, but no association is served before
    :func:`start_in_thread` or :func:`serve`."""
    host = settings.DICOM_LISTENER_HOST if host is None else host
    port = settings.DICOM_LISTENER_PORT if port is None else port
    ae_title = ae_title or settings.DICOM_AE_TITLE
    # Received data sets are written to a temporary file as they arrive rather than gathered in
    # memory: a 1 GB cine must not sit in RAM once per association. (A pynetdicom setting for
    # the whole process; C-STORE handlers that read event.dataset still work.)
    _config.STORE_RECV_CHUNKED_DATASET = True

    ae = AE(ae_title=ae_title)
    ae.maximum_associations = max_associations
    ae.maximum_pdu_size = MAXIMUM_PDU_SIZE
    ae.network_timeout = NETWORK_TIMEOUT
    for uid in storage_sop_classes():
        ae.add_supported_context(uid, TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)

    server = ae.make_server(
        (host, port),
        server_class=ListenerServer,
        request_handler=_RequestHandler,
    )
    server = cast(ListenerServer, server)
    server.bind(evt.EVT_REQUESTED, _on_requested, [server])
    server.bind(evt.EVT_C_STORE, _on_store, [server])
    return server


def serve(server: ListenerServer) -> None:
    """Serve in the calling thread until :func:`stop` is called from another thread."""
    server.serve_forever()


def start_in_thread(server: ListenerServer) -> threading.Thread:
    """Serve in a daemon thread; returns once the thread is started."""
    # Marked before the thread runs, so that a stop() coming right after waits for it.
    server._serve_requested = True
    thread = threading.Thread(
        target=server.serve_forever, name=f"DicomListener@{server.port}", daemon=True
    )
    thread.start()
    return thread


def stop(server: ListenerServer, *, grace: float = 10.0) -> None:
    """Stop accepting associations; give established ones ``grace`` seconds to end, then abort
    what is left (a peer gets no answer for what was not acknowledged, and sends it again).
    Connections that never got as far as an association are dropped at once."""
    server.shutdown()
    deadline = time.monotonic() + grace
    for assoc in server.active_associations:
        if assoc.is_established:
            assoc.join(max(0.0, deadline - time.monotonic()))
    left = server.active_associations
    for assoc in left:
        if assoc.is_established:
            logger.warning("Aborting a DICOM association still open at shutdown")
        assoc.abort()
    # An aborted association's thread ends at once, but for one still waiting for its peer's
    # A-ASSOCIATE-RQ (pynetdicom waits out the ACSE timeout): daemon threads, nothing to save.
    deadline = time.monotonic() + 2
    for assoc in left:
        assoc.join(max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def running(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    grace: float = 10.0,
    ae_title: str | None = None,
    max_associations: int = DEFAULT_MAX_ASSOCIATIONS,
) -> Iterator[ListenerServer]:
    """A listener serving in a thread for the duration of the block."""
    server = make_server(host, port, ae_title=ae_title, max_associations=max_associations)
    start_in_thread(server)
    try:
        yield server
    finally:
        stop(server, grace=grace)
