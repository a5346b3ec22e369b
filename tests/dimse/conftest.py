"""The DIMSE tests' world: a DICOM node of St. Elsewhere (the suite's ``org``) filing into its
Radiology location, and the real listener serving in this process on a free port.

- ``node``: the active node ``MODALITY1`` (any address), filing into ``location``.
- ``listener``: :func:`dimse.listener.running` on 127.0.0.1, port 0. Its association threads
  use the database as another process would (``database_url``): the test is transactional (rows
  really commit), and on SQLite the test database moves from memory into a file for the test,
  so that threads write concurrently under SQLite's file locking rather than the in-memory
  database's shared cache. The file is on tmpfs when there is one: the listener commits each
  instance, and a disk's fsync per commit would make the suite crawl.
- ``Scu``: pynetdicom's AE as the sending modality; ``send`` C-STOREs files over one
  association, as they are on disk (pynetdicom's chunked sending: the data set bytes of the
  file, not a re-encoding), and returns each file's (status, error comment).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification

from audit.models import Action, AuditEvent
from dimse import listener as dimse_listener
from dimse.models import DicomNode
from studies.synthetic import make_series, to_bytes
from tests.integration.helpers import wait_until

PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
STUDY_UID = "1.2.826.0.1.3680043.8.498.9001"


@pytest.fixture
def node(org, location) -> DicomNode:
    return DicomNode.objects.create(organization=org, ae_title="MODALITY1", location=location)


@pytest.fixture
def listener(database_url, settings) -> Iterator[dimse_listener.ListenerServer]:
    settings.DICOM_AE_TITLE = "PORTAL"
    with dimse_listener.running("127.0.0.1", 0, grace=5) as server:
        yield server


@dataclass(frozen=True)
class Response:
    status: int
    comment: str = ""

    @property
    def accepted(self) -> bool:
        # Success, or a warning (0xB...): the instance is at the portal.
        return self.status == 0 or self.status >> 12 == 0xB


def file_context(path: Path) -> tuple[str, str] | None:
    """(SOP class, transfer syntax) as a sender proposes it for this file, or None when the
    file cannot be sent as it is (no file meta naming them)."""
    try:
        meta = read_file_meta_info(path)
        context = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        str(meta.MediaStorageSOPInstanceUID)
    except Exception:
        return None
    return context if all(context) else None


class Scu:
    """The sending side: an AE calling ``calling_ae`` towards ``called_ae``."""

    def __init__(self, server, calling_ae: str = "MODALITY1", called_ae: str = "PORTAL"):
        self.server = server
        self.calling_ae = calling_ae
        self.called_ae = called_ae

    def associate(self, contexts: Sequence[tuple[str, str | None]] = ((Verification, None),)):
        """An association proposing one presentation context per (SOP class, syntax)."""
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        for abstract, syntax in contexts:
            if syntax is None:
                ae.add_requested_context(abstract)
            else:
                ae.add_requested_context(abstract, syntax)
        return ae.associate(self.server.host, self.server.port, ae_title=self.called_ae)

    def send(self, paths: Sequence[Path], *, release: bool = True):
        """C-STORE each file over one association. Returns {path: Response, or None when no
        presentation context was accepted for it} and the association."""
        contexts = sorted({context for path in paths if (context := file_context(path))})
        assoc = self.associate(contexts)
        assert assoc.is_established, "the listener refused the association"
        responses: dict[Path, Response | None] = {}
        chunked = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            for path in paths:
                try:
                    answer = assoc.send_c_store(path)
                except (ValueError, AttributeError, InvalidDicomError):
                    # No file meta to send it by, or no accepted presentation context for it.
                    responses[path] = None
                    continue
                assert "Status" in answer, f"no answer for {path.name}"
                responses[path] = Response(int(answer.Status), str(answer.get("ErrorComment", "")))
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = chunked
        if release:
            assoc.release()
        return responses, assoc


@pytest.fixture
def scu(listener, node) -> Scu:
    return Scu(listener)


def ct_files(
    folder: Path, *, study_uid: str = STUDY_UID, slices: int = 3, patient_id: str = "PAT-9001"
) -> list[Path]:
    """A small generated CT series written as Part-10 files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    datasets = make_series(
        patient_name="Peeters^An",
        patient_id=patient_id,
        birth_date="19700101",
        sex="F",
        study_uid=study_uid,
        study_date="20240601",
        study_description="CT Thorax",
        accession="ACC9001",
        modality="CT",
        series_number=1,
        series_description="Thorax",
        slices=slices,
        rows=32,
        columns=32,
    )
    paths = []
    for index, dataset in enumerate(datasets, start=1):
        path = folder / f"{index:03d}.dcm"
        path.write_bytes(to_bytes(dataset))
        paths.append(path)
    return paths


def data_set_bytes(part10: bytes) -> bytes:
    """A Part-10 file's bytes after its file meta information: preamble, "DICM", then the
    meta group, whose first element (0002,0000) UL says how long the rest of it is."""
    assert part10[128:132] == b"DICM" and part10[132:138] == b"\x02\x00\x00\x00UL"
    (length,) = struct.unpack("<I", part10[140:144])
    return part10[144 + length :]


def received_events(count: int) -> list[AuditEvent]:
    """The INSTANCES_RECEIVED events, once ``count`` of them are written: the listener writes
    them in the association's thread after answering the release."""
    return wait_until(
        lambda: (
            events
            if len(events := list(AuditEvent.objects.filter(action=Action.INSTANCES_RECEIVED)))
            >= count
            else None
        ),
        timeout=10,
        interval=0.05,
        what=f"{count} INSTANCES_RECEIVED event(s)",
    )
