"""A long answer streamed by a gunicorn sync worker: a study retrieved over WADO-RS by a client
that reads slowly takes longer than the worker timeout, and arrives whole; a client that stops
reading holds the worker no longer than that timeout.

Gunicorn's master ends a sync worker it has not heard from for ``GUNICORN_TIMEOUT`` seconds, and
a sync worker reports only between requests (``portal.worker_heartbeat``). The portal is served
here as production serves it (``gunicorn.conf.py``, sync workers), with a timeout of 4 seconds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator

import pytest

from studies.models import Study
from studies.synthetic import make_series, to_bytes
from tests.accounts.helpers import api_token
from tests.dicomweb.conftest import ingest
from tests.servers import gunicorn_serving

pytestmark = pytest.mark.django_db(transaction=True)

STUDY_UID = "1.2.826.0.1.3680043.8.498.9301"
SLICES = 36  # 512 x 512 x 16 bits: 18 MB, four times what loopback buffers hold at most
# Above the 2 s gunicorn lingers after an answer for the client to close (util.close_graceful),
# in which a worker does not report either.
TIMEOUT_SECONDS = 4


@pytest.fixture
def long_study(org, location) -> Study:
    datasets = make_series(
        patient_name="Lang^Otto",
        patient_id="PAT-9301",
        birth_date="19480512",
        sex="M",
        study_uid=STUDY_UID,
        study_date="20240902",
        study_description="CT Abdomen",
        accession="ACC9301",
        modality="CT",
        series_number=1,
        series_description="Abdomen axial",
        slices=SLICES,
        rows=512,
        columns=512,
    )
    ingest(org, location, {f"IM{n}": to_bytes(ds) for n, ds in enumerate(datasets)})
    return Study.objects.get(study_uid=STUDY_UID)


@pytest.fixture
def gunicorn(database_url, settings, tmp_path):
    """The portal under gunicorn, on this test's database and DICOM storage: its port, and its
    log, read back for the master's verdicts on its worker."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))},
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DEBUG": "true",
        "DATABASE_URL": database_url,
        "DICOM_STORAGE_ROOT": settings.STORAGES["dicom"]["OPTIONS"]["location"],
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        "CACHE_URL": "",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_TIMEOUT": str(TIMEOUT_SECONDS),
    }
    log_path = tmp_path / "gunicorn.log"
    with gunicorn_serving(env, log_path) as (port, _master_pid):
        yield port, log_path


@contextlib.contextmanager
def _slow_line(port: int, request_line: str, headers: str = "") -> Iterator[socket.socket]:
    """A connection with a 32 kB receive buffer, the request sent on it."""
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        client.connect(("127.0.0.1", port))
        head = f"{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}"
        client.sendall(f"{head}\r\n".encode())
        yield client


def _retrieve(user) -> tuple[str, str]:
    """The request line and headers of a WADO-RS retrieve of the study, with ``user``'s token."""
    return (
        f"GET /dicomweb/studies/{STUDY_UID}",
        f"Authorization: Bearer {api_token(user)}\r\n"
        'Accept: multipart/related; type="application/dicom"\r\n',
    )


def _exchange(port: int, request_line: str, *, read_every: float, headers: str = "") -> bytes:
    """Send one request and read the answer to its end, ``read_every`` seconds between reads of
    32 kB (a slow line)."""
    received = bytearray()
    with _slow_line(port, request_line, headers) as client:
        try:
            while chunk := client.recv(32 * 1024):
                received += chunk
                time.sleep(read_every)
        except ConnectionResetError:
            pass
    return bytes(received)


def _dechunked(data: bytes) -> bytes:
    """The body of a chunked answer; fails on one cut short (no last, empty chunk)."""
    body = bytearray()
    position = 0
    while True:
        size_end = data.index(b"\r\n", position)
        size = int(data[position:size_end].split(b";")[0], 16)
        if size == 0:
            return bytes(body)
        start = size_end + 2
        assert len(data) >= start + size + 2, "the answer was cut short"
        body += data[start : start + size]
        position = start + size + 2


def test_a_retrieve_longer_than_the_worker_timeout_arrives_whole(alice, long_study, gunicorn):
    port, log_path = gunicorn
    started = time.monotonic()
    request_line, headers = _retrieve(alice)
    answer = _exchange(port, request_line, headers=headers, read_every=0.02)  # <= 1.6 MB/s
    seconds = time.monotonic() - started

    head, _, chunked = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:300]
    assert b"transfer-encoding: chunked" in head.lower()
    body = _dechunked(chunked)
    assert seconds > 2 * TIMEOUT_SECONDS  # the case in point: longer than the timeout
    boundary = next(
        part.split(b"=", 1)[1].strip(b'"')
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-type:")
        for part in line.split(b";")
        if part.strip().startswith(b"boundary=")
    )
    assert body.count(b"--" + boundary + b"\r\n") == SLICES
    assert body.rstrip().endswith(b"--" + boundary + b"--")
    assert len(body) > SLICES * 512 * 512 * 2
    assert "WORKER TIMEOUT" not in log_path.read_text()


def test_a_client_that_stops_reading_holds_the_worker_no_longer_than_the_timeout(
    alice, long_study, gunicorn
):
    port, log_path = gunicorn
    request_line, headers = _retrieve(alice)
    with _slow_line(port, request_line, headers) as client:
        client.recv(1024)  # the answer has begun; nothing more is read
        deadline = time.monotonic() + 6 * TIMEOUT_SECONDS
        while "WORKER TIMEOUT" not in log_path.read_text():
            assert time.monotonic() < deadline, "the stalled answer held the worker on"
            time.sleep(0.2)
    # A new worker serves the next request.
    assert b" 200 " in _exchange(port, "GET /healthz", read_every=0)[:20]
