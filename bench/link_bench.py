"""How many guest links can the portal open per second, with and without a password, next to
the cheapest page it serves (the login page), on one server measured in one run?

    .venv/bin/python bench/link_bench.py                       # PostgreSQL, about a minute
    .venv/bin/python bench/link_bench.py --database sqlite --duration 2 --rounds 1   # smoke
    .venv/bin/python bench/link_bench.py --workers 4 --threads 8 --json var/links.json

The script starts everything it needs and removes it afterwards, also when a run fails or is
interrupted: a throwaway database (PostgreSQL ``portal_link_bench``, dropped and re-created; or
an SQLite file in a temporary folder), migrated and seeded by this script run again in a
subprocess under the portal's own settings (one organization, a clinician, a small synthetic CT
ingested as an upload is, and ``--links`` guest links of each kind made with
``guestlinks.services.creation.create_link``: no password, and a password), then gunicorn with
sync workers on a free port of 127.0.0.1 (``gunicorn.conf.py``; ``DEBUG=true``,
``ALLOWED_HOSTS=127.0.0.1``, a random ``SECRET_KEY``), as an installation's environment
configures it.

Load comes from Python threads in this process speaking plain ``http.client`` to 127.0.0.1 only
(no ``wrk`` needed). Three operations, measured in turn within each round (so a machine that
gets busier during the run affects all three alike), each for ``--duration`` seconds and at
most ``--max-ops`` operations:

- **login page**: ``GET /accounts/login/`` (one request);
- **link open**: a fresh browser each time (no cookies): ``GET /l/<token>`` (the page with its
  Open study button; counts an open, audited) then ``POST /l/<token>`` with the CSRF token, which
  passes the gates, counts one use atomically, stores the grant in a new session and answers
  303 to the study (not followed): two requests;
- **link open with password**: the same with the link's password (argon2id, about 20 ms a
  check).

It prints a Markdown table (standard output; progress goes to standard error) of the medians over
the rounds: operations and requests per second, latency per operation, and the ratio of each to
the login page's requests per second. See bench/README.md, "Guest links".
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
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
BENCH_DATABASE = "portal_link_bench"
LINK_PASSWORD = "bench-Tulip-4711"
STUDY_UID = "1.2.826.0.1.3680043.10.5151.1"
WARMUP_OPS = 10
_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Guest link opens per second (with and without a password) against the "
        "login page, on one gunicorn server on 127.0.0.1.",
    )
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"server to create the {BENCH_DATABASE!r} database on (default {DEFAULT_POSTGRES})",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent clients (4)")
    parser.add_argument(
        "--links", type=int, default=50, help="links of each kind to rotate over (50)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=5.0,
        help="seconds each measurement runs for, the same for every operation (5)",
    )
    parser.add_argument(
        "--max-ops",
        type=int,
        default=5000,
        help="operations per measurement, at most: a bound if the machine is fast (5000)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians reported (3)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    # Internal: the seeding subprocess.
    parser.add_argument("--seed", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.workers, args.threads, args.links, args.max_ops, args.rounds) < 1:
        parser.error("--workers, --threads, --links, --max-ops and --rounds must be positive")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    return args


# --- The seeding subprocess (runs under the portal's settings) ---------------------------------


def seed(path: Path, links: int) -> None:
    import io

    import django

    django.setup()
    from django.db import transaction

    from accounts.models import Location, Membership, Organization, Role, User
    from accounts.permissions import CLINICIAN
    from guestlinks.services.creation import LinkOptions, LinkTarget, create_link
    from studies.models import Study
    from studies.services.ingestion import ingest_files
    from studies.synthetic import make_series, to_bytes

    with transaction.atomic():
        org = Organization.objects.create(name="Bench Hospital")
        location = Location.objects.create(organization=org, name="Radiology")
        role = Role.objects.create(name="Clinician", permissions=[p.value for p in CLINICIAN])
        sender = User.objects.create_user("bench-sender", password=secrets.token_urlsafe(16))
        membership = Membership.objects.create(user=sender, organization=org, role=role)
        membership.locations.add(location)
    datasets = make_series(
        patient_name="Bench^Patient",
        patient_id="BENCH-1",
        birth_date="19700131",
        sex="F",
        study_uid=STUDY_UID,
        study_date="20240517",
        study_description="CT Thorax",
        accession="BENCH-ACC",
        modality="CT",
        series_number=1,
        series_description="Axial",
        slices=2,
        rows=32,
        columns=32,
    )
    ingest_files(
        files=[(f"{i}.dcm", io.BytesIO(to_bytes(ds))) for i, ds in enumerate(datasets)],
        organization=org,
        location=location,
    )
    target = LinkTarget(study=Study.objects.get(study_uid=STUDY_UID))
    tokens: dict[str, list[str]] = {"plain": [], "password": []}
    for kind, options in (
        ("plain", LinkOptions()),
        ("password", LinkOptions(password=LINK_PASSWORD)),
    ):
        for _ in range(links):
            created = create_link(sender=sender, target=target, options=options, acknowledged=True)
            tokens[kind].append(created.token)
    path.write_text(json.dumps(tokens))


# --- The server ----------------------------------------------------------------------------------


class Server:
    """gunicorn with sync workers, in its own process group so that stopping it stops all."""

    def __init__(self, env: dict[str, str], folder: Path, workers: int) -> None:
        self.port = free_port()
        self.log_path = folder / "gunicorn.log"
        command = [
            sys.executable, "-m", "gunicorn",
            "-c", str(ROOT / "gunicorn.conf.py"),
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(workers),
            "--worker-class", "sync",
            "--access-logfile", str(folder / "access.log"),
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; its log:\n{self.log_path.read_text()}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            status, _headers, _body = request(self.port, "GET", "/healthz")
        except OSError:
            return False
        return status == 200

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


# --- Load ----------------------------------------------------------------------------------------


def request(port: int, method: str, path: str, *, body: str = "", headers=None):
    """One request on its own connection (gunicorn's sync workers close it after the response,
    as a browser's first visit would find it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, response.getheaders(), data
    finally:
        connection.close()


def _cookies(headers) -> dict[str, str]:
    found = {}
    for name, value in headers:
        if name.lower() == "set-cookie":
            pair = value.split(";", 1)[0]
            key, _, cookie = pair.partition("=")
            found[key.strip()] = cookie.strip()
    return found


def login_page(port: int, _token: str) -> int:
    status, _headers, _body = request(port, "GET", "/accounts/login/")
    if status != 200:
        raise RuntimeError(f"login page answered {status}")
    return 1


def open_link(port: int, token: str, password: str = "") -> int:
    """A fresh browser opens the link: the page, then the Open study button."""
    path = f"/l/{token}"
    status, headers, body = request(port, "GET", path)
    if status != 200:
        raise RuntimeError(f"link page answered {status}")
    found = _CSRF_INPUT.search(body.decode())
    cookies = _cookies(headers)
    if not found or "csrftoken" not in cookies:
        raise RuntimeError("the link page carried no CSRF token")
    form = {"csrfmiddlewaretoken": found.group(1), "action": "open"}
    if password:
        form["password"] = password
    status, headers, _body = request(
        port,
        "POST",
        path,
        body=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "; ".join(f"{key}={value}" for key, value in cookies.items()),
        },
    )
    location = dict((name.lower(), value) for name, value in headers).get("location", "")
    if status != 303 or "/studies/" not in location:
        raise RuntimeError(f"opening answered {status} to {location or 'nowhere'}")
    return 2


def measure(port, operation, tokens, *, ops: int, threads: int, duration: float) -> dict:
    """Run ``operation`` from ``threads`` clients for ``duration`` seconds (no new operation
    starts after that), at most ``ops`` times."""
    lock = threading.Lock()
    state = {"next": 0, "requests": 0, "errors": [], "latencies": []}
    deadline = time.monotonic() + duration

    def client() -> None:
        while True:
            with lock:
                if state["next"] >= ops or time.monotonic() > deadline or state["errors"]:
                    return
                index = state["next"]
                state["next"] += 1
            token = tokens[index % len(tokens)] if tokens else ""
            started = time.perf_counter()
            try:
                sent = operation(port, token)
            except Exception as exc:
                with lock:
                    state["errors"].append(f"{type(exc).__name__}: {exc}")
                return
            elapsed = time.perf_counter() - started
            with lock:
                state["requests"] += sent
                state["latencies"].append(elapsed)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if state["errors"]:
        raise RuntimeError(f"{len(state['errors'])} failed operations: {state['errors'][0]}")
    latencies = sorted(state["latencies"])
    done = len(latencies)
    return {
        "operations": done,
        "requests": state["requests"],
        "seconds": elapsed,
        "ops_per_s": done / elapsed,
        "requests_per_s": state["requests"] / elapsed,
        "p50_ms": 1000 * latencies[done // 2],
        "p95_ms": 1000 * latencies[min(done - 1, int(done * 0.95))],
    }


# --- The database --------------------------------------------------------------------------------


def _postgres(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(f"{url.rstrip('/')}/postgres", autocommit=True) as connection:
        connection.execute(statement)


def prepare_database(args, folder: Path) -> str:
    if args.database == "sqlite":
        return f"sqlite:///{folder / 'bench.sqlite3'}"
    _postgres(args.postgres_url, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
    _postgres(args.postgres_url, f"CREATE DATABASE {BENCH_DATABASE}")
    return f"{args.postgres_url.rstrip('/')}/{BENCH_DATABASE}"


def drop_database(args) -> None:
    if args.database == "postgres":
        with contextlib.suppress(Exception):
            _postgres(args.postgres_url, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")


# --- The report ----------------------------------------------------------------------------------

OPERATIONS = (
    ("login page", "GET /accounts/login/", "login"),
    ("link open", "GET + POST /l/<token>", "plain"),
    ("link open with password", "GET + POST /l/<token> (argon2id)", "password"),
)


def report(args, results: dict[str, list[dict]]) -> str:
    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in results[name])

    login_rps = median("login page", "requests_per_s")
    lines = [
        f"Guest links: {args.workers} gunicorn sync workers, {args.threads} client threads, "
        f"{args.database}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"medians of {args.rounds} round(s) of {args.duration:g} s per operation.",
        "",
        "| operation | requests | ops/s | requests/s | p50 ms/op | p95 ms/op "
        "| requests/s vs login page | ops/s vs login page |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, what, _kind in OPERATIONS:
        rps = median(name, "requests_per_s")
        ops = median(name, "ops_per_s")
        lines.append(
            f"| {name} | {what} | {ops:.1f} | {rps:.1f} | {median(name, 'p50_ms'):.1f} "
            f"| {median(name, 'p95_ms'):.1f} | {rps / login_rps:.2f} | {ops / login_rps:.2f} |"
        )
    return "\n".join(lines)


# --- Main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seed:
        seed(Path(args.seed), args.links)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="link-bench-"))
    server = None
    interrupted = False

    def on_signal(signum, _frame):
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        say(f"Database: {args.database}; working folder {folder}")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PORTAL_ENV_FILE": "",  # a developer's demo .env is not this run's settings
            "DEBUG": "true",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "PORTAL_VAR_DIR": str(folder),
            "DATABASE_URL": prepare_database(args, folder),
            "SITE_URL": "http://127.0.0.1",
            "PYTHONPATH": str(ROOT),
        }
        for name in ("CELERY_BROKER_URL", "CACHE_URL", "REDIS_URL"):
            env.pop(name, None)
        say("Migrating…")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        say(f"Seeding a study and {args.links} links of each kind…")
        tokens_path = folder / "tokens.json"
        subprocess.run(
            [sys.executable, __file__, "--seed", str(tokens_path), "--links", str(args.links)],
            cwd=ROOT,
            env=env,
            check=True,
        )
        tokens = json.loads(tokens_path.read_text())
        say(f"Starting gunicorn ({args.workers} sync workers)…")
        server = Server(env, folder, args.workers)
        operations = {
            "login": lambda port, token: login_page(port, token),
            "plain": lambda port, token: open_link(port, token),
            "password": lambda port, token: open_link(port, token, LINK_PASSWORD),
        }
        for _name, _what, kind in OPERATIONS:
            measure(
                server.port,
                operations[kind],
                tokens.get(kind, []),
                ops=WARMUP_OPS,
                threads=args.threads,
                duration=args.duration,
            )
        results: dict[str, list[dict]] = {name: [] for name, _what, _kind in OPERATIONS}
        for round_number in range(1, args.rounds + 1):
            for name, _what, kind in OPERATIONS:
                run = measure(
                    server.port,
                    operations[kind],
                    tokens.get(kind, []),
                    ops=args.max_ops,
                    threads=args.threads,
                    duration=args.duration,
                )
                results[name].append(run)
                say(
                    f"round {round_number}: {name}: {run['operations']} ops in "
                    f"{run['seconds']:.1f} s, {run['requests_per_s']:.1f} requests/s"
                )
        table = report(args, results)
        print(table)
        if args.json:
            Path(args.json).write_text(
                json.dumps({"arguments": vars(args), "results": results}, indent=2)
            )
        return 0
    except KeyboardInterrupt:
        say("Interrupted; cleaning up.")
        return 130 if not interrupted else 143
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            server.stop()
        drop_database(args)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
