"""Guest links, side by side with the smallest Django that does the same (issue 13): how many
link pages and link opens the portal serves per second next to ``bench/anchor``, a minimal
Django project served the same way that looks the token up with one indexed query and writes
the same database session, on one machine in one run.

    .venv/bin/python bench/link_bench.py                       # PostgreSQL and Redis, ~2 minutes
    .venv/bin/python bench/link_bench.py --database sqlite --cache-url '' --duration 2 --rounds 1
    .venv/bin/python bench/link_bench.py --workers 4 --threads 8 --json var/links.json

The script starts everything it needs and removes it afterwards, also when a run fails or is
interrupted (``bench/harness.py``): a throwaway database (PostgreSQL ``portal_link_bench``, or
an SQLite file in a temporary folder), migrated and seeded by this script run again in a
subprocess under the portal's own settings (one organization, a clinician, a small synthetic CT
ingested as an upload is, and ``--links`` guest links of each kind made with
``guestlinks.services.creation.create_link``: no password, and a password); then two gunicorn
servers from ``gunicorn.conf.py`` with the same sync workers, DEBUG off and the Redis cache as
in production: the portal, and the anchor on the same database and ``SECRET_KEY``.

Load comes from Python threads in this process speaking plain ``http.client`` to 127.0.0.1 only,
each operation on fresh connections with no cookies (a recipient's first visit). Measured in
turn within each round, the order rotating from round to round, each for ``--duration`` seconds
and at most ``--max-ops`` operations:

- **link page** / **anchor page**: ``GET /l/<token>``, the page with its Open study button (the
  portal's counts an open and audits it);
- **link open** / **anchor open**: that page, then ``POST /l/<token>`` with its CSRF token, which
  in the portal passes the gates, counts one use atomically and stores the grant in a new
  session, and answers 303 to the study (not followed): two requests;
- **link open with password**: the same with the link's password (argon2id);
- **login page**: ``GET /accounts/login/``, the portal's cheapest page, for reference.

It prints a Markdown report (standard output; progress goes to standard error): the goals
(page >= 0.5x the anchor's, open >= 0.4x, a password open costing one argon2 check more than a
plain one), then every operation's medians over the rounds. See bench/README.md, "Guest links".
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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    DEFAULT_POSTGRES,
    Gunicorn,
    ThrowawayDatabase,
    bench_clinician,
    empty_redis,
    interleaved,
    load_average,
    median,
    prepare_portal,
    production_env,
    say,
)

BENCH_DATABASE = "portal_link_bench"
DEFAULT_CACHE = "redis://127.0.0.1:6379/12"
LINK_PASSWORD = "bench-Tulip-4711"
STUDY_UID = "1.2.826.0.1.3680043.10.5151.1"
WARMUP_OPS = 10
ARGON2_CHECKS = 20
_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
GOALS = {"page": 0.5, "open": 0.4}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Guest link pages and opens per second, next to a minimal Django project "
        "served the same way, on 127.0.0.1.",
    )
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"server to create the {BENCH_DATABASE!r} database on (default {DEFAULT_POSTGRES})",
    )
    parser.add_argument(
        "--cache-url",
        default=os.environ.get("BENCH_CACHE_URL", DEFAULT_CACHE),
        help=f"the portal's Redis cache, emptied first and at the end, as in production "
        f"(default {DEFAULT_CACHE}); '' for none",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="gunicorn sync workers of each server (2)"
    )
    parser.add_argument("--threads", type=int, default=4, help="concurrent clients (4)")
    parser.add_argument(
        "--links", type=int, default=200, help="links of each kind to rotate over (200)"
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
    from django.contrib.auth.hashers import check_password

    from guestlinks.models import GuestLink
    from guestlinks.selectors import LinkTarget
    from guestlinks.services.creation import LinkOptions, create_link
    from studies.models import Study
    from studies.services.ingestion import ingest_files
    from studies.synthetic import make_series, to_bytes

    org, location, sender = bench_clinician("bench-sender", secrets.token_urlsafe(16))
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
    # What one password check costs here, in one process: the figure a password open should
    # exceed a plain one by.
    link = GuestLink.objects.filter(password_hash__gt="").first()
    started = time.perf_counter()
    for _ in range(ARGON2_CHECKS):
        check_password(LINK_PASSWORD, link.password_hash)
    argon2_ms = (time.perf_counter() - started) / ARGON2_CHECKS * 1000
    path.write_text(json.dumps({"tokens": tokens, "argon2_ms": argon2_ms}))


# --- The client ---------------------------------------------------------------------------------


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


def link_page(port: int, token: str) -> int:
    status, _headers, body = request(port, "GET", f"/l/{token}")
    if status != 200 or not _CSRF_INPUT.search(body.decode()):
        raise RuntimeError(f"link page answered {status} without its form")
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


# --- The report ----------------------------------------------------------------------------------

# name: (what is sent, server, operation)
OPERATIONS = {
    "link page": ("GET /l/<token>", "portal", "page"),
    "anchor page": ("GET /l/<token>", "anchor", "page"),
    "link open": ("GET + POST /l/<token>", "portal", "plain"),
    "anchor open": ("GET + POST /l/<token>", "anchor", "plain"),
    "link open with password": ("GET + POST /l/<token> (argon2id)", "portal", "password"),
    "login page": ("GET /accounts/login/", "portal", "login"),
}


def ratio(results: dict[str, list[dict]], name: str, anchor: str, key: str) -> float:
    """The median of the per-round ratios: each round measured both within seconds."""
    pairs = zip(results[name], results[anchor], strict=True)
    return median([ours[key] / theirs[key] for ours, theirs in pairs])


def report(args, results: dict[str, list[dict]], context: dict) -> str:
    def mid(name: str, key: str) -> float:
        return median([run[key] for run in results[name]])

    lines = [
        "# Guest links next to a minimal Django project",
        "",
        f"`{context['command']}`",
        "",
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {args.database}, cache "
        f"{'Redis' if args.cache_url else 'per process'}; each server: gunicorn, {args.workers} "
        f"sync workers, DEBUG off. {args.threads} client threads, fresh connections and no "
        f"cookies; {args.rounds} interleaved round(s) of {args.duration:g} s per operation. Load "
        f"average before {context['load_before']}, after {context['load_after']}.",
        "",
        "| goal | portal | anchor | portal / anchor | goal |",
        "|---|---:|---:|---:|---|",
    ]
    for label, name, anchor, key, unit, goal in (
        ("link page", "link page", "anchor page", "requests_per_s", "requests/s", "page"),
        ("link open", "link open", "anchor open", "ops_per_s", "opens/s", "open"),
    ):
        value = ratio(results, name, anchor, key)
        verdict = f">= {GOALS[goal]:g}: " + ("met" if value >= GOALS[goal] else "NOT met")
        lines.append(
            f"| {label} | {mid(name, key):.1f} {unit} | {mid(anchor, key):.1f} {unit} "
            f"| {value:.2f} | {verdict} |"
        )
    extra = mid("link open with password", "p50_ms") - mid("link open", "p50_ms")
    lines += [
        "",
        f"A password open took {extra:.1f} ms more than a plain one (medians of the per-open "
        f"p50, under the same load); one argon2 check takes {context['argon2_ms']:.1f} ms in one "
        "idle process here (the goal: one check more).",
        "",
        "| operation | requests | ops/s | requests/s | p50 ms/op | p95 ms/op |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, (what, _server, _kind) in OPERATIONS.items():
        lines.append(
            f"| {name} | {what} | {mid(name, 'ops_per_s'):.1f} | {mid(name, 'requests_per_s'):.1f} "
            f"| {mid(name, 'p50_ms'):.1f} | {mid(name, 'p95_ms'):.1f} |"
        )
    return "\n".join(lines)


# --- Main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seed:
        seed(Path(args.seed), args.links)
        return 0
    command = " ".join([".venv/bin/python", "bench/link_bench.py", *(argv or sys.argv[1:])])
    folder = Path(tempfile.mkdtemp(prefix="link-bench-"))
    database = ThrowawayDatabase(
        args.database, name=BENCH_DATABASE, folder=folder, postgres_url=args.postgres_url
    )
    servers: list[Gunicorn] = []
    interrupted = False

    def on_signal(signum, _frame):
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        say(f"Database: {args.database}; working folder {folder}")
        env = production_env(
            folder,
            database_url=database.create(),
            cache_url=args.cache_url,
            SITE_URL="http://127.0.0.1",
        )
        say("Migrating…")
        prepare_portal(env)
        say(f"Seeding a study and {args.links} links of each kind…")
        seeded_path = folder / "seeded.json"
        subprocess.run(
            [sys.executable, __file__, "--seed", str(seeded_path), "--links", str(args.links)],
            cwd=ROOT,
            env=env,
            check=True,
        )
        seeded = json.loads(seeded_path.read_text())
        tokens = seeded["tokens"]
        say(f"Starting the portal and the anchor ({args.workers} sync workers each)…")
        portal = Gunicorn(env, folder, workers=args.workers, name="portal")
        servers.append(portal)
        anchor_env = {**env, "DJANGO_SETTINGS_MODULE": "bench.anchor.settings"}
        anchor = Gunicorn(
            anchor_env, folder, workers=args.workers, app="bench.anchor.wsgi:application",
            name="anchor",
        )  # fmt: skip
        servers.append(anchor)
        ports = {"portal": portal.port, "anchor": anchor.port}
        operations = {
            "page": link_page,
            "plain": open_link,
            "password": lambda port, token: open_link(port, token, LINK_PASSWORD),
            "login": login_page,
        }

        def run(name: str, ops: int):
            _what, server, kind = OPERATIONS[name]
            keys = "password" if kind == "password" else "plain"
            return measure(
                ports[server],
                operations[kind],
                tokens[keys],
                ops=ops,
                threads=args.threads,
                duration=args.duration,
            )

        for name in OPERATIONS:
            run(name, WARMUP_OPS)
        before = load_average()
        results = interleaved(
            {name: (lambda n=name: run(n, args.max_ops)) for name in OPERATIONS},
            rounds=args.rounds,
            label="links",
        )
        context = {
            "command": command,
            "argon2_ms": seeded["argon2_ms"],
            "load_before": before,
            "load_after": load_average(),
        }
        print(report(args, results, context))
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {"arguments": vars(args), "context": context, "results": results}, indent=2
                )
            )
        return 0
    except KeyboardInterrupt:
        say("Interrupted; cleaning up.")
        return 130 if not interrupted else 143
    finally:
        signal.signal(signal.SIGTERM, previous)
        for server in reversed(servers):
            server.stop()
        database.drop()
        if args.cache_url:
            with contextlib.suppress(Exception):
                empty_redis(args.cache_url)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
