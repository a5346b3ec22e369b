"""Time to the first image: OHIF next to the portal's own viewer, on the same 200-slice CT, in
headless Chromium, side by side in one run (issue 14: OHIF within 2 times of ours).

    .venv/bin/python bench/viewer_bench.py                    # PostgreSQL and Redis, ~2 minutes
    .venv/bin/python bench/viewer_bench.py --rounds 5 --json var/viewers.json

The script starts everything it needs and removes it afterwards (``bench/harness.py``): a
throwaway database (PostgreSQL ``portal_viewer_bench``, or SQLite), migrated and seeded by this
script run again under the portal's settings (an organization, a clinician, and a 200-slice
512 x 512 CT ingested as an upload); the portal under gunicorn from ``gunicorn.conf.py`` (sync
workers, DEBUG off, the Redis cache); OHIF's origin (``viewers.ohif``) under gunicorn on
another port, as ``make run`` serves it. OHIF must be installed (``make ohif``).

Each round, in a new browser context (nothing cached: what a user opening the study for the
first time waits for), both viewers are timed in turn, the first alternating:

- **ours**: from asking for the study page to its first frame decoded on screen;
- **OHIF**: from clicking the study page's "Open in OHIF" to OHIF showing the first slice (its
  viewport's overlay reads "1/200", checked every animation frame, as ours is): the portal's
  redirect with a new viewer token, OHIF's page and bundles, its searches and metadata, and the
  first frame. A screenshot then checks, untimed, that the viewport is not one uniform colour.

While OHIF loads, a probe asks the portal's login page every 50 ms: its latency, next to the
same probe on the idle portal, says whether one OHIF's parallel requests (at most
``OHIF_MAX_REQUESTS``) leave the portal's sync workers free for everyone else.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import platform
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    DEFAULT_POSTGRES,
    Gunicorn,
    ThrowawayDatabase,
    bench_clinician,
    empty_redis,
    load_average,
    median,
    postgres_answers,
    prepare_portal,
    production_env,
    say,
)

BENCH_DATABASE = "portal_viewer_bench"
USERNAME = "bench-viewer"
STUDY_UID = "1.2.826.0.1.3680043.8.498.77.14"
SLICES = 200
GOAL = 2.0  # OHIF's time to the first image at most twice ours
PROBE_SECONDS = 0.05


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("auto", "postgres", "sqlite"), default="auto")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument(
        "--cache-url",
        default="redis://127.0.0.1:6379/14",
        help="Redis for the portal's cache, emptied before and after ('' for none)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians reported (3)")
    parser.add_argument("--json", metavar="PATH", help="also write every number as JSON")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
    parser.add_argument("--seed", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    return args


# --- The seeding subprocess (under the portal's settings) -----------------------------------


def seed(folder: Path) -> None:
    import django

    django.setup()
    from studies.services.ingestion import ingest_files
    from studies.synthetic import make_series, to_bytes

    org, location, _user = bench_clinician(USERNAME, (folder / "password").read_text())
    datasets = make_series(
        patient_name="Viewer^Vera",
        patient_id="BENCH-VIEWER",
        birth_date="19700101",
        sex="F",
        study_uid=STUDY_UID,
        study_date="20240517",
        study_description="CT Thorax",
        accession="BV000001",
        modality="CT",
        series_number=1,
        series_description="Axial",
        slices=SLICES,
        rows=512,
        columns=512,
    )
    for start in range(0, SLICES, 50):
        result = ingest_files(
            files=[
                (f"{start + n}.dcm", io.BytesIO(to_bytes(ds)))
                for n, ds in enumerate(datasets[start : start + 50])
            ],
            organization=org,
            location=location,
        )
        if result.rejected:
            raise RuntimeError(f"the portal refused bench files: {result.rejected[:3]}")


# --- Measuring ------------------------------------------------------------------------------


class Probe:
    """The login page asked every PROBE_SECONDS on a thread of its own, until stopped."""

    def __init__(self, port: int):
        self.port = port
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                connection.request("GET", "/accounts/login/", headers={"Host": "127.0.0.1"})
                status = connection.getresponse().status
                connection.close()
                if status != 200:
                    self.failures += 1
                else:
                    self.latencies.append(time.perf_counter() - started)
            except OSError:
                self.failures += 1
            self._stop.wait(PROBE_SECONDS)

    def summary(self) -> dict:
        ordered = sorted(self.latencies)
        count = len(ordered)
        return {
            "probes": count,
            "failures": self.failures,
            "p50_ms": 1000 * ordered[count // 2] if count else float("nan"),
            "p95_ms": 1000 * ordered[min(count - 1, int(count * 0.95))] if count else float("nan"),
        }


def log_in(browser, portal_url: str, password: str):
    """A browser context with the bench user signed in; its storage (the session cookie)."""
    context = browser.new_context(base_url=portal_url)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", password)
    page.press("input[name=password]", "Enter")
    page.wait_for_url("**/studies/")
    state = context.storage_state()
    context.close()
    return state


def time_ours(browser, portal_url: str, state) -> float:
    context = browser.new_context(base_url=portal_url, storage_state=state)
    try:
        page = context.new_page()
        started = time.perf_counter()
        page.goto(f"/studies/{STUDY_UID}/")
        page.wait_for_function(
            "() => { const i = document.querySelector('[data-frame]');"
            " return i && i.complete && i.naturalWidth > 0; }",
            timeout=60_000,
        )
        return time.perf_counter() - started
    finally:
        context.close()


def time_ohif(browser, portal_url: str, state, ohif_url: str) -> float:
    from PIL import Image

    context = browser.new_context(base_url=portal_url, storage_state=state)
    try:
        page = context.new_page()
        page.goto(f"/studies/{STUDY_UID}/")
        page.wait_for_selector("[data-open-in-ohif]")
        started = time.perf_counter()
        with context.expect_page() as opened:
            page.click("[data-open-in-ohif]")
        ohif = opened.value
        ohif.wait_for_function(
            "() => document.querySelector('[data-cy=\"viewport-overlay-bottom-right\"]')"
            f"?.textContent.includes('/{SLICES}')",
            timeout=120_000,
        )
        elapsed = time.perf_counter() - started
        # Not timed (a screenshot takes longer than drawing): the viewport shows an image, not
        # one uniform colour.
        shot = ohif.locator('[data-cy="viewport-pane"]').first.screenshot()
        low, high = Image.open(io.BytesIO(shot)).convert("L").getextrema()
        if high - low <= 64:
            raise RuntimeError("OHIF counted the series' images but showed none")
        if not ohif.url.startswith(ohif_url):
            raise RuntimeError(f"OHIF opened at {ohif.url}, not at {ohif_url}")
        return elapsed
    finally:
        context.close()


# --- Main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seed:
        seed(Path(args.seed))
        return 0
    ohif_dir = ROOT / "var" / "ohif"
    if not (ohif_dir / "index.html").is_file():
        say("OHIF is not installed: run `make ohif` (needs npm).")
        return 2
    if not Path(args.chromium).exists():
        say(f"Chromium is not at {args.chromium} (apt-get install chromium, or --chromium).")
        return 2
    if args.database == "auto":
        args.database = "postgres" if postgres_answers(args.postgres_url) else "sqlite"
    command = shlex.join([".venv/bin/python", "bench/viewer_bench.py", *(argv or sys.argv[1:])])
    folder = Path(tempfile.mkdtemp(prefix="viewer-bench-"))
    database = ThrowawayDatabase(
        args.database, name=BENCH_DATABASE, folder=folder, postgres_url=args.postgres_url
    )
    servers: list[Gunicorn] = []
    try:
        password = secrets.token_urlsafe(18)
        (folder / "password").write_text(password)
        portal_port, ohif_port = _two_ports()
        portal_url = f"http://127.0.0.1:{portal_port}"
        ohif_url = f"http://127.0.0.1:{ohif_port}"
        env = production_env(
            folder,
            database_url=database.create(),
            cache_url=args.cache_url,
            SITE_URL=portal_url,
            OHIF_URL=ohif_url,
            OHIF_DIR=str(ohif_dir),
        )
        say("Migrating and seeding the portal (a 200-slice 512x512 CT)…")
        prepare_portal(env)
        subprocess.run(
            [sys.executable, __file__, "--seed", str(folder)], cwd=ROOT, env=env, check=True
        )
        say("Starting the portal and OHIF's origin (gunicorn)…")
        servers.append(Gunicorn(env, folder, port=portal_port))
        servers.append(
            Gunicorn(env, folder, port=ohif_port, app="viewers.ohif:application", name="ohif")
        )
        portal = servers[0]
        results = measure(args, portal, portal_url, ohif_url, password)
        context = {
            "command": command,
            "database": args.database,
            "rounds": args.rounds,
            "workers": len(portal.worker_pids()),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load": load_average(),
        }
        if args.json:
            Path(args.json).write_text(json.dumps({"context": context, "results": results}))
        print(report(context, results))
        return 0
    finally:
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                server.stop()
        database.drop()
        if args.cache_url:
            with contextlib.suppress(Exception):
                empty_redis(args.cache_url)
        shutil.rmtree(folder, ignore_errors=True)


def _two_ports() -> tuple[int, int]:
    from bench.harness import free_port

    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def measure(args, portal: Gunicorn, portal_url: str, ohif_url: str, password: str) -> dict:
    from playwright.sync_api import sync_playwright

    results: dict[str, list] = {"ours": [], "ohif": [], "probe_idle": [], "probe_ohif": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=args.chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            state = log_in(browser, portal_url, password)
            # Untimed: the workers' first requests, and Chromium's first start of each viewer.
            time_ours(browser, portal_url, state)
            time_ohif(browser, portal_url, state, ohif_url)
            with Probe(portal.port) as idle:
                time.sleep(3)
            results["probe_idle"].append(idle.summary())
            for number in range(args.rounds):
                order = ["ours", "ohif"] if number % 2 == 0 else ["ohif", "ours"]
                for name in order:
                    if name == "ours":
                        seconds = time_ours(browser, portal_url, state)
                    else:
                        with Probe(portal.port) as busy:
                            seconds = time_ohif(browser, portal_url, state, ohif_url)
                        results["probe_ohif"].append(busy.summary())
                    results[name].append(seconds)
                    say(f"  round {number + 1}, {name}: {seconds * 1000:.0f} ms to the first image")
        finally:
            browser.close()
    return results


def report(context: dict, results: dict) -> str:
    ours, ohif = median(results["ours"]), median(results["ohif"])
    ratio = median([o / p for o, p in zip(results["ohif"], results["ours"], strict=True)])
    verdict = f"<= {GOAL:g}: " + ("met" if ratio <= GOAL else "NOT met")
    idle = results["probe_idle"][0]
    busy_p95 = median([probe["p95_ms"] for probe in results["probe_ohif"]])
    busy_failures = sum(probe["failures"] for probe in results["probe_ohif"])
    setup = (
        f"{context['cpus']} CPUs, Python {context['python']}, headless Chromium, "
        f"{context['database']}; the portal under gunicorn ({context['workers']} sync "
        "workers, DEBUG off), OHIF's origin under gunicorn on another port. "
        f"{context['rounds']} interleaved round(s), a new browser context each time (nothing "
        f"cached). Load average after: {context['load']}."
    )
    lines = [
        "# Time to the first image: OHIF next to the portal's viewer",
        "",
        f"`{context['command']}`",
        "",
        setup,
        "",
        "| viewer | time to the first image (median) | every round |",
        "|---|---:|---|",
        f"| the portal's viewer | {ours * 1000:.0f} ms | "
        + ", ".join(f"{s * 1000:.0f}" for s in results["ours"])
        + " |",
        f'| OHIF (from "Open in OHIF") | {ohif * 1000:.0f} ms | '
        + ", ".join(f"{s * 1000:.0f}" for s in results["ohif"])
        + " |",
        "",
        f"OHIF / ours: **{ratio:.2f}** (median of the per-round ratios; goal {verdict}).",
        "",
        f"The login page asked every {PROBE_SECONDS * 1000:.0f} ms: p95 {idle['p95_ms']:.1f} ms on"
        f" the idle portal, {busy_p95:.1f} ms while OHIF loads ({busy_failures} failure(s)).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
