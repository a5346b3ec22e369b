"""Do unrelated organizations audit in parallel? Appends to the audit trail, on PostgreSQL.

    .venv/bin/python bench/audit_bench.py                                  # about two minutes
    .venv/bin/python bench/audit_bench.py --events 50 --rounds 1 --holds 0  # a smoke check

Each audit chain (one per organization, one for events of no organization) has a head row that
``audit.services.record`` locks until the caller's transaction ends. The script measures, in one
run and side by side, N processes each appending events in their own transactions:

- **one organization**: every process appends to the same organization's chain, so every append
  waits for the head lock (what every append of every organization did when the trail was one
  chain);
- **different organizations**: each process appends to its own organization's chain;
- **one process**: a single process appending alone, the rate one chain can take at best.

``--holds`` sets how long each transaction goes on after its append before it commits (the rest
of the audited action: a share writing its entries and queuing its emails), during which the
chain's head stays locked. The three modes alternate within each round; the report gives the
medians of the rounds and the ratio different / one organization.

As ``directory_bench.py`` (``bench/harness.py``): a throwaway PostgreSQL database
(``portal_audit_bench``, dropped first and at the end), the script run again in a subprocess
configured by the environment as an installation is (``DATABASE_URL``, ``DEBUG=true``, random
``SECRET_KEY`` and ``AUDIT_KEY``), which migrates and measures. Markdown on standard output,
progress on standard error. See bench/README.md, "Audit trail".
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import run_each_database, run_worker_on_throwaway  # noqa: E402

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
BENCH_DATABASE = "portal_audit_bench"
MODES = ("one organization", "different organizations", "one process")
FIRST_ORGANIZATION = 1000  # organization ids of the trail; no Organization row is needed
WARMUP_EVENTS = 20


def directory_bench():
    """``directory_bench.py``, the sibling script whose statistics, version and progress this
    one shares (the throwaway database and worker subprocess come from ``bench/harness.py``)."""
    folder = str(Path(__file__).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import directory_bench as sibling

    return sibling


def say(message: str) -> None:
    directory_bench().say(message)


# --- The parent ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    args.databases = ["postgres"]
    return run_each_database(
        args,
        heading=f"{args.processes} processes x {args.events} audited transactions",
        run_database=run_database,
        report=markdown,
        parameters=parameters,
    )


def _numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark audit appends on PostgreSQL: processes auditing for one "
        "organization against processes auditing for different organizations.",
    )
    parser.add_argument("--processes", type=int, default=4, help="appending processes (default 4)")
    parser.add_argument(
        "--events",
        type=int,
        default=100,
        help="audited transactions per process and measurement (default 100)",
    )
    parser.add_argument(
        "--holds",
        type=_numbers,
        default=[0.0, 5.0, 20.0],
        help="milliseconds each transaction goes on after its append, comma-separated "
        "(default 0,5,20)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians reported (3)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"server to create the {BENCH_DATABASE!r} database on (default {DEFAULT_POSTGRES})",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", help=argparse.SUPPRESS)
    parser.add_argument("--databases", default="postgres", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.processes < 2 or args.events < 1 or args.rounds < 1 or not args.holds:
        parser.error("--processes must be at least 2; --events, --rounds, --holds positive")
    return args


def parameters(args: argparse.Namespace) -> dict:
    return {
        "processes": args.processes,
        "events": args.events,
        "holds_ms": args.holds,
        "rounds": args.rounds,
    }


def run_database(database: str, args: argparse.Namespace) -> dict:
    return run_worker_on_throwaway(
        database,
        script=Path(__file__).resolve(),
        postgres_url=args.postgres_url,
        database_name=BENCH_DATABASE,
        worker_args=[
            "--processes",
            str(args.processes),
            "--events",
            str(args.events),
            "--holds",
            ",".join(str(hold) for hold in args.holds),
            "--rounds",
            str(args.rounds),
        ],
        environment={"AUDIT_KEY": secrets.token_urlsafe(48)},
    )


# --- The worker ----------------------------------------------------------------------------


@dataclass
class Run:
    mode: str
    hold_ms: float
    round: int
    processes: int
    events: int
    seconds: float
    events_per_second: float
    p50_ms: float
    p95_ms: float


@dataclass
class WorkerResult:
    vendor_version: str
    cpus: int
    load_before: list[float]
    load_after: list[float] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    verified_events: int = 0


def worker(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    say(f"migrating ({connection.vendor})")
    if connection.vendor != "postgresql":
        raise SystemExit("audit_bench.py measures row locks: it runs on PostgreSQL only")
    call_command("migrate", verbosity=0, interactive=False)
    result = WorkerResult(
        vendor_version=directory_bench().vendor_version(),
        cpus=os.cpu_count() or 1,
        load_before=[round(value, 2) for value in os.getloadavg()],
    )
    # Every chain head exists before anything is timed, as on a portal that has run a while.
    for organization in _organizations(args.processes, separate=True):
        _append(organization, WARMUP_EVENTS, hold=0.0)
    connection.close()

    for round_number in range(1, args.rounds + 1):
        for hold in args.holds:
            # Start each round with another mode, so that none always runs on a warmer machine.
            order = MODES[round_number % 3 :] + MODES[: round_number % 3]
            for mode in order:
                run = measure(mode, hold, round_number, args)
                say(
                    f"round {round_number}, hold {hold:g} ms, {mode}: "
                    f"{run.events_per_second:.0f} events/s (p95 {run.p95_ms:.1f} ms)"
                )
                result.runs.append(run)

    from audit.selectors import verify_chain

    verification = verify_chain()
    if not verification.ok:
        raise SystemExit(f"the trail does not verify: {[str(b) for b in verification.breaks]}")
    result.verified_events = verification.count
    result.load_after = [round(value, 2) for value in os.getloadavg()]
    Path(args.worker_output).write_text(json.dumps(asdict(result)), encoding="utf-8")
    return 0


def _organizations(processes: int, *, separate: bool) -> list[int]:
    if separate:
        return [FIRST_ORGANIZATION + number for number in range(processes)]
    return [FIRST_ORGANIZATION] * processes


def _append(organization: int, events: int, *, hold: float) -> list[float]:
    """Audited transactions as a web worker runs them, one per request: the append, then the
    rest of the action for ``hold`` seconds, then the commit. Returns each one's milliseconds."""
    from django.db import transaction

    from audit.models import Action
    from audit.services import record

    durations = []
    for number in range(events):
        started = time.perf_counter()
        with transaction.atomic():
            record(
                action=Action.STUDY_VIEWED,
                actor_label=f"clinician-{organization}",
                organization_id=organization,
                target_type="study",
                target_id=f"1.2.826.0.1.3680043.8.498.{organization}.{number}",
                details={"via": "bench", "n": number},
            )
            if hold:
                time.sleep(hold)
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def _process(organization, events, hold, start, results) -> None:
    from django.db import connections

    # Forked after the parent closed its connections: this child opens its own.
    start.wait()
    began = time.monotonic()
    durations = _append(organization, events, hold=hold)
    results.put((began, time.monotonic(), durations))
    connections.close_all()


def measure(mode: str, hold_ms: float, round_number: int, args: argparse.Namespace) -> Run:
    from django.db import connections

    connections.close_all()
    processes = 1 if mode == "one process" else args.processes
    organizations = _organizations(processes, separate=mode == "different organizations")
    context = multiprocessing.get_context("fork")
    start = context.Barrier(processes)
    results = context.Queue()
    children = [
        context.Process(
            target=_process, args=(organization, args.events, hold_ms / 1000, start, results)
        )
        for organization in organizations
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=600) for _ in children]
    for child in children:
        child.join(timeout=60)
        if child.exitcode != 0:
            raise SystemExit(f"an appending process failed (exit status {child.exitcode})")
    seconds = max(end for _, end, _ in outcomes) - min(began for began, _, _ in outcomes)
    durations = sorted(duration for _, _, samples in outcomes for duration in samples)
    events = len(durations)
    p95 = durations[min(events - 1, max(0, round(0.95 * events) - 1))]
    return Run(
        mode=mode,
        hold_ms=hold_ms,
        round=round_number,
        processes=processes,
        events=events,
        seconds=round(seconds, 3),
        events_per_second=round(events / seconds, 1),
        p50_ms=round(statistics.median(durations), 2),
        p95_ms=round(p95, 2),
    )


# --- Reporting -----------------------------------------------------------------------------


def markdown(results: dict[str, dict], args: argparse.Namespace) -> str:
    result = results["postgres"]
    runs = result["runs"]

    def median(hold: float, mode: str, key: str) -> float:
        return statistics.median(
            run[key] for run in runs if run["hold_ms"] == hold and run["mode"] == mode
        )

    def ratio(hold: float, numerator: str, denominator: str) -> float:
        per_round = [
            next(
                r["events_per_second"]
                for r in runs
                if (r["hold_ms"], r["mode"], r["round"]) == (hold, numerator, n)
            )
            / next(
                r["events_per_second"]
                for r in runs
                if (r["hold_ms"], r["mode"], r["round"]) == (hold, denominator, n)
            )
            for n in range(1, args.rounds + 1)
        ]
        return statistics.median(per_round)

    command = " ".join(["bench/audit_bench.py", *sys.argv[1:]])
    lines = [
        f"# Audit appends: {args.processes} processes, one organization or different ones",
        "",
        f"`{command}` on {result['vendor_version']}, {result['cpus']} CPUs, load average "
        f"{result['load_before'][0]} before and {result['load_after'][0]} after; "
        f"{args.events} audited transactions per process and measurement, medians of "
        f"{args.rounds} round(s); {result['verified_events']:,} events verified afterwards.",
        "",
        "| hold after the append | mode | events/s | transaction p50 ms | p95 ms |",
        "|---:|---|---:|---:|---:|",
    ]
    for hold in args.holds:
        for mode in MODES:
            processes = 1 if mode == "one process" else args.processes
            lines.append(
                f"| {hold:g} ms | {mode} ({processes} process{'es' if processes > 1 else ''}) "
                f"| {median(hold, mode, 'events_per_second'):.0f} "
                f"| {median(hold, mode, 'p50_ms'):.1f} | {median(hold, mode, 'p95_ms'):.1f} |"
            )
    lines += [
        "",
        "| hold after the append | different / one organization | one organization / one "
        "process | different organizations / one process |",
        "|---:|---:|---:|---:|",
    ]
    for hold in args.holds:
        lines.append(
            f"| {hold:g} ms "
            f"| **{ratio(hold, 'different organizations', 'one organization'):.2f}** "
            f"| {ratio(hold, 'one organization', 'one process'):.2f} "
            f"| {ratio(hold, 'different organizations', 'one process'):.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
