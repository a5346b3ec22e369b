"""The portal's DICOMweb and DICOM listener next to Orthanc's, measured in one run.

    sudo .venv/bin/python bench/dicomweb_bench.py                    # about 5 minutes
    .venv/bin/python bench/dicomweb_bench.py --duration 3 --rounds 1 --store-instances 20
    .venv/bin/python bench/dicomweb_bench.py --database sqlite --json var/dicomweb.json

Eight measurements, each answered by both servers holding the same DICOM files:

- **QIDO-RS study search**: ``GET /studies?PatientName=<family name>*`` over 1,000 studies (50
  family names, 20 studies each, so each search answers 20 studies; the clients cycle through
  the names), ``Accept: application/dicom+json``. Issue 9's goal: at least 5 times Orthanc's
  requests per second.
- **REST API search**: the portal's own ``GET /api/v1/studies/?q=<family name>`` (the
  directory's search, a page of up to 50) against Orthanc's QIDO-RS above, for issue 13's
  search goals (run it with ``--studies 5000`` for the 5,000-study one).
- **The directory page**: what a browser shows for a search by name, ``GET /studies/?s=<key>``
  with a logged-in session (the directory keeps a search's criteria in the session, never in
  the address: the bench searches the last 20 family names once, the 20 a session keeps),
  against Orthanc's QIDO-RS for the same names. Issue 13's goals as for the REST search.
- **WADO-RS frame retrieval**: ``GET .../instances/{uid}/frames/1`` of a 512 x 512 CT (16-bit,
  stored uncompressed), asked as the raw frame in explicit VR little endian
  (``multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1``),
  cycling through 20 slices. Goal: at least Orthanc's requests per second.
- **WADO-RS rendered frames**: ``GET .../frames/1/rendered`` of the same slices as JPEG
  (``Accept: image/jpeg``), each already rendered once by the warm-up, as a viewer scrolling
  back finds them. Issue 13's goal: at least 1.3 times Orthanc's requests per second.
- **Cold rendered frames**: each round stores a new series of 200 512 x 512 CT slices in both
  servers over C-STORE, then asks each slice's ``frames/1/rendered`` (JPEG) once, in order, on
  4 connections, as the viewer opening the series fetches it: frames neither server rendered
  before. Issue 13's goal: at least Orthanc's frames per second.
- **C-STORE ingestion**: one association from pynetdicom sending a new series of
  ``--store-instances`` 512 x 512 CT slices (explicit VR little endian) to the portal's listener
  (``manage.py dicom_listener``) and, the same files, to Orthanc's DICOM server; instances per
  second from the association request to its release, every instance answered "success" and
  then found stored by each server. Issue 13's goal: at least Orthanc's instances per second.
- **STOW-RS ingestion**: the same kind of new series sent to each server's ``POST /studies``
  (``multipart/related; type="application/dicom"``), ``--stow-files`` files a request (10),
  one request after the other, as an uploader or a PACS forwarding over DICOMweb sends them
  (``--senders N``: N connections at once, each sending its share, as OHIF's upload of one
  file a request does);
  instances per second from the first request to the last answer, every answer 200 and every
  instance then found stored. Issue 13's goal: at least Orthanc's instances per second.
- **Upload API ingestion**: the same kind of new series sent to each server's own upload API:
  the portal's ``POST /api/v1/studies/upload/`` (``multipart/form-data``, field ``files``),
  ``--upload-files`` files a request (10, the batch the browser's upload sends), and Orthanc's
  REST ``POST /instances``, which takes one file a request; every answer 201 (200 from
  Orthanc) and every instance then found stored. Issue 13's goal: at least Orthanc's instances
  per second.

How the servers run: the portal as in production, gunicorn from ``gunicorn.conf.py`` (sync
workers) with ``DEBUG`` off, on PostgreSQL when it answers at ``--postgres-url`` (else SQLite),
in a throwaway database (``portal_dicomweb_bench``, or a file) migrated and seeded by this
script run again under ``portal.settings``; its API token obtained from ``/api/v1/auth/token/``.
Orthanc (Debian's 1.10 with its DICOMweb plugin 1.7) from ``tests/interop/orthanc.py``: inside
a private network namespace (it listens on every interface), authentication on (HTTP basic),
``RemoteAccessAllowed`` false, storage in the temporary folder, the DICOMweb plugin alone. The
files reach Orthanc through its REST API (``POST /instances``) and the portal through its
ingestion service, as an upload would.

Load: ``wrk`` when installed (``apt-get install wrk``; a C client leaves the two CPUs to the
servers), else Python threads (``--client python``); Orthanc's load client runs in Orthanc's
namespace, the portal's in the machine's. Every round measures both servers in turn, the first
alternating, after a warm-up; the report gives medians over the rounds and the median of the
per-round ratios. Everything (servers, namespace, database, folder) is removed at the end, also
after an error or Ctrl-C. Needs root (network namespaces). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    DEFAULT_POSTGRES,
    Gunicorn,
    LoadFailed,
    ThrowawayDatabase,
    bench_clinician,
    empty_redis,
    free_port,
    interleaved,
    load_average,
    median,
    postgres_answers,
    prepare_portal,
    production_env,
    run_python_load,
    run_wrk,
    say,
    wrk_available,
)
from dicomweb.multipart import (  # noqa: E402
    Part,
    multipart_content_type,
    multipart_stream,
    new_boundary,
)

BENCH_DATABASE = "portal_dicomweb_bench"
USERNAME = "bench-reader"
SCU_AE = "BENCHSCU"
PORTAL_AE = "PORTAL"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
RAW_FRAME = f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}'
UID_ROOT = "1.2.826.0.1.3680043.8.498.77"
FRAME_STUDY_UID = f"{UID_ROOT}.2"
FRAME_SLICES = 20
# The series a viewer walks through once, new to both servers: issue 13's cold frames.
COLD_SLICES = 200
# 50 family names of 20 studies each: a name search answers 20 studies, like the 20-study list
# issue 9 quotes for Orthanc.
FAMILY_NAMES = [
    "Adams", "Baker", "Carter", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ivanov",
    "Jansen", "Keller", "Lambert", "Martin", "Nielsen", "Olsen", "Peeters", "Quinn", "Roux",
    "Schmidt", "Thomas", "Urban", "Vogel", "Weber", "Xavier", "Young", "Zimmer", "Bernard",
    "Claes", "Dupont", "Engel", "Fontaine", "Girard", "Hoffmann", "Janssens", "Kowalski",
    "Leroy", "Maes", "Novak", "Osman", "Petit", "Richter", "Simon", "Torres", "Vermeulen",
    "Wouters", "Lemaire", "Mercier", "Nowak", "Rossi", "Silva",
]  # fmt: skip
GIVEN_NAMES = ["Anna", "Marc", "Sofia", "Luc", "Emma", "Noah", "Lea", "Tom", "Ines", "Sam"]
# Issue 9's goals for search and raw frames, issue 13's for rendered frames and ingestion.
GOALS = {
    "qido": 5.0,
    "rest": 5.0,
    "directory": 5.0,
    "frames": 1.0,
    "rendered": 1.3,
    "cold": 1.0,
    "store": 1.0,
    "stow": 1.0,
    "upload": 1.0,
}
# A search matching more studies than a page (the REST API's and the directory's: 50) asks both
# servers for a page, as a viewer's study list does: at 100,000 studies a name matches 2,000,
# and Orthanc answered no search for all of them within 8 s.
QIDO_LIMIT = 50
# A session keeps its 20 latest directory searches (studies.views.directory).
DIRECTORY_SEARCHES = 20
# Issue 13's search goals for a small archive, where Orthanc scans little: both searches at
# least half of Orthanc's QIDO-RS at 50 studies (5x from 1,000 studies up, as above).
SMALL_ARCHIVE_STUDIES = 50
# Issue 13's ingestion goal: at least Orthanc's instances per second on the same files.
INGESTION_GOAL = 1.0
SMALL_ARCHIVE_SEARCH_GOAL = 0.5


def goal_for(key: str, studies: int) -> float | None:
    if key in ("qido", "rest", "directory") and studies <= SMALL_ARCHIVE_STUDIES:
        return SMALL_ARCHIVE_SEARCH_GOAL
    return GOALS[key]


DEFAULT_CACHE = "redis://127.0.0.1:6379/14"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="QIDO-RS, WADO-RS frames and C-STORE: the portal next to Orthanc, one run.",
    )
    parser.add_argument(
        "--database",
        choices=("auto", "postgres", "sqlite"),
        default="auto",
        help="the portal's database; auto: PostgreSQL when it answers, else SQLite (auto)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"server for the {BENCH_DATABASE!r} database (default {DEFAULT_POSTGRES})",
    )
    parser.add_argument(
        "--cache-url",
        default=os.environ.get("BENCH_CACHE_URL", DEFAULT_CACHE),
        help=f"the portal's Redis cache, emptied first and at the end, as in production "
        f"(default {DEFAULT_CACHE}); '' for none (per-process caches, no remembered decisions)",
    )
    parser.add_argument("--studies", type=int, default=1000, help="studies to search (1000)")
    parser.add_argument(
        "--store-instances", type=int, default=100, help="instances per C-STORE association (100)"
    )
    parser.add_argument(
        "--stow-files",
        type=int,
        default=10,
        help="files a STOW-RS request, of the --store-instances a round (10)",
    )
    parser.add_argument(
        "--upload-files",
        type=int,
        default=10,
        help="files a request to the portal's upload API, of the --store-instances a round "
        "(10, the browser's upload's batch)",
    )
    parser.add_argument(
        "--senders",
        "--stow-senders",
        type=int,
        default=1,
        help="STOW-RS and upload requests in flight at once, each on its own connection, as "
        "OHIF's upload sends several (1)",
    )
    parser.add_argument(
        "--workers", type=int, help="gunicorn sync workers (default: gunicorn.conf.py's)"
    )
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="HTTP load client; auto: wrk when installed, else Python threads (auto)",
    )
    parser.add_argument(
        "--connections", type=int, default=8, help="concurrent HTTP connections (8)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per HTTP measurement (10)"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians reported (3)")
    parser.add_argument(
        "--measure",
        default=",".join(MEASUREMENTS),
        help=f"comma-separated measurements to run, of {', '.join(MEASUREMENTS)} (all)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every number as JSON")
    parser.add_argument(
        "--keep", action="store_true", help="keep the working folder (logs) at the end"
    )
    # Internal: the seeding subprocess.
    parser.add_argument("--seed", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.studies < len(FAMILY_NAMES) or args.studies % len(FAMILY_NAMES):
        parser.error(f"--studies must be a multiple of {len(FAMILY_NAMES)}")
    args.measure = [name.strip() for name in args.measure.split(",") if name.strip()]
    unknown = sorted(set(args.measure) - set(MEASUREMENTS))
    if unknown or not args.measure:
        parser.error(f"--measure takes names among {', '.join(MEASUREMENTS)}, not {unknown}")
    if (
        min(
            args.store_instances,
            args.stow_files,
            args.upload_files,
            args.senders,
            args.connections,
            args.rounds,
        )
        < 1
        or args.duration <= 0
    ):
        parser.error(
            "--store-instances, --stow-files, --upload-files, --senders, --connections, "
            "--rounds and "
            "--duration must be positive"
        )
    return args


# --- The DICOM files -------------------------------------------------------------------------


def _series(**values) -> list:
    from studies.synthetic import make_series

    common = dict(
        birth_date="19700101",
        sex="F",
        study_date="20240517",
        study_description="CT Thorax",
        accession="",
        modality="CT",
        series_number=1,
        series_description="Axial",
        slices=1,
        rows=16,
        columns=16,
    )
    common.update(values)
    return make_series(**common)


def write_files(folder: Path, datasets) -> list[Path]:
    from studies.synthetic import to_bytes

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset in datasets:
        path = folder / f"{dataset.SOPInstanceUID}.dcm"
        path.write_bytes(to_bytes(dataset))
        paths.append(path)
    return paths


def make_search_files(folder: Path, studies: int) -> list[Path]:
    """One small CT instance per study; study i belongs to patient i, whose family name is
    FAMILY_NAMES[i % 50]."""
    datasets = []
    for number in range(studies):
        family = FAMILY_NAMES[number % len(FAMILY_NAMES)]
        given = GIVEN_NAMES[(number // len(FAMILY_NAMES)) % len(GIVEN_NAMES)]
        datasets += _series(
            patient_name=f"{family}^{given}",
            patient_id=f"BENCH{number:05d}",
            study_uid=f"{UID_ROOT}.1.{number + 1}",
            study_date=f"20{10 + number % 14:02d}{1 + number % 12:02d}{1 + number % 28:02d}",
            accession=f"BA{number:06d}",
        )
    return write_files(folder, datasets)


def make_frame_files(folder: Path) -> list[Path]:
    return write_files(
        folder,
        _series(
            patient_name="Frames^Fiona",
            patient_id="BENCH-FRAMES",
            study_uid=FRAME_STUDY_UID,
            accession="BF000001",
            slices=FRAME_SLICES,
            rows=512,
            columns=512,
        ),
    )


def make_round_files(
    folder: Path, purpose: str, round_number: int, instances: int
) -> tuple[str, list[Path]]:
    """A new study of one series of ``instances`` 512 x 512 CT slices for one round of the
    ``purpose`` ("store", "cold", "stow" or "upload") measurement."""
    arc = {"store": 3, "cold": 4, "stow": 5, "upload": 6}[purpose]
    study_uid = f"{UID_ROOT}.{arc}.{round_number}"
    paths = write_files(
        folder / f"{purpose}-{round_number}",
        _series(
            patient_name=f"{purpose.title()}^Stella",
            patient_id=f"BENCH-{purpose.upper()}-{round_number}",
            study_uid=study_uid,
            accession=f"B{purpose[0].upper()}{round_number:06d}",
            slices=instances,
            rows=512,
            columns=512,
        ),
    )
    return study_uid, paths


# --- The seeding subprocess (under the portal's settings) -----------------------------------


def seed(folder: Path) -> None:
    import django

    django.setup()
    from django.db import connection

    from dimse.models import DicomNode
    from studies.services.ingestion import ingest_files

    org, location, _reader = bench_clinician(USERNAME, (folder / "password").read_text())
    DicomNode.objects.create(organization=org, ae_title=SCU_AE, location=location)
    paths = sorted((folder / "search").glob("*.dcm")) + sorted((folder / "frames").glob("*.dcm"))
    started = time.perf_counter()
    analyzed = 0
    seconds_analyzing = 0.0
    for start in range(0, len(paths), 100):
        batch = paths[start : start + 100]
        handles = [path.open("rb") for path in batch]
        try:
            result = ingest_files(
                files=[(path.name, handle) for path, handle in zip(batch, handles, strict=True)],
                organization=org,
                location=location,
            )
        finally:
            for handle in handles:
                handle.close()
        if result.rejected:
            raise RuntimeError(f"the portal refused bench files: {result.rejected[:3]}")
        say(f"  portal: {start + len(batch)} of {len(paths)} files ingested")
        ingested = start + len(batch)
        if connection.vendor == "postgresql" and ingested >= max(1000, 1.1 * analyzed):
            # Autovacuum's default: new statistics once a table grew by a tenth. Without them
            # the plans the connection keeps (prepared statements) stay those of the empty
            # tables, and each lookup scans what the load wrote so far (this machine's
            # PostgreSQL runs with autovacuum off; ingestion fell to 76 files/s at 50,000).
            # Timed with the load, though autovacuum would do it in a process of its own.
            analyzing = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
            seconds_analyzing += time.perf_counter() - analyzing
            analyzed = ingested
    seconds = time.perf_counter() - started
    # The statistics the database's planner works from, as autovacuum brings them up to date
    # within a minute or so of a bulk load in production. Measured straight after the load,
    # PostgreSQL would still plan the REST search for a near-empty table: a hash of every entry
    # of the worklist instead of the hundred studies the name matches (40 ms a search instead
    # of 20, in one process, at 5,000 studies).
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    (folder / "seeded").write_text(f"{seconds:.1f}")
    (folder / "analyzed").write_text(f"{seconds_analyzing:.1f}")


# --- Talking to the servers ------------------------------------------------------------------


def http_get(host: str, port: int, path: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def portal_token(port: int, password: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(
            "POST",
            "/api/v1/auth/token/",
            body=json.dumps({"username": USERNAME, "password": password}),
            headers={"Content-Type": "application/json", "Host": f"127.0.0.1:{port}"},
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"the token endpoint answered {response.status}: {body[:300]!r}")
    return json.loads(body)["token"]


def _exchange(port: int, method: str, path: str, cookies: dict[str, str], form=None):
    """One request with the session's cookies; the cookies it sets are kept."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Host": f"127.0.0.1:{port}"}
    if cookies:
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    body = None
    if form is not None:
        body = urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        content = response.read()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                cookie_name, _, rest = value.partition("=")
                cookies[cookie_name.strip()] = rest.split(";", 1)[0]
        return response.status, response.getheader("Location", ""), content
    finally:
        connection.close()


def directory_session(port: int, password: str, families: list[str]) -> tuple[str, list[str]]:
    """The bench user logged in as a browser is, and the directory's address of a saved search
    for each family name (the directory keeps a search's criteria in the session, never in the
    address): the Cookie header and the paths."""
    cookies: dict[str, str] = {}
    status, _location, page = _exchange(port, "GET", "/accounts/login/", cookies)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if status != 200 or token is None:
        raise RuntimeError(f"the login page answered {status}")
    form = {"username": USERNAME, "password": password, "csrfmiddlewaretoken": token.group(1)}
    status, _location, _page = _exchange(port, "POST", "/accounts/login/", cookies, form)
    if status != 302:
        raise RuntimeError(f"logging in answered {status}, not a redirect")
    paths = []
    for family in families:
        # The cookie's secret is itself a valid form token (Django accepts it unmasked).
        csrf = next(value for name, value in cookies.items() if "csrf" in name.lower())
        search = {"q": family, "csrfmiddlewaretoken": csrf}
        status, location, _page = _exchange(port, "POST", "/studies/search/", cookies, search)
        if status != 302 or "?s=" not in location:
            raise RuntimeError(f"the directory's search answered {status} ({location!r})")
        paths.append(location)
    return "; ".join(f"{name}={value}" for name, value in cookies.items()), paths


def check_directory_answers(directory: Contender, paths: list[str], families: list[str]) -> None:
    for path, family in zip(paths, families, strict=True):
        status, _headers, body = directory.get(path, "text/html")
        if status != 200 or family.encode() not in body or b"has expired" in body:
            raise RuntimeError(f"the directory answered {status} to the search for {family}")


def single_part(headers: dict, body: bytes) -> bytes:
    """The one part of a multipart/related answer."""
    content_type = next(v for k, v in headers.items() if k.lower() == "content-type")
    boundary = next(
        value.strip().strip('"')
        for key, _, value in (p.partition("=") for p in content_type.split(";"))
        if key.strip().lower() == "boundary"
    )
    parts = body.split(b"--" + boundary.encode())[1:-1]
    if len(parts) != 1:
        raise RuntimeError(f"expected one part, got {len(parts)}")
    return parts[0].partition(b"\r\n\r\n")[2].removesuffix(b"\r\n")


class Contender:
    """One server as the load sees it: where it answers, its paths and headers, and how its
    clients reach it (the namespace's command prefix and thread for Orthanc)."""

    def __init__(
        self, name: str, port: int, root: str, authorization: str, namespace=None, cookie=""
    ):
        self.name = name
        self.port = port
        self.root = root
        self.authorization = authorization
        self.namespace = namespace
        self.cookie = cookie

    def headers(self, accept: str) -> dict[str, str]:
        headers = {"Host": f"127.0.0.1:{self.port}", "Accept": accept}
        if self.authorization:
            headers["Authorization"] = self.authorization
        if self.cookie:
            headers["Cookie"] = self.cookie
        return headers

    def get(self, path: str, accept: str) -> tuple[int, dict, bytes]:
        call = (http_get, "127.0.0.1", self.port, self.root + path, self.headers(accept))
        if self.namespace is None:
            return call[0](*call[1:])
        return self.namespace.run(*call)

    def load(self, paths: list[str], accept: str, args, duration: float) -> dict[str, Any]:
        full = [self.root + path for path in paths]
        headers = self.headers(accept)
        if args.client == "wrk":
            prefix = self.namespace.command() if self.namespace is not None else []
            result = run_wrk(
                f"http://127.0.0.1:{self.port}",
                full,
                headers,
                duration=duration,
                connections=args.connections,
                command_prefix=prefix,
            )
        else:
            run = (run_python_load, "127.0.0.1", self.port, full, headers)
            options = {"duration": duration, "connections": args.connections}
            if self.namespace is None:
                result = run[0](*run[1:], **options)
            else:
                result = self.namespace.run(*run, **options)
        return result.as_dict()


def store_series(
    host: str, port: int, called_ae: str, paths: list[Path]
) -> tuple[float, list[int]]:
    """Send ``paths`` over one association; (seconds from request to release, statuses)."""
    from pynetdicom import AE, _config
    from pynetdicom.sop_class import CTImageStorage

    _config.STORE_SEND_CHUNKED_DATASET = True  # the files' bytes as they are, not re-encoded
    ae = AE(ae_title=SCU_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.add_requested_context(CTImageStorage, EXPLICIT_LE)
    started = time.perf_counter()
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise RuntimeError(f"{called_ae} at {host}:{port} refused the association")
    statuses = []
    try:
        for path in paths:
            answer = assoc.send_c_store(path)
            statuses.append(int(answer.Status) if "Status" in answer else -1)
    finally:
        assoc.release()
    return time.perf_counter() - started, statuses


# --- Main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seed:
        seed(Path(args.seed))
        return 0

    from tests.interop import netns
    from tests.interop import orthanc as orthanc_module

    for reason in (netns.unavailable_reason(), orthanc_module.unavailable_reason()):
        if reason:
            say(f"Cannot run: {reason}.")
            return 2
    if args.client == "auto":
        args.client = "wrk" if wrk_available() else "python"
    elif args.client == "wrk" and not wrk_available():
        say("wrk is not installed (apt-get install wrk); or use --client python.")
        return 2
    if args.database == "auto":
        args.database = "postgres" if postgres_answers(args.postgres_url) else "sqlite"

    command = shlex.join([".venv/bin/python", "bench/dicomweb_bench.py", *(argv or sys.argv[1:])])
    folder = Path(tempfile.mkdtemp(prefix="dicomweb-bench-"))
    database = ThrowawayDatabase(
        args.database, name=BENCH_DATABASE, folder=folder, postgres_url=args.postgres_url
    )
    processes: list = []
    namespace = None

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        say(f"Working folder {folder}; portal database: {args.database}; client: {args.client}")
        say(f"Writing {args.studies} search studies and {FRAME_SLICES} 512x512 CT slices…")
        search_files = make_search_files(folder / "search", args.studies)
        frame_files = make_frame_files(folder / "frames")

        password = secrets.token_urlsafe(18)
        (folder / "password").write_text(password)
        env = production_env(
            folder,
            database_url=database.create(),
            cache_url=args.cache_url,
            DICOM_AE_TITLE=PORTAL_AE,
        )
        say("Migrating the portal's database…")
        prepare_portal(env)
        say("Seeding the portal (ingestion, as an upload)…")
        subprocess.run(
            [sys.executable, __file__, "--seed", str(folder)], cwd=ROOT, env=env, check=True
        )
        seconds_seeding = float((folder / "seeded").read_text())
        seconds_analyzing = float((folder / "analyzed").read_text())

        say("Starting gunicorn and the DICOM listener…")
        portal = Gunicorn(env, folder, workers=args.workers)
        processes.append(portal)
        env["SITE_URL"] = portal.url
        listener_port = free_port()
        listener_log = open(folder / "listener.log", "ab")  # noqa: SIM115 - closed at exit
        listener_command = [
            sys.executable, "manage.py", "dicom_listener",
            "--host", "127.0.0.1", "--port", str(listener_port),
        ]  # fmt: skip
        listener = subprocess.Popen(
            listener_command,
            cwd=ROOT,
            env=env,
            stdout=listener_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(listener)
        token = portal_token(portal.port, password)

        namespace = netns.NetworkNamespace.create("dwbench")
        say(f"Starting Orthanc in network namespace {namespace.name}…")
        orthanc = orthanc_module.Orthanc(namespace, folder / "orthanc", dicom_server=True)
        orthanc.start()
        processes.append(orthanc)
        started = time.perf_counter()
        for number, path in enumerate([*search_files, *frame_files], start=1):
            orthanc.upload(path.read_bytes())
            if number % 250 == 0:
                say(f"  Orthanc: {number} files stored")
        seconds_orthanc_upload = time.perf_counter() - started
        wait_for_port("127.0.0.1", listener_port, listener)

        contenders = {
            "portal": Contender("portal", portal.port, "/dicomweb", f"Bearer {token}"),
            "Orthanc": Contender(
                "Orthanc", orthanc.http_port, "/dicom-web", orthanc.authorization, namespace
            ),
        }
        search_paths = [qido_search(family, args.studies) for family in FAMILY_NAMES]
        frame_paths = frame_paths_of(frame_files)
        check_answers(contenders, search_paths, frame_paths, frame_files, args.studies)

        results: dict[str, dict[str, list]] = {}
        before = load_average()
        rendered_paths = [f"{path}/rendered" for path in frame_paths]
        # The portal's REST API search by name, next to Orthanc's QIDO-RS for the same names.
        rest = Contender("portal", portal.port, "/api/v1", f"Token {token}")
        rest_paths = [f"/studies/?q={family}" for family in FAMILY_NAMES]
        check_rest_answers(rest, rest_paths, args.studies)
        # The directory page (HTML, a browser's session) for the last searches a session keeps.
        families = FAMILY_NAMES[-DIRECTORY_SEARCHES:]
        cookie, directory_paths = directory_session(portal.port, password, families)
        directory = Contender("portal", portal.port, "", "", cookie=cookie)
        check_directory_answers(directory, directory_paths, families)
        dicom_json = "application/dicom+json"
        plans = {
            "qido": {name: (c, search_paths, dicom_json) for name, c in contenders.items()},
            "rest": {
                "portal": (rest, rest_paths, "application/json"),
                "Orthanc": (contenders["Orthanc"], search_paths, dicom_json),
            },
            "directory": {
                "portal": (directory, directory_paths, "text/html"),
                "Orthanc": (
                    contenders["Orthanc"],
                    [qido_search(family, args.studies) for family in families],
                    dicom_json,
                ),
            },
            "frames": {name: (c, frame_paths, RAW_FRAME) for name, c in contenders.items()},
            "rendered": {name: (c, rendered_paths, "image/jpeg") for name, c in contenders.items()},
        }
        for label, plan in plans.items():
            if label not in args.measure:
                continue
            for contender, paths, accept in plan.values():
                contender.load(paths, accept, args, args.warmup)
            say(f"Measuring {label}…")
            results[label] = interleaved(
                {
                    name: (lambda c=contender, p=paths, a=accept: c.load(p, a, args, args.duration))
                    for name, (contender, paths, accept) in plan.items()
                },
                rounds=args.rounds,
                label=label,
            )

        if "cold" in args.measure:
            results["cold"] = measure_cold(
                args, folder, listener_port, contenders, namespace, orthanc
            )
        if "store" in args.measure:
            results["store"] = measure_store(
                args, folder, listener_port, contenders, namespace, orthanc
            )
        if "stow" in args.measure:
            results["stow"] = measure_stow(args, folder, contenders, orthanc)
        if "upload" in args.measure:
            results["upload"] = measure_upload(args, folder, contenders, orthanc, rest)
        after = load_average()

        context = {
            "command": command,
            "database": args.database,
            "client": args.client,
            "connections": args.connections,
            "duration": args.duration,
            "rounds": args.rounds,
            "studies": args.studies,
            # Each family name is that of one study in 50.
            "per_name": args.studies // len(FAMILY_NAMES),
            "per_page": min(args.studies // len(FAMILY_NAMES), QIDO_LIMIT),
            "store_instances": args.store_instances,
            "stow_files_per_request": args.stow_files,
            "upload_files_per_request": args.upload_files,
            "senders": args.senders,
            "at_a_time": (
                "one request at a time"
                if args.senders == 1
                else f"{args.senders} requests at a time"
            ),
            "cold_slices": COLD_SLICES,
            "workers": len(portal.worker_pids()),
            "worker_memory_mb": portal.worker_memory_mb(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "orthanc": orthanc.get_json("/system")["Version"],
            "load_before": before,
            "load_after": after,
            "seconds_seeding_portal": seconds_seeding,
            "seconds_analyzing_portal": seconds_analyzing,
            "seconds_uploading_orthanc": seconds_orthanc_upload,
        }
        if args.json:
            Path(args.json).write_text(
                json.dumps({"context": context, "results": results}, indent=2)
            )
        print(report(context, results))
        return 0
    except KeyboardInterrupt:
        say("Interrupted; cleaning up.")
        return 130
    except (LoadFailed, RuntimeError, subprocess.CalledProcessError) as error:
        say(f"Failed: {error}")
        say(f"Logs are in {folder} (kept).")
        args.keep = True
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        for process in reversed(processes):
            with contextlib.suppress(Exception):
                stop_process(process)
        if namespace is not None:
            namespace.delete()
        database.drop()
        if args.cache_url:
            with contextlib.suppress(Exception):
                empty_redis(args.cache_url)
        if args.keep:
            say(f"Kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def measure_store(args, folder: Path, listener_port: int, contenders, namespace, orthanc):
    """C-STORE of one new series per round over one association, interleaved."""
    say(f"Measuring C-STORE ({args.store_instances} instances per association)…")

    def send(name: str, paths: list[Path]) -> tuple[float, str]:
        if name == "portal":
            seconds, statuses = store_series("127.0.0.1", listener_port, PORTAL_AE, paths)
        else:
            seconds, statuses = namespace.run(
                store_series, "127.0.0.1", orthanc.dicom_port, orthanc.aet, paths
            )
        failures = sum(status != 0 for status in statuses)
        return seconds, f"{failures} C-STORE failure(s)" if failures else ""

    return ingestion_rounds(args, folder, "store", contenders, orthanc, send)


def ingestion_rounds(args, folder: Path, purpose: str, contenders, orthanc, send) -> dict:
    """Interleaved rounds of ``purpose`` ("store", "stow", "upload"), after a warm-up round:
    each a new series of ``--store-instances`` slices that ``send(name, paths)`` sends to one
    server, returning the seconds it took and what failed ("" when nothing did); every instance
    must then be held."""
    rounds: dict[str, list] = {"portal": [], "Orthanc": []}
    # A warm-up round first, not counted, as the other measurements warm up: each of the
    # portal's workers has then served such a request (a worker's first costs about twice a
    # later one: the statements PostgreSQL sees first, Python's caches), and Orthanc its own.
    _study_uid, paths = make_round_files(folder, purpose, 0, args.store_instances)
    for name in ("portal", "Orthanc"):
        seconds, failed = send(name, paths)
        if failed:
            raise RuntimeError(f"{name}, warming up: {failed}")
        say(f"  warm-up, {purpose}, {name}: {len(paths) / seconds:.1f} instances/s, not counted")
    shutil.rmtree(paths[0].parent, ignore_errors=True)
    for number in range(1, args.rounds + 1):
        study_uid, paths = make_round_files(folder, purpose, number, args.store_instances)
        order = ["portal", "Orthanc"] if number % 2 else ["Orthanc", "portal"]
        for name in order:
            seconds, failed = send(name, paths)
            if name == "portal":
                held = portal_instances(contenders["portal"], study_uid)
            else:
                held = orthanc_instances(orthanc, study_uid)
            if failed or held != len(paths):
                raise RuntimeError(
                    f"{name}: {failed or 'no failure answered'}; it holds {held} of "
                    f"{len(paths)} instances"
                )
            rounds[name].append(
                {
                    "seconds": seconds,
                    "instances": len(paths),
                    "instances_per_s": len(paths) / seconds,
                    "megabytes_per_s": sum(p.stat().st_size for p in paths) / seconds / 1e6,
                }
            )
            say(f"  round {number}, {purpose}, {name}: {len(paths) / seconds:.1f} instances/s")
        shutil.rmtree(paths[0].parent, ignore_errors=True)
    return rounds


def measure_cold(args, folder: Path, listener_port: int, contenders, namespace, orthanc):
    """Rendered frames neither server has rendered before, interleaved: each round stores a new
    series in both (C-STORE, as a modality or PACS sends it), then asks each of its slices once,
    in order, as a viewer opening it walks through the series."""
    say(f"Measuring cold rendered frames ({COLD_SLICES} new slices a round)…")
    cold_rounds: dict[str, list] = {"portal": [], "Orthanc": []}
    for number in range(1, args.rounds + 1):
        _study_uid, paths = make_round_files(folder, "cold", number, COLD_SLICES)
        for port, ae, where in (
            (listener_port, PORTAL_AE, None),
            (orthanc.dicom_port, orthanc.aet, namespace),
        ):
            call = (store_series, "127.0.0.1", port, ae, paths)
            _seconds, statuses = call[0](*call[1:]) if where is None else where.run(*call)
            if any(status != 0 for status in statuses):
                raise RuntimeError(f"storing the cold series at {ae} failed: {statuses[:5]}")
        rendered = [f"{path}/rendered" for path in frame_paths_of(paths)]
        order = ["portal", "Orthanc"] if number % 2 else ["Orthanc", "portal"]
        for name in order:
            contender = contenders[name]
            run = (
                run_python_load,
                "127.0.0.1",
                contender.port,
                [contender.root + path for path in rendered],
                contender.headers("image/jpeg"),
            )
            # The viewer asks 4 frames at a time (static/js/viewer.js).
            options = {"duration": 300.0, "connections": 4, "each_once": True}
            if contender.namespace is None:
                result = run[0](*run[1:], **options).as_dict()
            else:
                result = contender.namespace.run(*run, **options).as_dict()
            cold_rounds[name].append(result)
            say(f"  round {number}, cold, {name}: {result['requests_per_s']:.1f} frames/s")
        shutil.rmtree(paths[0].parent, ignore_errors=True)
    return cold_rounds


def stop_process(process) -> None:
    if isinstance(process, subprocess.Popen):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    else:
        process.stop()


def wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the DICOM listener exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the DICOM listener did not listen on {port}")
        time.sleep(0.2)


def frame_paths_of(paths: list[Path]) -> list[str]:
    import pydicom

    found = []
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found.append(
            f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}/frames/1"
        )
    return found


def qido_search(family: str, studies: int) -> str:
    """The QIDO-RS search for a family name; past a page of results, both servers are asked
    for a page."""
    path = f"/studies?PatientName={family}*"
    if studies // len(FAMILY_NAMES) > QIDO_LIMIT:
        path += f"&limit={QIDO_LIMIT}"
    return path


def check_answers(contenders, search_paths, frame_paths, frame_files, studies) -> None:
    """Before timing anything: both servers give the same answers, the ones expected."""
    import pydicom

    per_name = min(studies // len(FAMILY_NAMES), QIDO_LIMIT)
    for path in search_paths:
        counts = {}
        for name, contender in contenders.items():
            status, _headers, body = contender.get(path, "application/dicom+json")
            if status != 200:
                raise RuntimeError(f"{name} answered {status} to {path}: {body[:300]!r}")
            counts[name] = len(json.loads(body))
        if set(counts.values()) != {per_name}:
            raise RuntimeError(f"{path}: expected {per_name} studies from each, got {counts}")
    for path, file in zip(frame_paths, frame_files, strict=True):
        expected = pydicom.dcmread(file).PixelData
        for name, contender in contenders.items():
            status, headers, body = contender.get(path, RAW_FRAME)
            if status != 200:
                raise RuntimeError(f"{name} answered {status} to {path}: {body[:300]!r}")
            if single_part(headers, body) != expected:
                raise RuntimeError(f"{name}: the frame of {path} is not the stored pixel data")
            status, headers, body = contender.get(f"{path}/rendered", "image/jpeg")
            kind = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
            if status != 200 or not kind.startswith("image/jpeg"):
                raise RuntimeError(f"{name} answered {status} {kind} to {path}/rendered")


def check_rest_answers(rest: Contender, paths: list[str], studies: int) -> None:
    per_name = studies // len(FAMILY_NAMES)
    for path in paths:
        status, _headers, body = rest.get(path, "application/json")
        if status != 200:
            raise RuntimeError(f"the REST API answered {status} to {path}: {body[:300]!r}")
        found = len(json.loads(body)["results"])
        # A page holds at most 50 studies.
        if found != min(per_name, 50):
            raise RuntimeError(f"{path}: expected {min(per_name, 50)} studies, got {found}")


def stow_bodies(files: list[Path], per_request: int) -> list[tuple[str, bytes]]:
    """STOW-RS bodies (``multipart/related`` of ``application/dicom``), ``per_request`` files
    each, with their content types."""
    bodies = []
    for start in range(0, len(files), per_request):
        boundary = new_boundary()
        parts = [
            Part("application/dicom", [file.read_bytes()])
            for file in files[start : start + per_request]
        ]
        content_type = multipart_content_type("application/dicom", boundary)
        bodies.append((content_type, b"".join(multipart_stream(parts, boundary))))
    return bodies


def form_bodies(files: list[Path], per_request: int) -> list[tuple[str, bytes]]:
    """Upload bodies as the browser's upload and a script send them (``multipart/form-data``,
    the files in the field ``files``), ``per_request`` files each."""
    bodies = []
    for start in range(0, len(files), per_request):
        boundary = new_boundary()
        body = bytearray()
        for file in files[start : start + per_request]:
            body += (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{file.name}"\r\nContent-Type: application/dicom\r\n\r\n'
            ).encode()
            body += file.read_bytes() + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        bodies.append((f"multipart/form-data; boundary={boundary}", bytes(body)))
    return bodies


def file_bodies(files: list[Path]) -> list[tuple[str, bytes]]:
    """One file a body, as Orthanc's REST upload (``POST /instances``) takes them."""
    return [("application/dicom", file.read_bytes()) for file in files]


def post_bodies(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    bodies: list[tuple[str, bytes]],
    senders: int = 1,
) -> tuple[float, list[int]]:
    """POST each of ``bodies`` (content type, bytes) to ``path`` from ``senders`` connections
    at once (each sends its share of the requests one after the other); (seconds from the first
    request to the last answer, the answers' statuses)."""
    statuses: list[int] = []
    errors: list[BaseException] = []
    ready = threading.Barrier(senders + 1)

    def send(share: list[tuple[str, bytes]]) -> None:
        ready.wait()
        connection = http.client.HTTPConnection(host, port, timeout=120)
        try:
            for content_type, body in share:
                connection.request(
                    "POST", path, body=body, headers={**headers, "Content-Type": content_type}
                )
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()  # gunicorn's sync workers close after each answer
        except BaseException as error:  # reported by the caller's thread
            errors.append(error)
        finally:
            connection.close()

    # Threads started from this one share its network namespace (the Orthanc contender's).
    threads = [
        threading.Thread(target=send, args=(bodies[number::senders],), daemon=True)
        for number in range(senders)
    ]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    return seconds, statuses


def measure_stow(args, folder: Path, contenders, orthanc):
    """STOW-RS of one new series per round, ``--stow-files`` files a request,
    interleaved."""
    say(
        f"Measuring STOW-RS ({args.store_instances} instances, {args.stow_files} a request, "
        f"{args.senders} at a time)…"
    )

    def send(name: str, paths: list[Path]) -> tuple[float, str]:
        contender = contenders[name]
        bodies = stow_bodies(paths, args.stow_files)  # built before the clock starts
        call = (
            post_bodies,
            "127.0.0.1",
            contender.port,
            f"{contender.root}/studies",
            contender.headers("application/dicom+json"),
            bodies,
            args.senders,
        )
        if contender.namespace is None:
            seconds, statuses = call[0](*call[1:])
        else:
            seconds, statuses = contender.namespace.run(*call)
        failed = any(status != 200 for status in statuses)
        return seconds, f"STOW-RS answered {sorted(set(statuses))}" if failed else ""

    return ingestion_rounds(args, folder, "stow", contenders, orthanc, send)


def measure_upload(args, folder: Path, contenders, orthanc, rest: Contender):
    """Each server's own upload API, one new series per round, interleaved: the portal's
    ``POST /api/v1/studies/upload/``, ``--upload-files`` files a request, and Orthanc's REST
    ``POST /instances``, which takes one file a request."""
    say(
        f"Measuring the upload APIs ({args.store_instances} instances; the portal "
        f"{args.upload_files} a request, Orthanc one; {args.senders} at a time)…"
    )

    def send(name: str, paths: list[Path]) -> tuple[float, str]:
        if name == "portal":
            bodies = form_bodies(paths, args.upload_files)
            seconds, statuses = post_bodies(
                "127.0.0.1",
                rest.port,
                f"{rest.root}/studies/upload/",
                rest.headers("application/json"),
                bodies,
                args.senders,
            )
            expected = {201}
        else:
            orthanc_contender = contenders["Orthanc"]
            seconds, statuses = orthanc_contender.namespace.run(
                post_bodies,
                "127.0.0.1",
                orthanc.http_port,
                "/instances",
                # Orthanc's REST API answers JSON under the same credentials as its DICOMweb.
                orthanc_contender.headers("application/json"),
                file_bodies(paths),
                args.senders,
            )
            expected = {200}
        failed = set(statuses) - expected
        return seconds, f"the upload answered {sorted(set(statuses))}" if failed else ""

    return ingestion_rounds(args, folder, "upload", contenders, orthanc, send)


def portal_instances(contender: Contender, study_uid: str) -> int:
    status, _headers, body = contender.get(
        f"/studies?StudyInstanceUID={study_uid}", "application/dicom+json"
    )
    found = json.loads(body) if status == 200 else []
    return found[0]["00201208"]["Value"][0] if found else 0


def orthanc_instances(orthanc, study_uid: str) -> int:
    hits = orthanc.post_json("/tools/lookup", study_uid)
    if not hits:
        return 0
    return len(orthanc.get_json(f"/studies/{hits[0]['ID']}/instances"))


# --- The report ------------------------------------------------------------------------------

MEASUREMENTS = {
    "qido": (
        "QIDO-RS study search, PatientName=<family>* ({per_page} of the {per_name} matches, "
        "{studies} studies)",
        "requests_per_s",
        "requests/s",
    ),
    "rest": (
        "Search by name, {studies} studies: the portal's REST API (a page of up to 50) vs "
        "Orthanc's QIDO-RS",
        "requests_per_s",
        "requests/s",
    ),
    "directory": (
        "Search by name, {studies} studies: the directory page (HTML, a page of up to 50, "
        "session) vs Orthanc's QIDO-RS",
        "requests_per_s",
        "requests/s",
    ),
    "frames": (
        "WADO-RS frame, 512x512 CT, raw explicit VR little endian",
        "requests_per_s",
        "requests/s",
    ),
    "rendered": (
        "WADO-RS rendered frame (JPEG), 512x512 CT, cached by the warm-up",
        "requests_per_s",
        "requests/s",
    ),
    "cold": (
        "WADO-RS rendered frame (JPEG), each slice of a new {cold_slices}-slice 512x512 CT "
        "series asked once, in order",
        "requests_per_s",
        "requests/s",
    ),
    "store": (
        "C-STORE, {store_instances} x 512x512 CT over one association",
        "instances_per_s",
        "instances/s",
    ),
    "stow": (
        "STOW-RS, {store_instances} x 512x512 CT, {stow_files_per_request} a request, {at_a_time}",
        "instances_per_s",
        "instances/s",
    ),
    "upload": (
        "Upload API, {store_instances} x 512x512 CT: the portal's `POST /api/v1/studies/upload/` "
        "({upload_files_per_request} files a request, multipart/form-data) vs Orthanc's REST "
        "`POST /instances` (one a request), {at_a_time}",
        "instances_per_s",
        "instances/s",
    ),
}


def report(context: dict[str, Any], results: dict[str, dict[str, list]]) -> str:
    lines = [
        "# DICOMweb and DIMSE: the portal next to Orthanc",
        "",
        f"`{context['command']}`",
        "",
        f"{context['cpus']} CPUs, Python {context['python']}, Orthanc {context['orthanc']} "
        f"(DICOMweb plugin, in a network namespace); portal: gunicorn, {context['workers']} sync "
        f"workers, DEBUG off, {context['database']}. Load: {context['client']}, "
        f"{context['connections']} connections, {context['duration']:g} s per measurement, "
        f"{context['rounds']} interleaved round(s). Load average before {context['load_before']}, "
        f"after {context['load_after']}.",
        "",
        "| measurement | portal | Orthanc | portal / Orthanc | goal |",
        "|---|---:|---:|---:|---|",
    ]
    for key, (title, metric, unit) in MEASUREMENTS.items():
        if key not in results:
            continue
        portal = [run[metric] for run in results[key]["portal"]]
        orthanc = [run[metric] for run in results[key]["Orthanc"]]
        # Orthanc may answer nothing within a measurement: the ratio is then unbounded.
        ratio = median([p / o if o else float("inf") for p, o in zip(portal, orthanc, strict=True)])
        goal = goal_for(key, context["studies"])
        verdict = (
            "—" if goal is None else (f">= {goal:g}: " + ("met" if ratio >= goal else "NOT met"))
        )
        lines.append(
            f"| {title.format(**context)} | {median(portal):.1f} {unit} | {median(orthanc):.1f} "
            f"{unit} | {ratio:.2f} | {verdict} |"
        )
    files = context["studies"] + FRAME_SLICES
    portal_rate = files / context["seconds_seeding_portal"]
    orthanc_rate = files / context["seconds_uploading_orthanc"]
    ratio = portal_rate / orthanc_rate
    verdict = f">= {INGESTION_GOAL:g}: " + ("met" if ratio >= INGESTION_GOAL else "NOT met")
    lines.append(
        f"| Ingestion of the same {files} files, once: the portal's ingestion service (as "
        f"import_dicom, an upload or STOW-RS file them, 100 a call) vs Orthanc's REST "
        f"`POST /instances`, one by one | {portal_rate:.1f} instances/s | {orthanc_rate:.1f} "
        f"instances/s | {ratio:.2f} | {verdict} |"
    )
    lines += [
        "",
        "Ratios are medians of the per-round ratios; the servers' figures are medians over the "
        "rounds (ingestion: the one seeding of each server, in one process each).",
        "",
        "## Every round",
        "",
        "| measurement | round | server | rate | p50 ms | p99 ms | MB/s |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for key, (_title, metric, unit) in MEASUREMENTS.items():
        if key not in results:
            continue
        for name in ("portal", "Orthanc"):
            for number, run in enumerate(results[key][name], start=1):
                p50 = f"{run['p50_ms']:.1f}" if "p50_ms" in run else "—"
                p99 = f"{run['p99_ms']:.1f}" if "p99_ms" in run else "—"
                lines.append(
                    f"| {key} | {number} | {name} | {run[metric]:.1f} {unit} | {p50} | {p99} "
                    f"| {run['megabytes_per_s']:.1f} |"
                )
    memory = context["worker_memory_mb"]
    if memory:
        largest = {key: max(worker[key] for worker in memory) for key in ("rss", "pss", "private")}
        lines += [
            "",
            f"The portal's {len(memory)} gunicorn workers after the load, the largest: "
            f"{largest['rss']:.0f} MB resident (pages shared with the others included), "
            f"{largest['pss']:.0f} MB its proportional share, {largest['private']:.0f} MB its own "
            "(issue 13's goal: under 100 MB a worker).",
        ]
    lines += [
        "",
        f"Seeding: the portal ingested {context['studies'] + FRAME_SLICES} files in "
        f"{context['seconds_seeding_portal']:.1f} s (ingestion service, batches of 100; of "
        f"which {context['seconds_analyzing_portal']:.1f} s updating the planner's statistics, "
        "ANALYZE, as autovacuum would); Orthanc stored them in "
        f"{context['seconds_uploading_orthanc']:.1f} s (REST, one by one).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
