"""Receiving studies over DICOM: who may open an association, and what becomes of each instance.

The listener (:mod:`dimse.listener`) speaks the protocol and asks this module two things. At
association request, :func:`accept_association` names the active :class:`DicomNode` the peer
calls as, or refuses (audited as ASSOCIATION_REFUSED). For each C-STORE, a :class:`Reception`
(one per association) puts the instance through the ingestion service the uploads use and
answers with the DIMSE status to return; when the association ends it audits what arrived, one
"DICOM Instances Transferred" event per study.

Nothing here logs or audits patient data: AE titles, addresses, node ids, UIDs and reasons only.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import BinaryIO, NoReturn

from django.utils.translation import gettext as _

from audit.models import Action, Outcome
from audit.services import canonical_ip, record
from dimse.models import DicomNode, parse_host
from studies.dicom_header import DicomHeader, FileRejected
from studies.services.ingestion import FileStatus, IngestionBatch, IngestResult, Transfer

logger = logging.getLogger(__name__)

# A-ASSOCIATE-RJ diagnostics (PS3.8 9.3.4), source "DICOM UL service-user".
CALLING_AE_NOT_RECOGNIZED = 0x03
CALLED_AE_NOT_RECOGNIZED = 0x07

# C-STORE statuses (PS3.4 B.2.3).
SUCCESS = 0x0000
ELEMENTS_DISCARDED = 0xB006
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000

# Error Comment (LO, at most 64 characters) per ingestion rejection code: short, English (the
# peer's log is read by its vendor's engineers), and free of patient data.
_COMMENTS = {
    "empty": "Empty data set",
    "too_large": "Data set larger than the portal's size limit",
    "unreadable": "Data set could not be read",
    "not_dicom": "Not a DICOM data set",
    "dicomdir": "A DICOMDIR is not an instance",
    "damaged": "Data set damaged or undecodable",
    "truncated": "Data set incomplete: ends before its pixel data",
    "no_pixel_data": "Image without pixel data",
    "impossible_image": "Image attributes do not match its pixel data",
    "missing_uid": "Study, Series or SOP Instance UID missing",
    "invalid_uid": "Study, Series or SOP Instance UID invalid",
    "conflict": "Study UID conflicts with a study held elsewhere",
    "instance_conflict": "SOP Instance UID already in another series",
    "series_conflict": "Series UID already in another study",
    "patient_mismatch": "Patient ID differs from the stored study's",
    "sop_mismatch": "SOP Class/Instance UID differs from the request",
}
_DIFFERENT_CONTENT = "Already stored with other content; kept stored copy"
STORAGE_FAILED_COMMENT = "Storage failed at the portal; send again later"


# --- Associations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AssociationRequest:
    """What the peer asked for, as the listener received it."""

    calling_ae: str
    called_ae: str
    address: str
    port: int | None = None

    def audit_details(self) -> dict[str, object]:
        return {
            "calling_ae": self.calling_ae,
            "called_ae": self.called_ae,
            "peer_address": canonical_ip(self.address) or self.address,
        }


class AssociationRefused(Exception):
    """The association is rejected (permanently) with ``diagnostic``; ``reason`` says why."""

    def __init__(self, reason: str, diagnostic: int):
        super().__init__(reason)
        self.reason = reason
        self.diagnostic = diagnostic


def _printable(value: object) -> str:
    # An AE title arrives from the network: keep the audit and the log to what it may contain.
    return "".join(ch if " " <= ch <= "~" else "?" for ch in str(value or "")).strip()[:16]


def accept_association(*, request: AssociationRequest, ae_title: str) -> DicomNode:
    """The active node ``request`` comes from, if the portal (``ae_title``) accepts it.

    Raises :class:`AssociationRefused`, after auditing ASSOCIATION_REFUSED, when the called AE
    title is not ``ae_title``, no active node has the calling AE title, or the node's host does
    not match the peer's address."""
    request = AssociationRequest(
        calling_ae=_printable(request.calling_ae),
        called_ae=_printable(request.called_ae),
        address=request.address,
        port=request.port,
    )
    if request.called_ae != ae_title.strip():
        _refuse(request, "called AE title is not the portal's", CALLED_AE_NOT_RECOGNIZED)
    node = (
        DicomNode.objects.select_related("organization", "location")
        .filter(ae_title=request.calling_ae, is_active=True)
        .first()
    )
    if node is None:
        _refuse(request, "no active DICOM node has the calling AE title", CALLING_AE_NOT_RECOGNIZED)
    if not host_matches(node.host, request.address):
        _refuse(
            request,
            "peer address does not match the node's host",
            CALLING_AE_NOT_RECOGNIZED,
            node=node,
        )
    return node


def _refuse(
    request: AssociationRequest, reason: str, diagnostic: int, *, node: DicomNode | None = None
) -> NoReturn:
    details = {**request.audit_details(), "reason": reason}
    if node is not None:
        details["node_id"] = node.pk
    record(
        action=Action.ASSOCIATION_REFUSED,
        actor_label=f"DICOM peer {request.calling_ae or '(no AE title)'}",
        outcome=Outcome.MINOR_FAILURE,
        organization_id=node.organization_id if node is not None else None,
        target_type="dicom_node",
        target_id=node.pk if node is not None else "",
        details=details,
    )
    logger.warning(
        "DICOM association refused (%s): calling AE %r, called AE %r, peer %s",
        reason,
        request.calling_ae,
        request.called_ae,
        request.address,
    )
    raise AssociationRefused(reason, diagnostic)


def host_matches(host: str, address: str) -> bool:
    """Whether a peer at ``address`` may be the node whose host is ``host`` (empty: any)."""
    expected = parse_host(host)
    if expected is None:
        return True
    try:
        peer = ipaddress.ip_address(canonical_ip(address) or "")
    except ValueError:
        return False
    if not isinstance(expected, str):
        return peer in expected
    try:
        # An IP address (IPv4 or IPv6) is the first item of its socket address, as a string.
        resolved = {
            info[4][0] for info in socket.getaddrinfo(expected, None) if isinstance(info[4][0], str)
        }
    except OSError as error:
        # Refusing is the safe answer: a node pinned to a name must come from that name.
        logger.warning("DICOM node host %r does not resolve: %s", expected, error)
        return False
    return any(canonical_ip(candidate) == str(peer) for candidate in resolved)


# --- Instances --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreStatus:
    """The C-STORE response: ``status`` and, for a warning or failure, an Error Comment."""

    status: int
    comment: str = ""

    @property
    def is_success(self) -> bool:
        return self.status == SUCCESS


def node_label(node: DicomNode) -> str:
    """How the audit trail names a node as the actor."""
    return f"DICOM node {node.ae_title}"


class Reception:
    """What one association delivers: each instance ingested (committed) before its status is
    answered, into the node's organization and location; audited by :meth:`close` once per
    study.

    If the listener's process dies mid-association, the instances already answered stay stored
    but their "Instances Transferred" events are not written (they are written when the
    association ends). The peer saw no release, so it sends again; the new association stores
    them as duplicates and audits them then.
    """

    def __init__(self, *, node: DicomNode, request: AssociationRequest):
        self.node = node
        self.request = request
        self.batch = IngestionBatch(
            organization=node.organization,
            location=node.location,
            actor_label=node_label(node),
            transfer=Transfer(
                protocol="DIMSE",
                details={
                    "ae_title": node.ae_title,
                    "node_id": node.pk,
                    "peer_address": canonical_ip(request.address) or request.address,
                },
            ),
        )

    def store(self, stream: BinaryIO, *, sop_class_uid: str, sop_instance_uid: str) -> StoreStatus:
        """Ingest one C-STORE data set (Part-10 bytes: file meta, then the data set as sent).
        Never raises: a failure is a status."""
        sop_class_uid = str(sop_class_uid or "").strip()
        sop_instance_uid = str(sop_instance_uid or "").strip()

        def matches_request(header: DicomHeader) -> None:
            if header.sop_class_uid != sop_class_uid or header.sop_uid != sop_instance_uid:
                raise FileRejected(
                    "sop_mismatch",
                    _(
                        "The data set's SOP Class or SOP Instance UID differs from the one its "
                        "C-STORE request announced, so it was not stored."
                    ),
                )

        try:
            outcome = self.batch.add(
                sop_instance_uid or "(no SOP Instance UID)", stream, check=matches_request
            )
        except Exception:
            logger.exception(
                "C-STORE from DICOM node %s (id %s) could not be stored",
                self.node.ae_title,
                self.node.pk,
            )
            return StoreStatus(OUT_OF_RESOURCES, STORAGE_FAILED_COMMENT)
        if outcome.status == FileStatus.STORED:
            return StoreStatus(SUCCESS)
        if outcome.status == FileStatus.DUPLICATE:
            if outcome.code == "different_content":
                logger.warning(
                    "C-STORE from DICOM node %s (id %s): SOP Instance %s already stored with "
                    "different content; the stored copy was kept",
                    self.node.ae_title,
                    self.node.pk,
                    outcome.sop_instance_uid,
                )
                return StoreStatus(ELEMENTS_DISCARDED, _DIFFERENT_CONTENT)
            return StoreStatus(SUCCESS)
        comment = _COMMENTS.get(outcome.code, f"Data set refused ({outcome.code})")[:64]
        if outcome.code == "sop_mismatch":
            status = DATA_SET_DOES_NOT_MATCH_SOP_CLASS
        elif outcome.code == "too_large":
            status = OUT_OF_RESOURCES
        else:
            status = CANNOT_UNDERSTAND
        logger.warning(
            "C-STORE from DICOM node %s (id %s) refused: %s (%s, status 0x%04X)",
            self.node.ae_title,
            self.node.pk,
            comment,
            outcome.code,
            status,
        )
        return StoreStatus(status, comment)

    def close(self) -> IngestResult:
        """Audit what the association delivered (once). Never raises: the association is over
        whatever happens, and what was stored stays stored."""
        try:
            return self.batch.finish()
        except Exception:
            result = self.batch.result
            logger.exception(
                "DICOM node %s (id %s): the audit events of an association (%d stored, %d "
                "duplicate(s), %d refused) could not be written",
                self.node.ae_title,
                self.node.pk,
                len(result.stored),
                len(result.duplicates),
                len(result.rejected),
            )
            return result
