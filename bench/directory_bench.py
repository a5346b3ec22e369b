"""How fast is the Patient Study Directory at 100,000 studies, on SQLite and on PostgreSQL?

    .venv/bin/python bench/directory_bench.py --studies 100000 --databases sqlite,postgres

For each database the script makes a throwaway database (an SQLite file in a temporary folder;
PostgreSQL database ``portal_bench``, dropped and re-created), then runs itself again in a
subprocess whose environment points the portal's own settings at it (``DATABASE_URL``), so
Django is configured exactly as an installation configures it. That subprocess migrates,
bulk-creates an organization, users, ~30 % as many patients as studies (varied names, accents
included) and the studies, files them in the location's worklist, and times the directory's
searches, its cursor pagination and the whole page through Django's test client. The parent
prints Markdown tables (per database, then side by side), optionally writes JSON, and removes
everything it made. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

# ruff: noqa: RUF001 - the Turkish dotless i in the names below is deliberate, not a typo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import run_each_database, run_worker_on_throwaway  # noqa: E402

DATABASES = ("sqlite", "postgres")
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
BENCH_DATABASE = "portal_bench"
PAGE_SIZE = 50
WARMUP = 3
MIN_REPETITIONS = 10
SEED = 20240501  # the same data on every run and every database

# --- Data ------------------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.replace("\n", ",").split(",") if name.strip()]


# Family names as a Belgian hospital sees them, most frequent first (weights fall off like a
# Zipf law over this order): Flemish, Walloon, Dutch, German, Southern and Eastern European,
# Turkish, Maghrebi, Vietnamese, Irish and Nordic names, many with the accents search must fold.
FAMILY_NAMES = _names(
    """
    Peeters, Janssens, Maes, Jacobs, Mertens, Willems, Claes, Goossens, Wouters, De Smet,
    Dubois, Lambert, Martin, Dupont, Lefèvre, Müller, Dumont, Leclercq, Van den Berg, De Vries,
    Jansen, Bakker, Visser, Smit, Schmidt, Schneider, Fischer, Weiß, Meyer, Wagner, Becker,
    Hoffmann, Schäfer, Lemaître, Gérard, François, Renée, Mathieu, Hubert, Noël, García,
    Fernández, González, Rodríguez, López, Martínez, Sánchez, Pérez, Gómez, Muñoz, Silva,
    Santos, Ferreira, Gonçalves, Conceição, Rossi, Russo, Ferrari, Esposito, Bianchi, Nowak,
    Kowalski, Wiśniewski, Wójcik, Kamiński, Lewandowski, Zieliński, Dąbrowski, Yılmaz, Kaya,
    Demir, Şahin, Çelik, Yıldız, Öztürk, Aydın, Doğan, Kılıç, El Amrani, Benali, Haddad,
    Bouzid, Nguyễn, Trần, Lê, Phạm, O'Brien, O'Connor, Murphy, Kelly, Walsh, Novák, Dvořák,
    Černý, Procházka, Horváth, Nagy, Kovács, Szabó, Tóth, Jørgensen, Sørensen, Ødegård, Åberg,
    Lindström, Björk, Mäkinen, Hämäläinen, Papadopoulos, Oikonomou, Ivanov, Van Damme,
    Vandenbroucke, D'Hondt, Verhoeven, Desmet, Van Acker, Ramírez, Coşkun
    """
)
GIVEN_NAMES = _names(
    """
    Zoë, Léa, Emma, Olivia, Louise, Noah, Liam, Lucas, Arthur, Jules, Adam, Mila, Elena, Sofía,
    José, François, Jürgen, Søren, Björn, Ana, João, Chloé, Anaïs, Maëlle, Zeynep, Emre,
    Mehmet, Ayşe, Siobhan, Aoife, Seán, Małgorzata, Łukasz, Agnieszka, Jiří, Tomáš, Zoltán,
    Gergő, Pieter, Jan, Sanne, Femke, Daan, Julia, Anna, Maria, Ahmed, Fatima, Mohamed,
    Yasmine, Minh, Thị Hoa, Hélène, Jérôme, Benoît, Inès, Éloïse, Renée, Marc, Sofie, Bart,
    Griet, Wim, An, Els, Koen, Nathalie
    """
)
# A name no generated patient has, given to a handful: the "rare name" search.
RARE_FAMILY_NAME = "Szczepańska"
RARE_PATIENTS = 3

# Modality, share of studies, descriptions.
MODALITY_MIX = [
    ("CT", 34, ["CT Thorax", "CT Abdomen", "CT Head", "CT Thorax Abdomen Pelvis", "CT Spine"]),
    ("MR", 20, ["MR Brain", "MR Knee", "MR Lumbar spine", "MR Pelvis", "MR Shoulder"]),
    ("CR", 15, ["Chest PA and lateral", "Hand", "Knee", "Pelvis", "Ankle"]),
    ("US", 10, ["US Abdomen", "Echocardiography", "US Thyroid", "US Obstetric"]),
    ("DX", 8, ["Chest PA", "Wrist", "Foot"]),
    ("MG", 5, ["Mammography screening", "Mammography diagnostic"]),
    ("NM", 2, ["Bone scintigraphy", "Thyroid scintigraphy"]),
    ("PT CT", 2, ["PET-CT whole body"]),
    ("XA", 2, ["Coronary angiography"]),
    ("CT SR", 2, ["CT Coronary calcium score"]),
]


def patient_count(studies: int) -> int:
    return max(1, round(studies * 0.3))


# --- The parent: one subprocess per database -------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    return run_each_database(
        args,
        heading=f"{args.studies:,} studies",
        run_database=run_database,
        report=markdown,
        parameters=parameters,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the Patient Study Directory's search and page on a large "
        "throwaway database (SQLite and/or PostgreSQL).",
    )
    parser.add_argument("--studies", type=int, default=100_000, help="studies (default 100000)")
    parser.add_argument(
        "--databases",
        default=",".join(DATABASES),
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        help="comma-separated: sqlite, postgres (default both)",
    )
    parser.add_argument(
        "--queries", type=int, default=200, help="timed repetitions per operation (default 200)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds of timed runs after which an operation stops repeating (at least "
        f"{MIN_REPETITIONS} runs; default 60)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"server to create the {BENCH_DATABASE!r} database on (default {DEFAULT_POSTGRES})",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="also print each search's query plan (PostgreSQL: EXPLAIN ANALYZE)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.databases) - set(DATABASES)
    if unknown or not args.databases:
        parser.error(f"--databases takes {', '.join(DATABASES)}; got {', '.join(args.databases)}")
    if args.studies < 1 or args.queries < 1:
        parser.error("--studies and --queries must be positive")
    return args


def parameters(args: argparse.Namespace) -> dict:
    return {
        "studies": args.studies,
        "patients": patient_count(args.studies),
        "queries": args.queries,
        "budget_seconds": args.budget,
        "page_size": PAGE_SIZE,
        "databases": args.databases,
    }


def run_database(database: str, args: argparse.Namespace) -> dict:
    return run_worker_on_throwaway(
        database,
        script=Path(__file__).resolve(),
        postgres_url=args.postgres_url,
        database_name=BENCH_DATABASE,
        worker_args=[
            "--studies",
            str(args.studies),
            "--queries",
            str(args.queries),
            "--budget",
            str(args.budget),
            *(["--explain"] if args.explain else []),
        ],
    )


# --- The worker: seed and measure one database -----------------------------------------------


@dataclass
class Measurement:
    name: str
    group: str
    median_ms: float
    p95_ms: float
    rows: int  # on the page, in the last repetition
    queries: int  # SQL statements per operation, in the last repetition
    repetitions: int
    matches: int | None = None  # all matching studies, for one sample of the criteria
    plan: str = ""


@dataclass
class WorkerResult:
    database: str
    vendor_version: str
    studies: int
    patients: int
    migrate_seconds: float
    seed_seconds: float
    analyze_seconds: float
    measurements: list[Measurement] = field(default_factory=list)


def worker(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.urls import reverse

    # Fail now, not after minutes of seeding, if the views or what is measured do not import.
    reverse("studies:directory")
    import studies.dicom_header
    import studies.selectors  # noqa: F401

    database = args.databases[0]
    say(f"migrating ({connection.vendor})")
    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    migrate_seconds = time.perf_counter() - started

    started = time.perf_counter()
    world = seed(args.studies)
    seed_seconds = time.perf_counter() - started
    say(f"seeded {args.studies:,} studies in {seed_seconds:.1f} s")

    started = time.perf_counter()
    analyze()
    analyze_seconds = time.perf_counter() - started

    result = WorkerResult(
        database=database,
        vendor_version=vendor_version(),
        studies=args.studies,
        patients=world.patients,
        migrate_seconds=round(migrate_seconds, 2),
        seed_seconds=round(seed_seconds, 2),
        analyze_seconds=round(analyze_seconds, 2),
    )
    result.measurements = measure(
        world, repetitions=args.queries, budget=args.budget, explain=args.explain
    )
    Path(args.worker_output).write_text(json.dumps(asdict(result)), encoding="utf-8")
    return 0


def say(message: str) -> None:
    print(f"   {message}", file=sys.stderr, flush=True)


def vendor_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0]}"
        cursor.execute("SELECT sqlite_version()")
        return f"SQLite {cursor.fetchone()[0]}"


def analyze() -> None:
    """PostgreSQL's autovacuum analyzes a table soon after a bulk load; do it now rather than
    measure the minutes before it happens. SQLite never gathers statistics unless told, and a
    portal installation does not tell it, so it is measured as it would run."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


@dataclass
class World:
    reader: object  # a clinician who works from the location that holds every study
    administrator: object  # sees every study of the organization through the role
    patients: int
    patient_ids: list[str]
    family_names: list[str]
    accessions: list[str]
    first_date: date
    last_date: date


def seed(studies: int) -> World:
    """Bulk-create the organization and its studies as ingestion would leave them (rows only,
    no DICOM files: the directory never opens one)."""
    from django.db import transaction

    from accounts.models import Location, Membership, Organization, Role, User
    from accounts.permissions import ADMINISTRATOR, CLINICIAN
    from studies.dicom_header import normalize_name, split_person_name
    from studies.models import Entry, EntryOrigin, Patient, Study
    from studies.services.worklists import location_worklist

    rng = random.Random(SEED)
    batch = 5000
    with transaction.atomic():
        organization = Organization.objects.create(name="Bench General Hospital")
        location = Location.objects.create(organization=organization, name="Radiology")
        worklist = location_worklist(location)
        clinician = Role.objects.create(name="Clinician", permissions=[p.value for p in CLINICIAN])
        administrator_role = Role.objects.create(
            name="Administrator", permissions=[p.value for p in ADMINISTRATOR]
        )
        reader = User.objects.create_user("reader", email="reader@bench.example")
        Membership.objects.create(
            user=reader, organization=organization, role=clinician
        ).locations.add(location)
        administrator = User.objects.create_user("admin", email="admin@bench.example")
        Membership.objects.create(
            user=administrator, organization=organization, role=administrator_role
        )

        n_patients = patient_count(studies)
        weights = [1 / (rank + 1) ** 0.9 for rank in range(len(FAMILY_NAMES))]
        families = rng.choices(FAMILY_NAMES, weights=weights, k=n_patients)
        for index in rng.sample(range(n_patients), min(RARE_PATIENTS, n_patients)):
            families[index] = RARE_FAMILY_NAME
        patients = []
        for number, family in enumerate(families, start=1):
            name = split_person_name(f"{family}^{rng.choice(GIVEN_NAMES)}")
            patients.append(
                Patient(
                    organization=organization,
                    patient_id=f"P{number:07d}",
                    name=name.raw,
                    family_name=name.family,
                    given_name=name.given,
                    name_search=name.search,  # exactly what ingestion stores
                    birth_date=date(1930, 1, 1) + timedelta(days=rng.randrange(90 * 365)),
                    sex=rng.choice("FM"),
                )
            )
        Patient.objects.bulk_create(patients, batch_size=batch)
        patient_rows = list(
            Patient.objects.filter(organization=organization)
            .order_by("pk")
            .values_list("pk", "name")
        )
        patient_pks = [pk for pk, _name in patient_rows]
        # Exactly what ingestion stores as the studies' sort key.
        sort_names = {pk: normalize_name(name)[:200] for pk, name in patient_rows}

    last_date = date.today()
    first_date = last_date - timedelta(days=10 * 365)
    mix_weights = [share for _modality, share, _descriptions in MODALITY_MIX]
    accessions = []
    for start in range(0, studies, batch):
        with transaction.atomic():
            rows = []
            for number in range(start + 1, min(start + batch, studies) + 1):
                modality, _share, descriptions = rng.choices(MODALITY_MIX, weights=mix_weights)[0]
                study_date = first_date + timedelta(days=rng.randrange(10 * 365 + 1))
                accession = f"A{study_date:%y}{number:08d}"
                series = rng.randint(1, 6)
                patient_pk = rng.choice(patient_pks)
                rows.append(
                    Study(
                        organization=organization,
                        patient_id=patient_pk,
                        patient_sort_name=sort_names[patient_pk],
                        study_uid=f"1.2.826.0.1.3680043.10.543.{SEED}.{number}",
                        study_date=study_date,
                        study_time=clock(rng.randrange(24), rng.randrange(60)),
                        description=rng.choice(descriptions),
                        accession=accession,
                        referring_physician=f"Dr. {rng.choice(FAMILY_NAMES)}",
                        institution="Bench General Hospital",
                        modalities=modality,
                        series_count=series,
                        instance_count=series * rng.randint(1, 300),
                        received_location=location,
                    )
                )
                if number % 97 == 0:
                    accessions.append(accession)
            created = Study.objects.bulk_create(rows, batch_size=batch)
            if created and created[0].pk is None:  # a backend that returns no keys
                created = list(
                    Study.objects.filter(study_uid__in=[s.study_uid for s in rows]).only("pk")
                )
            Entry.objects.bulk_create(
                [
                    Entry(worklist=worklist, study=study, origin=EntryOrigin.INGESTION)
                    for study in created
                ],
                batch_size=batch,
            )
        if (start // batch) % 4 == 3:
            say(f"{min(start + batch, studies):,} studies")

    return World(
        reader=reader,
        administrator=administrator,
        patients=n_patients,
        patient_ids=[f"P{number:07d}" for number in range(1, n_patients + 1)],
        family_names=families,
        accessions=accessions or [f"A{first_date:%y}{1:08d}"],
        first_date=first_date,
        last_date=last_date,
    )


def measure(world: World, *, repetitions: int, budget: float, explain: bool) -> list[Measurement]:
    from django.test import Client
    from django.urls import reverse

    from studies.dicom_header import normalize_name
    from studies.pagination import Sort
    from studies.selectors import SearchCriteria, search_page, search_studies

    rng = random.Random(SEED + 1)
    reader = world.reader
    newest, by_name = Sort(key="date", descending=True), Sort(key="name", descending=False)

    # The query values each repetition picks from, so that one lucky cached value does not
    # stand for a whole operation.
    counted: dict[str, int] = {}
    for family in world.family_names:
        counted[family] = counted.get(family, 0) + 1
    by_frequency = sorted(counted, key=lambda name: -counted[name])
    # Queries as a user types them: lower case, no accents ("muller" must find "Müller").
    common = [normalize_name(name) for name in by_frequency[:3]]
    accented = [
        normalize_name(name) for name in by_frequency if normalize_name(name) != name.lower()
    ][:4]
    months = []
    month = world.first_date.replace(day=1)
    while month <= world.last_date:
        following = (month + timedelta(days=32)).replace(day=1)
        months.append((month, following - timedelta(days=1)))
        month = following
    id_prefixes = [world.patient_ids[i][:7] for i in range(0, len(world.patient_ids), 13)]

    def pick(values: list):
        return values[rng.randrange(len(values))]

    def page(user, criteria: SearchCriteria, sort: Sort, cursor: str | None = None):
        return search_page(user, criteria, sort=sort, cursor=cursor, page_size=PAGE_SIZE)

    def one_month() -> SearchCriteria:
        first, last = pick(months)
        return SearchCriteria(date_from=first, date_to=last)

    def two_words() -> SearchCriteria:
        return SearchCriteria(q=f"{normalize_name(pick(GIVEN_NAMES))} {pick(common)}")

    searches: list[tuple[str, Callable[[], SearchCriteria], Sort, object]] = [
        ("no filter, newest first", SearchCriteria, newest, reader),
        (
            f"name, common ({', '.join(common)})",
            lambda: SearchCriteria(q=pick(common)),
            newest,
            reader,
        ),
        (
            f"name, accent-insensitive ({', '.join(accented)})",
            lambda: SearchCriteria(q=pick(accented)),
            newest,
            reader,
        ),
        (
            f"name, rare ({normalize_name(RARE_FAMILY_NAME)})",
            lambda: SearchCriteria(q=normalize_name(RARE_FAMILY_NAME)),
            newest,
            reader,
        ),
        ("name, two words (given and common family)", two_words, newest, reader),
        (
            "patient ID prefix (7 characters)",
            lambda: SearchCriteria(patient_id=pick(id_prefixes)),
            newest,
            reader,
        ),
        (
            "accession, exact",
            lambda: SearchCriteria(accession=pick(world.accessions)),
            newest,
            reader,
        ),
        ("study date, one month", one_month, newest, reader),
        ("modality MR (20 %)", lambda: SearchCriteria(modality="MR"), newest, reader),
        ("modality NM (2 %)", lambda: SearchCriteria(modality="NM"), newest, reader),
        ("no filter, sorted by patient name", SearchCriteria, by_name, reader),
        # The organization-wide path (an administrator's role) skips the worklist entry check.
        (
            "no filter, administrator (organization-wide role)",
            SearchCriteria,
            newest,
            world.administrator,
        ),
    ]

    results: list[Measurement] = []
    for label, make_criteria, sort, user in searches:
        say(f"search: {label}")
        example = make_criteria()
        matches = search_studies(user, example).count()
        timing = timed(
            lambda make=make_criteria, order=sort, who=user: page(who, make(), order).studies,
            repetitions,
            budget,
        )
        plan = ""
        if explain:
            plan = query_plan(search_studies(user, example, sort=sort)[: PAGE_SIZE + 1])
        results.append(
            Measurement(label, "search, first page", *timing, matches=matches, plan=plan)
        )

    for label, criteria, sort in (
        ("newest first", SearchCriteria(), newest),
        ("sorted by patient name", SearchCriteria(), by_name),
        (f"name, common ({common[0]})", SearchCriteria(q=common[0]), newest),
    ):
        say(f"page 5: {label}")
        cursor = None
        for _ in range(4):
            cursor = page(reader, criteria, sort, cursor).next_cursor
            if cursor is None:
                break  # fewer than five pages at this size
        if cursor is None:
            continue
        timing = timed(
            lambda c=criteria, o=sort, k=cursor: page(reader, c, o, k).studies,
            repetitions,
            budget,
        )
        results.append(Measurement(f"page 5 by cursor, {label}", "pagination", *timing))

    client = Client()
    client.force_login(reader)
    directory, search = reverse("studies:directory"), reverse("studies:search")

    def listed(response) -> list:
        # The rows as the browser gets them (the test client records no template context
        # outside Django's test runner, and recording it would slow down what is measured).
        return response.content.split(b'<tr class="study-row')[1:]

    def get_directory() -> list:
        response = client.get(directory)
        if response.status_code != 200:
            raise RuntimeError(f"the directory answered {response.status_code}")
        return listed(response)

    def post_search_and_follow() -> list:
        response = client.post(search, {"q": pick(common)})
        if response.status_code != 302:
            raise RuntimeError(f"the search answered {response.status_code}")
        result = client.get(response["Location"])
        if result.status_code != 200:
            raise RuntimeError(f"the searched directory answered {result.status_code}")
        return listed(result)

    for label, request in (
        ("GET directory, no filter", get_directory),
        ("POST search by common name + GET the result page", post_search_and_follow),
    ):
        say(f"page: {label}")
        results.append(
            Measurement(label, "whole page (test client)", *timed(request, repetitions, budget))
        )
    return results


def query_plan(queryset) -> str:
    """The database's plan for the page query; PostgreSQL's with actual times and row counts."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return queryset.explain(analyze=True, buffers=True)
    return queryset.explain()


def timed(
    operation: Callable[[], list], repetitions: int, budget: float
) -> tuple[float, float, int, int, int]:
    """Warm up, then time ``operation`` ``repetitions`` times, or fewer (at least
    MIN_REPETITIONS) once the timed runs have taken ``budget`` seconds: a pathological query
    would otherwise hold the benchmark for an hour. Returns median and p95 (ms), the rows and
    SQL queries of the last run, and the number of timed runs."""
    from django.db import connection, reset_queries

    for _ in range(WARMUP):
        operation()
    samples: list[float] = []
    rows = queries = 0
    while len(samples) < repetitions:
        reset_queries()  # DEBUG keeps a query log: keep it short, and count this run's queries
        started = time.perf_counter()
        rows = len(operation())
        samples.append((time.perf_counter() - started) * 1000)
        queries = len(connection.queries)
        if sum(samples) > budget * 1000 and len(samples) >= MIN_REPETITIONS:
            break
    median, p95 = stats(samples)
    say(f"   median {median:.1f} ms, p95 {p95:.1f} ms over {len(samples)} runs")
    return median, p95, rows, queries, len(samples)


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return round(statistics.median(ordered), 2), round(p95, 2)


# --- Reporting -------------------------------------------------------------------------------


def markdown(results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [
        "# Patient Study Directory benchmark",
        "",
        f"{args.studies:,} studies of {patient_count(args.studies):,} patients, all in one "
        f"location worklist; {args.queries} timed runs per operation after {WARMUP} warm-up "
        f"runs (fewer, at least {MIN_REPETITIONS}, once an operation's runs exceed "
        f"{args.budget:g} s: see *runs*); pages of {PAGE_SIZE} rows; times in milliseconds. "
        f"{datetime.now():%Y-%m-%d %H:%M}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs.",
        "",
        "Searches run as a clinician who reaches the studies through the location worklist "
        "(the administrator row: through the organization-wide role). *queries*: SQL statements "
        "per operation; *matches*: all studies matching one sample of the criteria (name, ID, "
        "accession and month searches rotate over several values).",
        "",
    ]
    for result in results.values():
        lines += [
            f"## {result['vendor_version']}",
            "",
            f"Seeding: migrate {result['migrate_seconds']:.1f} s; bulk-create "
            f"{result['studies']:,} studies, {result['patients']:,} patients and the worklist "
            f"entries {result['seed_seconds']:.1f} s; ANALYZE {result['analyze_seconds']:.1f} s.",
            "",
            "| operation | kind | median | p95 | runs | rows | queries | matches |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for m in result["measurements"]:
            total = "" if m["matches"] is None else f"{m['matches']:,}"
            lines.append(
                f"| {m['name']} | {m['group']} | {m['median_ms']:.1f} | {m['p95_ms']:.1f} | "
                f"{m['repetitions']} | {m['rows']} | {m['queries']} | {total} |"
            )
        lines.append("")
    if "sqlite" in results and "postgres" in results:
        sqlite = {m["name"]: m for m in results["sqlite"]["measurements"]}
        postgres = {m["name"]: m for m in results["postgres"]["measurements"]}
        lines += [
            "## Side by side",
            "",
            "| operation | SQLite median | SQLite p95 | PostgreSQL median | PostgreSQL p95 "
            "| PostgreSQL / SQLite (median) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, left in sqlite.items():
            right = postgres.get(name)
            if right is None:
                continue
            ratio = right["median_ms"] / left["median_ms"] if left["median_ms"] else float("nan")
            lines.append(
                f"| {name} | {left['median_ms']:.1f} | {left['p95_ms']:.1f} | "
                f"{right['median_ms']:.1f} | {right['p95_ms']:.1f} | {ratio:.2f} |"
            )
        lines += [
            "",
            f"Seeding: SQLite {results['sqlite']['seed_seconds']:.1f} s, PostgreSQL "
            f"{results['postgres']['seed_seconds']:.1f} s.",
            "",
        ]
    plans = [
        (result["vendor_version"], m)
        for result in results.values()
        for m in result["measurements"]
        if m["plan"]
    ]
    if plans:
        lines += ["## Query plans of the page queries", ""]
        for vendor, m in plans:
            lines += [f"### {vendor}: {m['name']}", "", "```", m["plan"], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the finally blocks above have cleaned up already
        sys.exit(130)
