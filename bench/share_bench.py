"""How long does sharing 50 studies with 20 users take, and how fast is the recipient's directory
page once they hold 10,000 shared studies, on SQLite and on PostgreSQL?

    .venv/bin/python bench/share_bench.py                      # both databases, full sizes
    .venv/bin/python bench/share_bench.py --entries 1000 --other-studies 2000 --share-rounds 5 \\
        --page-runs 5                                          # a smoke check

For each database the script makes a throwaway database (an SQLite file in a temporary folder;
PostgreSQL database ``portal_share_bench``, dropped and re-created), then runs itself again in a
subprocess whose environment points the portal's own settings at it, as ``directory_bench.py``
does. That subprocess migrates, bulk-creates the data and measures two things, each against a
baseline measured side by side in the same run (on a shared, noisy machine the ratios are the
figures to trust, not the milliseconds):

- **the share**: ``sharing.services.shares.share_studies`` of 50 studies with 20 user recipients,
  ``send_mail=True`` (20 emails queued in the outbox, published on commit to an in-memory Celery
  broker, so nothing is delivered), one transaction with its audit events; against a plain bulk
  insert of the same 1,000 ``Entry`` rows, the two alternating round by round;
- **the recipient's directory page**: ``GET /studies/`` through Django's test client (logged in
  with ``force_login``, past the one-time code for the administrator, so the request goes
  through the middleware, ``studies.access`` and ``studies.selectors`` as a browser's does),
  the personal worklist selected, and a name search, for users who hold 10,000 studies through
  share entries (plain; with messages and labels; with some anonymized) against an
  administrator who sees the same 10,000 studies through the role, and a radiologist who sees
  them through the location worklist.

The parent prints Markdown tables (standard output; progress goes to standard error), optionally
writes JSON, and removes everything it made. See bench/README.md, "Sharing".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import run_each_database, run_worker_on_throwaway  # noqa: E402

DATABASES = ("sqlite", "postgres")
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
BENCH_DATABASE = "portal_share_bench"
SHARE_WARMUP = 3  # the second is profiled statement by statement, the third by function
PAGE_WARMUP = 3
PROFILED_RUNS = 5  # untimed runs of each page operation whose statements are timed
MIN_ROUNDS = 10
BATCH = 5000
STUDIES_PER_SEEDED_SHARE = 50
SEED = 20240607  # the same data on every run and every database

# How the page recipients' shares are made (one share in N carries it).
MESSAGE_EVERY = 4
LABEL_EVERY = 3
ANONYMIZED_EVERY = 10
UNLIMITED_EVERY = 10
EXPIRED_FRACTION = 0.1  # extra, expired shares over that share of the studies

# Who the page is measured for (the README and the report's preamble describe each).
USER_LABELS = {
    "plain": "recipient, plain shares",
    "badges": "recipient, messages and labels",
    "anonymized": "recipient, some anonymized",
    "role": "administrator (role)",
    "location": "radiologist (location worklist)",
}

MESSAGE = "Please compare with the previous study; the patient is seen on Thursday."
LABEL = "Tumour board"


def directory_bench():
    """``directory_bench.py``, a sibling script (not a package) whose generators (names, dates,
    modalities) and statistics, version and progress this one shares: found through this folder
    whoever imports this file. The throwaway database comes from ``bench/harness.py``."""
    folder = str(Path(__file__).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import directory_bench as sibling

    return sibling


def say(message: str) -> None:
    directory_bench().say(message)


def stats(samples: list[float]) -> tuple[float, float]:
    return directory_bench().stats(samples)


# --- The parent: one subprocess per database -------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    return run_each_database(
        args,
        heading=(
            f"share {args.share_studies} x {args.recipients}, page with "
            f"{args.entries:,} shared entries"
        ),
        run_database=run_database,
        report=markdown,
        parameters=parameters,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark sharing (share_studies against a bulk insert) and the "
        "recipient's directory page (share entries against the organization role) on a "
        "throwaway database (SQLite and/or PostgreSQL).",
    )
    parser.add_argument(
        "--entries",
        type=int,
        default=10_000,
        help="studies each page recipient holds through shares, all the hospital has "
        "(default 10000)",
    )
    parser.add_argument(
        "--other-studies",
        type=int,
        default=40_000,
        help="studies of another organization nobody measured sees, so the shared ones are "
        "not the whole table (default 40000)",
    )
    parser.add_argument(
        "--share-studies", type=int, default=50, help="studies per share (default 50)"
    )
    parser.add_argument(
        "--recipients", type=int, default=20, help="user recipients per share (default 20)"
    )
    parser.add_argument(
        "--share-rounds",
        type=int,
        default=20,
        help=f"timed shares, each next to a bulk insert (after {SHARE_WARMUP} warm-up rounds; "
        "default 20)",
    )
    parser.add_argument(
        "--page-runs",
        type=int,
        default=30,
        help=f"timed rounds of every page operation (after {PAGE_WARMUP} warm-up runs; default 30)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="seconds after which the page rounds stop (at least "
        f"{MIN_ROUNDS} rounds; default 300)",
    )
    parser.add_argument(
        "--databases",
        default=",".join(DATABASES),
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        help="comma-separated: sqlite, postgres (default both)",
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
        help="also print the slowest SQL statement of each page operation with its plan "
        "(PostgreSQL: EXPLAIN ANALYZE)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.databases) - set(DATABASES)
    if unknown or not args.databases:
        parser.error(f"--databases takes {', '.join(DATABASES)}; got {', '.join(args.databases)}")
    if (
        min(args.entries, args.share_studies, args.recipients, args.share_rounds, args.page_runs)
        < 1
    ):
        parser.error(
            "--entries, --share-studies, --recipients, --share-rounds and --page-runs must be "
            "positive"
        )
    if args.other_studies < 0:
        parser.error("--other-studies cannot be negative")
    if args.recipients > 100:
        parser.error(
            "a share takes at most 100 recipients (sharing.services.shares.MAX_RECIPIENTS)"
        )
    return args


def parameters(args: argparse.Namespace) -> dict:
    return {
        "entries": args.entries,
        "other_studies": args.other_studies,
        "share_studies": args.share_studies,
        "recipients": args.recipients,
        "share_rounds": args.share_rounds,
        "page_runs": args.page_runs,
        "budget_seconds": args.budget,
        "databases": args.databases,
    }


def run_database(database: str, args: argparse.Namespace) -> dict:
    return run_worker_on_throwaway(
        database,
        script=Path(__file__).resolve(),
        postgres_url=args.postgres_url,
        database_name=BENCH_DATABASE,
        worker_args=[
            "--entries",
            str(args.entries),
            "--other-studies",
            str(args.other_studies),
            "--share-studies",
            str(args.share_studies),
            "--recipients",
            str(args.recipients),
            "--share-rounds",
            str(args.share_rounds),
            "--page-runs",
            str(args.page_runs),
            "--budget",
            str(args.budget),
            *(["--explain"] if args.explain else []),
        ],
        # A broker that only holds the published tasks in this process: the outbox rows are
        # written and published on commit, as with Redis, and nothing is delivered (with no
        # broker at all the embedded set-up would send each email during the commit).
        environment={"CELERY_BROKER_URL": "memory://"},
    )


# --- The worker: seed and measure one database -----------------------------------------------


@dataclass
class World:
    # The page: who sees the hospital's studies, and how.
    page_users: list[tuple[str, object, int]]  # (label, user, the worklist their page selects)
    role_label: str
    common_names: list[str]  # frequent family names among the hospital's patients
    # The share: who shares what with whom.
    sender: object
    share_recipients: list[object]
    recipient_worklist_ids: list[int]
    share_batches: list[list[int]]  # study pks, one list per round (warm-up rounds first)
    counts: dict[str, int] = field(default_factory=dict)


def worker(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.urls import NoReverseMatch, reverse

    # Fail now, not after minutes of seeding, if what is measured does not import or the page
    # cannot render (every context-menu item's view must exist).
    reverse("studies:directory")
    import sharing.services.shares  # noqa: F401
    import studies.selectors  # noqa: F401
    from studies import menu

    for item in menu._registry.values():  # studies.menu has no public listing of its items
        try:
            if item.url_name:
                reverse(item.url_name)
        except NoReverseMatch as exc:
            raise SystemExit(
                f"The directory cannot render: its menu item {item.key!r} names the URL "
                f"{item.url_name!r}, which does not exist."
            ) from exc

    database = args.databases[0]
    say(f"migrating ({connection.vendor})")
    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    migrate_seconds = time.perf_counter() - started

    started = time.perf_counter()
    world = seed(args)
    seed_seconds = time.perf_counter() - started
    say(f"seeded in {seed_seconds:.1f} s: {world.counts}")

    started = time.perf_counter()
    directory_bench().analyze()
    analyze_seconds = time.perf_counter() - started

    result = {
        "database": database,
        "vendor_version": directory_bench().vendor_version(),
        "migrate_seconds": round(migrate_seconds, 2),
        "seed_seconds": round(seed_seconds, 2),
        "analyze_seconds": round(analyze_seconds, 2),
        "counts": world.counts,
    }
    # The page first, on the data as seeded and analyzed; the shares then add their rows.
    result["load_before"] = load_average()
    result["pages"] = measure_pages(world, args)
    result["share"] = measure_shares(world, args)
    result["load_after"] = load_average()
    Path(args.worker_output).write_text(json.dumps(result), encoding="utf-8")
    return 0


# --- Seeding -----------------------------------------------------------------------------------


def seed(args: argparse.Namespace) -> World:
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import Location, Membership, Organization, Role, User
    from accounts.permissions import ADMINISTRATOR, CLINICIAN
    from studies.services.worklists import location_worklist, personal_worklist

    rng = random.Random(SEED)
    today = timezone.localdate()
    with transaction.atomic():
        clinician = Role.objects.create(name="Clinician", permissions=[p.value for p in CLINICIAN])
        administrator_role = Role.objects.create(
            name="Administrator", permissions=[p.value for p in ADMINISTRATOR]
        )

        def member(username: str, organization, role, location=None, language="en"):
            user = User.objects.create_user(
                username,
                email=f"{username}@bench.example",
                first_name=username.split("-")[0].title(),
                last_name="Bench",
                language=language,
            )
            membership = Membership.objects.create(user=user, organization=organization, role=role)
            if location is not None:
                membership.locations.add(location)
            return user

        # The hospital whose studies are shared with the page recipients.
        hospital = Organization.objects.create(name="Bench General Hospital")
        radiology = Location.objects.create(organization=hospital, name="Radiology")
        radiology_worklist = location_worklist(radiology)
        administrator = member("admin", hospital, administrator_role)
        radiologist = member("radiologist", hospital, clinician, radiology)

        # Another hospital: studies in the same tables that none of the measured users sees.
        other = Organization.objects.create(name="Bench Other Hospital")
        other_location = Location.objects.create(organization=other, name="Imaging")
        other_worklist = location_worklist(other_location)

        # The hospital that shares in the timed shares, and the practice its recipients work in.
        sharing_hospital = Organization.objects.create(name="Bench Sharing Hospital")
        cardiology = Location.objects.create(organization=sharing_hospital, name="Cardiology")
        cardiology_worklist = location_worklist(cardiology)
        sender = member("sender", sharing_hospital, clinician, cardiology)
        practice = Organization.objects.create(name="Bench Referring Practice", searchable=True)
        consultation = Location.objects.create(organization=practice, name="Consultation")
        languages = ["en", "fr", "nl", "de"]
        share_recipients = [
            member(f"colleague-{n:03d}", practice, clinician, consultation, languages[n % 4])
            for n in range(1, args.recipients + 1)
        ]
        # Recipients who were shared with before already have their personal worklist.
        recipient_worklist_ids = [personal_worklist(user).pk for user in share_recipients]

        page_recipients = {
            "plain": member("recipient-plain", practice, clinician, consultation),
            "badges": member("recipient-badges", practice, clinician, consultation),
            "anonymized": member("recipient-anonymized", practice, clinician, consultation),
        }

    counts: dict[str, int] = {}
    hospital_studies, families = make_studies(
        rng, hospital, radiology, radiology_worklist, args.entries, "1"
    )
    counts["hospital studies"] = len(hospital_studies)
    say(f"{len(hospital_studies):,} hospital studies")
    if args.other_studies:
        other_studies, _ = make_studies(
            rng, other, other_location, other_worklist, args.other_studies, "2"
        )
        counts["other studies"] = len(other_studies)
        say(f"{len(other_studies):,} other studies")
    rounds = SHARE_WARMUP + args.share_rounds
    shared_studies, _ = make_studies(
        rng, sharing_hospital, cardiology, cardiology_worklist, rounds * args.share_studies, "3"
    )
    counts["studies to share"] = len(shared_studies)

    page_worklists = {}
    for kind, user in page_recipients.items():
        worklist = personal_worklist(user)
        page_worklists[kind] = worklist.pk
        made = seed_received_shares(
            rng,
            recipient=user,
            worklist=worklist,
            study_pks=hospital_studies,
            sender=radiologist,
            organization=hospital,
            today=today,
            message_every=MESSAGE_EVERY if kind == "badges" else 0,
            label_every=LABEL_EVERY if kind == "badges" else 0,
            anonymized_every=ANONYMIZED_EVERY if kind == "anonymized" else 0,
        )
        for key, value in made.items():
            counts[f"{kind}: {key}"] = value
        say(f"{kind} recipient: {made}")

    counted: dict[str, int] = {}
    for family in families:
        counted[family] = counted.get(family, 0) + 1
    from studies.dicom_header import normalize_name

    common = [normalize_name(name) for name in sorted(counted, key=lambda n: -counted[n])[:3]]
    return World(
        page_users=[
            (USER_LABELS["plain"], page_recipients["plain"], page_worklists["plain"]),
            (USER_LABELS["badges"], page_recipients["badges"], page_worklists["badges"]),
            (
                USER_LABELS["anonymized"],
                page_recipients["anonymized"],
                page_worklists["anonymized"],
            ),
            (USER_LABELS["role"], administrator, radiology_worklist.pk),
            (USER_LABELS["location"], radiologist, radiology_worklist.pk),
        ],
        role_label=USER_LABELS["role"],
        common_names=common,
        sender=sender,
        share_recipients=share_recipients,
        recipient_worklist_ids=recipient_worklist_ids,
        share_batches=[
            shared_studies[i : i + args.share_studies]
            for i in range(0, rounds * args.share_studies, args.share_studies)
        ],
        counts=counts,
    )


def make_studies(rng, organization, location, worklist, count: int, uid_part: str):
    """Patients (30 % as many) and studies as ingestion leaves them, each filed in the location
    worklist; the same generator as ``directory_bench.py`` (names with accents, Zipf-like name
    frequencies, a realistic modality mix). Returns the study pks and the family names."""
    from django.db import transaction

    from studies.dicom_header import normalize_name, split_person_name
    from studies.models import Entry, EntryOrigin, Patient, Study

    names = directory_bench()
    n_patients = max(1, round(count * 0.3))
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(names.FAMILY_NAMES))]
    families = rng.choices(names.FAMILY_NAMES, weights=weights, k=n_patients)
    with transaction.atomic():
        patients = []
        for number, family in enumerate(families, start=1):
            name = split_person_name(f"{family}^{rng.choice(names.GIVEN_NAMES)}")
            patients.append(
                Patient(
                    organization=organization,
                    patient_id=f"P{uid_part}{number:07d}",
                    name=name.raw,
                    family_name=name.family,
                    given_name=name.given,
                    name_search=name.search,
                    birth_date=date(1930, 1, 1) + timedelta(days=rng.randrange(90 * 365)),
                    sex=rng.choice("FM"),
                )
            )
        Patient.objects.bulk_create(patients, batch_size=BATCH)
        patient_rows = list(
            Patient.objects.filter(organization=organization)
            .order_by("pk")
            .values_list("pk", "name")
        )
    patient_pks = [pk for pk, _name in patient_rows]
    sort_names = {pk: normalize_name(name)[:200] for pk, name in patient_rows}

    last_date = date.today()
    first_date = last_date - timedelta(days=10 * 365)
    mix_weights = [share for _modality, share, _descriptions in names.MODALITY_MIX]
    study_pks: list[int] = []
    for start in range(0, count, BATCH):
        with transaction.atomic():
            rows = []
            for number in range(start + 1, min(start + BATCH, count) + 1):
                modality, _share, descriptions = rng.choices(
                    names.MODALITY_MIX, weights=mix_weights
                )[0]
                study_date = first_date + timedelta(days=rng.randrange(10 * 365 + 1))
                series = rng.randint(1, 6)
                patient_pk = rng.choice(patient_pks)
                rows.append(
                    Study(
                        organization=organization,
                        patient_id=patient_pk,
                        patient_sort_name=sort_names[patient_pk],
                        study_uid=f"1.2.826.0.1.3680043.10.543.{SEED}.{uid_part}.{number}",
                        study_date=study_date,
                        study_time=clock(rng.randrange(24), rng.randrange(60)),
                        description=rng.choice(descriptions),
                        accession=f"A{uid_part}{study_date:%y}{number:08d}",
                        referring_physician=f"Dr. {rng.choice(names.FAMILY_NAMES)}",
                        institution=organization.name,
                        modalities=modality,
                        series_count=series,
                        instance_count=series * rng.randint(1, 300),
                        received_location=location,
                    )
                )
            created = Study.objects.bulk_create(rows, batch_size=BATCH)
            Entry.objects.bulk_create(
                [
                    Entry(worklist=worklist, study=study, origin=EntryOrigin.INGESTION)
                    for study in created
                ],
                batch_size=BATCH,
            )
            study_pks.extend(study.pk for study in created)
    return study_pks, families


def seed_received_shares(
    rng,
    *,
    recipient,
    worklist,
    study_pks: list[int],
    sender,
    organization,
    today: date,
    message_every: int,
    label_every: int,
    anonymized_every: int,
) -> dict[str, int]:
    """What ``share_studies`` leaves behind for one recipient, bulk-created: shares of 50
    studies each covering every study once (most valid 30 days, one in ten unlimited), plus
    expired shares over a tenth of them, with their ShareRecipient, Entry and link rows."""
    from django.db import transaction
    from django.utils import timezone

    from sharing.models import RecipientKind, Share, ShareRecipient
    from sharing.services.entries import end_of_day
    from studies.models import AccessLevel, Entry, EntryOrigin

    order = list(study_pks)
    rng.shuffle(order)  # a share's studies are spread over the years, not one date range
    size = STUDIES_PER_SEEDED_SHARE
    chunks = [(order[i : i + size], False) for i in range(0, len(order), size)]
    expired = rng.sample(study_pks, round(len(study_pks) * EXPIRED_FRACTION))
    chunks += [(expired[i : i + size], True) for i in range(0, len(expired), size)]
    now = timezone.now()
    made = {"shares": 0, "entries": 0, "active entries": 0, "with message": 0, "with label": 0}
    made["anonymized entries"] = 0

    for first in range(0, len(chunks), BATCH // size):
        batch = chunks[first : first + BATCH // size]
        with transaction.atomic():
            shares = []
            for index, (_studies, is_expired) in enumerate(batch, start=first):
                if is_expired:
                    valid_until = today - timedelta(days=1 + index % 300)
                elif index % UNLIMITED_EVERY == UNLIMITED_EVERY - 1:
                    valid_until = None
                else:
                    valid_until = today + timedelta(days=30)
                shares.append(
                    Share(
                        organization=organization,
                        sender=sender,
                        level=AccessLevel.REPORT_READ,
                        reason="Second opinion",
                        patient_agreed=True,
                        valid_until=valid_until,
                        language="en",
                        label=LABEL if label_every and index % label_every == 1 else "",
                        message=MESSAGE if message_every and index % message_every == 0 else "",
                        anonymize=bool(anonymized_every and index % anonymized_every == 2),
                        send_mail=True,
                    )
                )
            shares = Share.objects.bulk_create(shares)
            Share.studies.through.objects.bulk_create(
                [
                    Share.studies.through(share_id=share.pk, study_id=study_pk)
                    for share, (studies, _expired) in zip(shares, batch, strict=True)
                    for study_pk in studies
                ],
                batch_size=BATCH,
            )
            share_recipients = ShareRecipient.objects.bulk_create(
                [
                    ShareRecipient(
                        share=share, kind=RecipientKind.USER, user=recipient, worklist=worklist
                    )
                    for share in shares
                ]
            )
            entries, owners = [], []
            for share, row, (studies, _expired) in zip(
                shares, share_recipients, batch, strict=True
            ):
                until = end_of_day(share.valid_until) if share.valid_until else None
                for study_pk in studies:
                    entries.append(
                        Entry(
                            worklist=worklist,
                            study_id=study_pk,
                            origin=EntryOrigin.SHARE,
                            added_by=sender,
                            level=share.level,
                            anonymized=share.anonymize,
                            can_share=share.allow_further_sharing,
                            two_factor_required=share.two_factor,
                            valid_until=until,
                            label=share.label,
                            message=share.message,
                            # Half of the messages were read (green badge), half not (red).
                            opened_at=now if share.message and rng.random() < 0.5 else None,
                        )
                    )
                    owners.append(row)
                    active = until is None or until > now
                    made["active entries"] += active
                    made["with message"] += bool(active and share.message)
                    made["with label"] += bool(active and share.label)
                    made["anonymized entries"] += bool(active and share.anonymize)
            entries = Entry.objects.bulk_create(entries, batch_size=BATCH)
            ShareRecipient.entries.through.objects.bulk_create(
                [
                    ShareRecipient.entries.through(sharerecipient_id=row.pk, entry_id=entry.pk)
                    for row, entry in zip(owners, entries, strict=True)
                ],
                batch_size=BATCH,
            )
            made["shares"] += len(shares)
            made["entries"] += len(entries)
    return made


# --- Measuring: the recipient's page -----------------------------------------------------------


# --- SQL profile -------------------------------------------------------------------------------


_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?([\w.]+)"?', re.IGNORECASE)
_PARENTHESIZED = re.compile(r"\([^()]*\)")


@dataclass
class Statement:
    sql: str
    params: object
    many: bool
    seconds: float


class SqlProfile:
    """Every SQL statement run while installed with ``connection.execute_wrapper``, with its own
    time: Django's query log rounds to whole milliseconds, too coarse for 0.1 ms statements.
    Only untimed runs are profiled, so the wrapper never weighs on a timed one."""

    def __init__(self) -> None:
        self.statements: list[Statement] = []

    def __call__(self, execute, sql, params, many, context):
        begin = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.statements.append(Statement(sql, params, many, time.perf_counter() - begin))

    @classmethod
    def typical(cls, profiles: list[SqlProfile]) -> SqlProfile:
        """One profile standing for several runs of the same operation: each statement with its
        median time when the runs ran the same statements, else the run of median total. A
        single run is at the mercy of a busy machine (a 0.1 ms lookup measured at 6 ms)."""
        shapes = {tuple(s.sql for s in profile.statements) for profile in profiles}
        if len(shapes) != 1:
            return sorted(profiles, key=lambda profile: profile.total_ms)[len(profiles) // 2]
        typical = cls()
        for same in zip(*(profile.statements for profile in profiles), strict=True):
            seconds = statistics.median(statement.seconds for statement in same)
            typical.statements.append(Statement(same[0].sql, same[0].params, same[0].many, seconds))
        return typical

    def retime_reads(self) -> None:
        """SQLite only: Python's sqlite3 runs a SELECT up to its first row in ``execute`` and
        steps through the rest while Django fetches, outside the wrapper; run each read again
        with every row fetched, so its time is the whole query's (read-only, so harmless)."""
        from django.db import connection

        for index, statement in enumerate(self.statements):
            if statement.many or not statement.sql.lstrip().upper().startswith("SELECT"):
                continue
            with connection.cursor() as cursor:
                begin = time.perf_counter()
                cursor.execute(statement.sql, statement.params)
                cursor.fetchall()
                seconds = time.perf_counter() - begin
            self.statements[index] = Statement(
                statement.sql, statement.params, statement.many, seconds
            )

    @property
    def total_ms(self) -> float:
        return round(sum(s.seconds for s in self.statements) * 1000, 2)

    def slowest(self, count: int) -> list[Statement]:
        return sorted(self.statements, key=lambda s: -s.seconds)[:count]

    def by_kind(self) -> list[dict]:
        """Statements grouped by verb and first table, the costliest first."""
        groups: dict[str, list[float]] = {}
        for statement in self.statements:
            groups.setdefault(kind_of(statement.sql), []).append(statement.seconds)
        return sorted(
            (
                {"kind": kind, "count": len(times), "ms": round(sum(times) * 1000, 2)}
                for kind, times in groups.items()
            ),
            key=lambda group: -group["ms"],
        )


def kind_of(statement: str) -> str:
    words = statement.split(None, 1)
    verb = words[0].upper() if words else "?"
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return "SAVEPOINT / RELEASE"
    # The statement's own table, not a subquery's: drop every parenthesized part first.
    outer, previous = statement, None
    while outer != previous:
        previous, outer = outer, _PARENTHESIZED.sub("", outer)
    found = _TABLE.search(outer)
    return f"{verb} {found.group(1)}" if found else verb


def is_page_query(statement: str) -> bool:
    """Whether this is the keyset page query of ``studies.pagination.paginate``: studies, in
    order, LIMIT page size + 1."""
    return (
        kind_of(statement) == "SELECT studies_study"
        and "ORDER BY" in statement
        and "LIMIT" in statement
    )


def printable(statement: Statement) -> dict:
    return {
        "ms": round(statement.seconds * 1000, 3),
        "sql": statement.sql,
        "params": repr(statement.params),
    }


def explain(statement: Statement) -> str:
    """The plan of one profiled statement, with its parameters (PostgreSQL: run, with actual
    times and buffers; SQLite: EXPLAIN QUERY PLAN)."""
    from django.db import connection

    if statement.many or not statement.sql.lstrip().upper().startswith("SELECT"):
        return ""
    postgres = connection.vendor == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    with connection.cursor() as cursor:
        cursor.execute(prefix + statement.sql, statement.params)
        rows = cursor.fetchall()
    if postgres:
        return "\n".join(row[0] for row in rows)
    # SQLite: (id, parent, notused, detail), indented by depth as the sqlite3 shell does.
    depth = {0: -1}
    lines = []
    for node, parent, _unused, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return "\n".join(lines)


# --- Measuring: the recipient's page -----------------------------------------------------------


@dataclass
class PageMeasurement:
    user: str
    operation: str
    median_ms: float
    p95_ms: float
    runs: int
    rows: int  # study rows on the page, last timed run
    badges: dict[str, int]  # message (unread/read), label and anonymized marks, last timed run
    queries: int  # SQL statements of one run (profiled runs, after the timed ones)
    sql_ms: float  # their own time (per statement, the median of the profiled runs)
    versus_role: float  # median of the per-round ratios to the administrator's same operation
    samples_ms: list[float]
    slowest: list[dict] = field(default_factory=list)  # the profiled run's slowest statements
    plan: str = ""  # the slowest statement's plan, with --explain
    page_query: dict | None = None  # the statement that fetches the page's studies
    page_plan: str = ""  # its plan, with --explain


def signed_in(client, user) -> None:
    """A session as far as the portal lets ``user`` go: an administrator must pass a one-time
    code (accounts.policy), so the session carries the device it passed with, as after the
    code page."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.policy import needs_two_factor

    client.force_login(user)
    if needs_two_factor(user):
        device, _ = TOTPDevice.objects.get_or_create(user=user, name="bench", confirmed=True)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()


def measure_pages(world: World, args: argparse.Namespace) -> list[dict]:
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    directory, search = reverse("studies:directory"), reverse("studies:search")
    rng = random.Random(SEED + 1)

    def checked(response, status=200):
        if response.status_code != status:
            raise RuntimeError(
                f"{response.request['PATH_INFO']} answered {response.status_code}"
                + (f" to {response['Location']}" if response.has_header("Location") else "")
            )
        return response

    def page_of(response) -> tuple[int, dict[str, int]]:
        # What the browser gets (recording the template context would slow what is measured).
        content = response.content
        return content.count(b'<tr class="study-row'), {
            "message unread": content.count(b'class="badge unread"'),
            "message read": content.count(b'class="badge read"'),
            "label": content.count(b'class="badge label"'),
            "anonymized": content.count(b'<tr class="study-row anonymized'),
        }

    operations: list[tuple[str, str, Callable[[], tuple[int, dict]]]] = []
    for label, user, worklist_id in world.page_users:
        client = Client()
        signed_in(client, user)

        def all_studies(client=client):
            return page_of(checked(client.get(directory)))

        def worklist(client=client, worklist_id=worklist_id):
            return page_of(checked(client.get(directory, {"worklist": worklist_id})))

        def name_search(client=client):
            # As the browser does it: the criteria go to the session, the result page follows.
            found = checked(client.post(search, {"q": rng.choice(world.common_names)}), 302)
            return page_of(checked(client.get(found["Location"])))

        operations += [
            (label, "directory, newest first", all_studies),
            (label, "own worklist selected", worklist),
            (label, "name search (POST + GET)", name_search),
        ]

    say(f"page: {len(operations)} operations, warming up")
    for _user, _operation, run in operations:
        for _ in range(PAGE_WARMUP):
            run()
    samples: dict[int, list[float]] = {index: [] for index in range(len(operations))}
    seen: dict[int, tuple[int, dict]] = {}
    started = time.perf_counter()
    rounds = 0
    while rounds < args.page_runs:
        # Each round runs every operation once, starting one further each round, so a machine
        # that gets busier slows all of them alike and no operation always follows another.
        shift = rounds % len(operations)
        for index in [*range(shift, len(operations)), *range(shift)]:
            connection.queries_log.clear()  # DEBUG keeps a log of statements: keep it short
            begin = time.perf_counter()
            seen[index] = operations[index][2]()
            samples[index].append((time.perf_counter() - begin) * 1000)
        rounds += 1
        if time.perf_counter() - started > args.budget and rounds >= MIN_ROUNDS:
            break
    say(f"page: {rounds} rounds in {time.perf_counter() - started:.0f} s")

    role_samples = {
        operation: samples[index]
        for index, (user, operation, _run) in enumerate(operations)
        if user == world.role_label
    }
    results = []
    for index, (user, operation, run) in enumerate(operations):
        profiles = []
        for _ in range(PROFILED_RUNS):
            profiles.append(SqlProfile())
            with connection.execute_wrapper(profiles[-1]):
                run()
            if connection.vendor == "sqlite":
                profiles[-1].retime_reads()
        profile = SqlProfile.typical(profiles)
        rows, badges = seen[index]
        median, p95 = stats(samples[index])
        pairs = zip(samples[index], role_samples[operation], strict=True)
        measurement = PageMeasurement(
            user=user,
            operation=operation,
            median_ms=median,
            p95_ms=p95,
            runs=len(samples[index]),
            rows=rows,
            badges=badges,
            queries=len(profile.statements),
            sql_ms=profile.total_ms,
            versus_role=round(statistics.median(mine / role for mine, role in pairs), 3),
            samples_ms=[round(s, 3) for s in samples[index]],
            slowest=[printable(s) for s in profile.slowest(3)],
        )
        page_query = next((s for s in profile.statements if is_page_query(s.sql)), None)
        if page_query is not None:
            measurement.page_query = printable(page_query)
        if args.explain and profile.statements:
            slowest = profile.slowest(1)[0]
            measurement.plan = explain(slowest)
            if page_query is not None:
                measurement.page_plan = (
                    measurement.plan if page_query is slowest else explain(page_query)
                )
        say(
            f"{user} / {operation}: median {median:.1f} ms, p95 {p95:.1f} ms, "
            f"{measurement.queries} queries ({measurement.sql_ms:.1f} ms), "
            f"x{measurement.versus_role:.2f} the role path"
        )
        results.append(asdict(measurement))
    return results


# --- Measuring: the share ----------------------------------------------------------------------


def measure_shares(world: World, args: argparse.Namespace) -> dict:
    from django.db import connection, transaction
    from django.utils import timezone

    from audit.models import Action, AuditEvent
    from notifications.models import Message, MessageStatus
    from sharing.models import ShareRecipient
    from sharing.services.entries import end_of_day
    from sharing.services.shares import Recipient, ShareOptions, share_studies
    from studies.models import AccessLevel, Entry, EntryOrigin, Study

    publish_failures = _count_warnings("notifications.services")
    recipients = [Recipient("user", user.pk) for user in world.share_recipients]
    options = ShareOptions(
        access=AccessLevel.REPORT_READ,
        reason="Multidisciplinary consultation",
        patient_agreed=True,
        label=LABEL,
        message=MESSAGE,
        send_mail=True,
    )
    per_share = args.share_studies * args.recipients

    def studies_of(batch: list[int]) -> list[Study]:
        # As a view hands them over: the selected studies with their patients.
        return list(Study.objects.filter(pk__in=batch).select_related("patient").order_by("pk"))

    def share(batch: list[Study]):
        return share_studies(
            sender=world.sender, studies=batch, recipients=recipients, options=options
        )

    def bulk_insert(batch: list[Study]) -> None:
        # The same rows the share puts in the recipients' worklists, and nothing else.
        until = end_of_day(timezone.localdate() + timedelta(days=30))
        with transaction.atomic():
            Entry.objects.bulk_create(
                [
                    Entry(
                        worklist_id=worklist_id,
                        study=study,
                        origin=EntryOrigin.SHARE,
                        added_by=world.sender,
                        level=AccessLevel.REPORT_READ,
                        anonymized=False,
                        can_share=False,
                        valid_until=until,
                        label=LABEL,
                        message=MESSAGE,
                    )
                    for worklist_id in world.recipient_worklist_ids
                    for study in batch
                ]
            )

    share_ms: list[float] = []
    insert_ms: list[float] = []
    profiled: dict[str, dict] = {}
    functions: dict = {}
    written: dict[str, int] = {}
    for number, batch_pks in enumerate(world.share_batches):
        warmup = number < SHARE_WARMUP
        # Two warm-up rounds are profiled, statement by statement and function by function;
        # the timed ones are not.
        profiling = number == SHARE_WARMUP - 2
        profiling_functions = number == SHARE_WARMUP - 1
        batch = studies_of(batch_pks)
        timings = {}
        # Alternate which goes first, so neither always runs on a warmer cache.
        order = ("share", "insert") if number % 2 == 0 else ("insert", "share")
        for step in order:
            profile = SqlProfile()
            connection.queries_log.clear()
            with connection.execute_wrapper(profile) if profiling else nullcontext():
                begin = time.perf_counter()
                if step == "share" and profiling_functions:
                    made, functions = python_profile(lambda batch=batch: share(batch))
                elif step == "share":
                    made = share(batch)
                else:
                    bulk_insert(batch)
                timings[step] = (time.perf_counter() - begin) * 1000
            if profiling:
                profiled[step] = {
                    "wall_ms": round(timings[step], 2),
                    "sql_ms": profile.total_ms,
                    "queries": len(profile.statements),
                    "by_kind": profile.by_kind(),
                }
        # Check (untimed) that the share did what is claimed: every entry, and one queued
        # email per recipient in the outbox.
        written = {
            "entries": ShareRecipient.entries.through.objects.filter(
                sharerecipient__share=made
            ).count(),
            "emails queued": Message.objects.filter(
                concerning_type="share", concerning_id=str(made.pk), status=MessageStatus.QUEUED
            ).count(),
            "audit events": AuditEvent.objects.filter(
                action=Action.SHARE_CREATED, target_type="share", target_id=str(made.pk)
            ).count(),
        }
        if written["entries"] != per_share or written["emails queued"] != args.recipients:
            raise RuntimeError(
                f"share {made.pk} wrote {written}, expected {per_share} entries and "
                f"{args.recipients} queued emails"
            )
        if not warmup:
            share_ms.append(timings["share"])
            insert_ms.append(timings["insert"])
            say(
                f"share {number - SHARE_WARMUP + 1}: {timings['share']:.0f} ms, "
                f"bulk insert {timings['insert']:.0f} ms"
            )

    def summary(samples: list[float], step: str) -> dict:
        median, p95 = stats(samples)
        return {
            "median_ms": median,
            "p95_ms": p95,
            "runs": len(samples),
            "samples_ms": [round(s, 3) for s in samples],
            "profiled": profiled[step],
        }

    ratios = [mine / theirs for mine, theirs in zip(share_ms, insert_ms, strict=True)]
    return {
        "studies": args.share_studies,
        "recipients": args.recipients,
        "entries_per_share": per_share,
        "share": summary(share_ms, "share"),
        "bulk_insert": summary(insert_ms, "insert"),
        "ratio": round(statistics.median(ratios), 3),
        "written": written,
        "publish_failures": publish_failures.count,
        "functions": functions,
    }


def python_profile(call: Callable[[], object]) -> tuple[object, dict]:
    """Run ``call`` under cProfile; the portal's own functions by cumulative time (nested calls
    overlap), which names the steps of the share whatever the service's internals become."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        returned = call()
    finally:
        profiler.disable()
    table = pstats.Stats(profiler).stats
    total = max((row[3] for row in table.values()), default=0.0)
    functions = []
    for (filename, _line, name), (_primitive, calls, _own, cumulative, _callers) in table.items():
        if filename.startswith(("~", "<")):  # built-in functions, frozen modules
            continue
        path = Path(filename).resolve()
        if ROOT not in path.parents or {".venv", "bench"} & set(path.relative_to(ROOT).parts):
            continue
        functions.append(
            {
                "function": f"{path.relative_to(ROOT).as_posix()}:{name}",
                "calls": calls,
                "cumulative_ms": round(cumulative * 1000, 2),
            }
        )
    functions.sort(key=lambda row: -row["cumulative_ms"])
    return returned, {"total_ms": round(total * 1000, 2), "top": functions[:15]}


class _WarningCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _count_warnings(logger_name: str) -> _WarningCounter:
    """Count the outbox's 'stays queued' warnings: a publish that failed would make the share
    look cheaper than with a working broker."""
    counter = _WarningCounter()
    logging.getLogger(logger_name).addHandler(counter)
    return counter


# --- Reporting -------------------------------------------------------------------------------


def markdown(results: dict[str, dict], args: argparse.Namespace) -> str:
    per_share = args.share_studies * args.recipients
    n = args.entries
    lines = [
        "# Sharing benchmark",
        "",
        f"**Share**: `share_studies` of {args.share_studies} studies with {args.recipients} user "
        f"recipients, `send_mail=True` ({args.recipients} emails queued in the outbox and "
        f"published on commit), one transaction with its audit events: {per_share:,} entries; "
        f"next to a plain bulk insert of the same {per_share:,} `Entry` rows in one "
        f"transaction, alternating, {args.share_rounds} rounds after {SHARE_WARMUP} warm-up "
        "rounds.",
        "",
        f"**Page**: the directory through Django's test client (`force_login`, the real URLs), "
        f"first page (50 rows) newest first; the same with the user's own worklist selected; a "
        f"name search (POST, then GET of the redirect). The hospital has {n:,} studies; "
        f"{args.other_studies:,} studies of another organization share the tables. Users: "
        f"*recipient, plain shares* holds all {n:,} through share entries in their personal "
        f"worklist (shares of {STUDIES_PER_SEEDED_SHARE} studies, 1 in {UNLIMITED_EVERY} "
        f"unlimited, plus expired shares over {EXPIRED_FRACTION:.0%} of the studies); "
        f"*messages and labels*: the same with a message on 1 share in {MESSAGE_EVERY} (half "
        f"opened) and a label on 1 in {LABEL_EVERY}; *some anonymized*: 1 share in "
        f"{ANONYMIZED_EVERY} anonymized; *administrator (role)* sees the {n:,} studies through "
        f"the organization-wide role; *radiologist* through the location worklist. Up to "
        f"{args.page_runs} rounds of every operation in turn after {PAGE_WARMUP} warm-up runs "
        f"(fewer, at least {MIN_ROUNDS}, past {args.budget:g} s: see *runs*). *queries* and "
        f"*SQL ms*: the statements of an operation and their own time, each the median of "
        f"{PROFILED_RUNS} untimed, profiled runs.",
        "",
        f"Times in milliseconds. {datetime.now():%Y-%m-%d %H:%M}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs. The ratios are measured side by side "
        "in the same run (paired round by round, median of the per-round ratios): on a shared "
        "machine they are the figures to trust.",
        "",
    ]
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    lines += [
        "## Ratios",
        "",
        "| measurement | " + " | ".join(names[d] for d in results) + " |",
        "|---|" + "---:|" * len(results),
        f"| share / bulk insert of {per_share:,} entries | "
        + " | ".join(f"{r['share']['ratio']:.2f}" for r in results.values())
        + " |",
    ]
    first = next(iter(results.values()))
    for index, page in enumerate(first["pages"]):
        if page["user"] == USER_LABELS["role"]:
            continue
        cells = [f"{r['pages'][index]['versus_role']:.2f}" for r in results.values()]
        lines.append(
            f"| {page['user']} / administrator (role): {page['operation']} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append("")

    for result in results.values():
        share = result["share"]
        lines += [
            f"## {result['vendor_version']}",
            "",
            f"Seeding: migrate {result['migrate_seconds']:.1f} s; bulk-create "
            f"{result['seed_seconds']:.1f} s; ANALYZE {result['analyze_seconds']:.1f} s. Load "
            f"average before / after measuring: {result['load_before']} / "
            f"{result['load_after']}.",
            "",
            f"### Share {share['studies']} studies with {share['recipients']} users",
            "",
            "| operation | median | p95 | runs | ms per entry (median) | SQL statements |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for label, key in (
            ("`share_studies` (one transaction, emails queued)", "share"),
            (f"bulk insert of the same {share['entries_per_share']:,} entries", "bulk_insert"),
        ):
            m = share[key]
            lines.append(
                f"| {label} | {m['median_ms']:.1f} | {m['p95_ms']:.1f} | {m['runs']} | "
                f"{m['median_ms'] / share['entries_per_share']:.3f} | "
                f"{m['profiled']['queries']} |"
            )
        written = ", ".join(f"{value:,} {key}" for key, value in share["written"].items())
        failures = share["publish_failures"]
        lines += [
            "",
            f"Share / bulk insert: **{share['ratio']:.2f}**. Each share wrote {written}"
            + (f"; {failures} publishes failed (the share looks cheaper)" if failures else "")
            + ".",
            "",
        ]
        profiled = share["share"]["profiled"]
        lines += [
            f"Where one share's time goes (a profiled warm-up share: {profiled['wall_ms']:.0f} ms,"
            f" {profiled['sql_ms']:.0f} ms of it in {profiled['queries']} SQL statements):",
            "",
            "| statements | count | ms |",
            "|---|---:|---:|",
        ]
        for group in profiled["by_kind"][:8]:
            lines.append(f"| {group['kind']} | {group['count']} | {group['ms']:.1f} |")
        rest = profiled["by_kind"][8:]
        if rest:
            lines.append(
                f"| {len(rest)} other kinds | {sum(g['count'] for g in rest)} | "
                f"{sum(g['ms'] for g in rest):.1f} |"
            )
        lines += [
            f"| outside SQL (Python: the ORM building queries and rows, the email; commit) | | "
            f"{profiled['wall_ms'] - profiled['sql_ms']:.1f} |",
            "",
        ]
        functions = share["functions"]
        lines += [
            f"The portal's functions in a warm-up share run under cProfile "
            f"({functions['total_ms']:.0f} ms with the profiler's overhead; cumulative, so "
            "nested calls overlap):",
            "",
            "| function | calls | cumulative ms | share of the call |",
            "|---|---:|---:|---:|",
        ]
        for row in functions["top"][:10]:
            part = row["cumulative_ms"] / functions["total_ms"] if functions["total_ms"] else 0
            lines.append(
                f"| `{row['function']}` | {row['calls']} | {row['cumulative_ms']:.1f} | "
                f"{part:.0%} |"
            )
        lines += [
            "",
            "### Directory page",
            "",
            "| user | operation | median | p95 | runs | rows | badges | queries | SQL ms "
            "| vs administrator |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
        ]
        for m in result["pages"]:
            badges = ", ".join(f"{value} {key}" for key, value in m["badges"].items() if value)
            lines.append(
                f"| {m['user']} | {m['operation']} | {m['median_ms']:.1f} | {m['p95_ms']:.1f} | "
                f"{m['runs']} | {m['rows']} | {badges or '—'} | {m['queries']} | "
                f"{m['sql_ms']:.1f} | {m['versus_role']:.2f} |"
            )
        lines.append("")

    if "sqlite" in results and "postgres" in results:
        sqlite, postgres = results["sqlite"], results["postgres"]
        lines += [
            "## Side by side",
            "",
            "| measurement | SQLite median | SQLite p95 | PostgreSQL median | PostgreSQL p95 "
            "| PostgreSQL / SQLite |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        rows = [
            ("share_studies", sqlite["share"]["share"], postgres["share"]["share"]),
            ("bulk insert", sqlite["share"]["bulk_insert"], postgres["share"]["bulk_insert"]),
        ]
        rows += [
            (f"{left['user']}: {left['operation']}", left, right)
            for left, right in zip(sqlite["pages"], postgres["pages"], strict=True)
        ]
        for label, left, right in rows:
            ratio = right["median_ms"] / left["median_ms"] if left["median_ms"] else float("nan")
            lines.append(
                f"| {label} | {left['median_ms']:.1f} | {left['p95_ms']:.1f} | "
                f"{right['median_ms']:.1f} | {right['p95_ms']:.1f} | {ratio:.2f} |"
            )
        lines.append("")

    if args.explain:
        lines += [
            "## Query plans",
            "",
            "For each page operation: the page query (the studies of the page, in order) and, "
            "when another statement was slower, that one too; times are the profiled runs' "
            "medians.",
            "",
        ]
        for result in results.values():
            for m in result["pages"]:
                shown = []
                if m["page_query"] is not None:
                    shown.append(("page query", m["page_query"], m["page_plan"]))
                top = m["slowest"][0] if m["slowest"] else None
                if top is not None and (m["page_query"] is None or top != m["page_query"]):
                    shown.append(("slowest statement", top, m["plan"]))
                for title, statement, plan in shown:
                    lines += [
                        f"### {result['vendor_version']}: {m['user']}, {m['operation']}: "
                        f"{title} ({statement['ms']:.2f} ms)",
                        "",
                        "```sql",
                        statement["sql"],
                        "```",
                        "",
                        f"Parameters: `{statement['params']}`",
                        "",
                    ]
                    if plan:
                        lines += ["```", plan, "```", ""]
    return "\n".join(lines)


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the finally blocks above have cleaned up already
        sys.exit(130)
