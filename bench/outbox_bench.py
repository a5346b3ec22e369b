"""How long does one Celery worker take to deliver 1,000 queued emails, and what does the outbox
cost per message over sending the same emails directly with Django's SMTP backend?

    .venv/bin/python bench/outbox_bench.py --messages 1000
    .venv/bin/python bench/outbox_bench.py --messages 1000 --database sqlite --json var/outbox.json
    .venv/bin/python bench/outbox_bench.py --messages 1000 --rounds 3   # on a busy machine

The script starts everything it needs and removes it afterwards, also when a run fails or is
interrupted: its own ``redis-server`` on a free port (the broker), an aiosmtpd server on a free
port in a child process (it counts what it accepts, per recipient, so a message sent twice
shows), a throwaway database (PostgreSQL ``portal_outbox_bench``, dropped and re-created; or an
SQLite file in a temporary folder) which it migrates, and one worker
(``celery -A portal worker --pool prefork --concurrency 2``) configured as an installation is, by
the environment variables ``portal.settings`` reads. This process plays the web side.

After a warm-up of 20 messages, each round:

1. queues N share notifications with ``notifications.services.queue_message`` in one transaction
   (rendered in en/fr/nl/de in turn), timing the rows and then the commit, which publishes them
   in batches;
2. times from the start of that commit until every message is SENT in the database and accepted
   by the SMTP server, and checks that each went out once (one attempt, one email per recipient);
3. sends the same N rendered emails (subject, text, HTML and headers as the outbox's email
   backend builds them) straight through Django's SMTP backend from this process: one connection
   per message; two such senders, as many as the worker's pool processes; and one connection for
   all, as the outbox's backend does (each worker process keeps its connection between messages).

It prints a Markdown table (standard output; progress goes to standard error) of the medians over
the rounds: messages per second, the outbox's overhead per message (outbox time minus direct
time, divided by N) and the ratio of the two times, for each direct variant. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import ThrowawayDatabase, free_port, say, wait_until  # noqa: E402

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
BENCH_DATABASE = "portal_outbox_bench"
LANGUAGES = ("en", "fr", "nl", "de")
WARMUP_MESSAGES = 20


# --- Arguments -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the outbox: N emails through one Celery worker to a local SMTP "
        "server, against the same N sent directly with Django's SMTP backend.",
    )
    parser.add_argument("--messages", type=int, default=1000, help="emails (default 1000)")
    parser.add_argument(
        "--database",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="the outbox's database (default postgres)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"server to create the {BENCH_DATABASE!r} database on (default {DEFAULT_POSTGRES})",
    )
    parser.add_argument(
        "--concurrency", type=int, default=2, help="the worker's pool processes (default 2)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure this many times with the same worker and report the medians (default 1; "
        "3 or more on a machine that is not idle)",
    )
    parser.add_argument(
        "--worker-loglevel",
        default="INFO",
        help="the worker's log level (default INFO, as an installation runs it)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if min(args.messages, args.concurrency, args.rounds) < 1:
        parser.error("--messages, --concurrency and --rounds must be positive")
    if shutil.which("redis-server") is None:
        parser.error("redis-server is not installed (apt-get install redis-server)")
    return args


# --- The SMTP server, in a child process so that it never competes for this one's GIL --------


class _Sink:
    """Accepts every email and counts it per recipient; parses nothing, so that the server costs
    the same whoever sends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.recipients: Counter[str] = Counter()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.recipients.update(envelope.rcpt_tos)
        return "250 Message accepted for delivery"

    def stats(self) -> dict[str, int]:
        with self.lock:
            accepted = sum(self.recipients.values())
            return {
                "accepted": accepted,
                "recipients": len(self.recipients),
                "duplicates": accepted - len(self.recipients),
            }


def _smtp_server_main(port: int, control) -> None:
    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    control.send("ready")
    try:
        while True:
            command = control.recv()
            if command == "stats":
                control.send(sink.stats())
            elif command == "reset":
                with sink.lock:
                    sink.recipients.clear()
                control.send("ok")
            else:
                break
    finally:
        controller.stop()


class SMTPServer:
    def __init__(self) -> None:
        self.port = free_port()
        context = multiprocessing.get_context("spawn")
        self._control, child_end = context.Pipe()
        self.process = context.Process(
            target=_smtp_server_main, args=(self.port, child_end), daemon=True
        )
        self.process.start()
        if not self._control.poll(20) or self._control.recv() != "ready":
            raise RuntimeError("the SMTP server did not start")

    def stats(self) -> dict[str, int]:
        self._control.send("stats")
        return self._control.recv()

    def reset(self) -> None:
        self._control.send("reset")
        self._control.recv()

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self._control.send("stop")
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


# --- Redis and the worker --------------------------------------------------------------------


class Redis:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(folder),
        ]  # fmt: skip
        with open(folder / "redis.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.ping, timeout=10, what="redis-server")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


class Worker:
    def __init__(self, env: dict[str, str], folder: Path, concurrency: int, loglevel: str):
        self.log_path = folder / "worker.log"
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker",
            "--hostname", "outbox-bench@%h",
            "--pool", "prefork",
            "--concurrency", str(concurrency),
            "--loglevel", loglevel,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
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

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited; its log:\n{self.log()}")
            return " ready." in self.log()

        wait_until(ready, timeout=60, interval=0.1, what="the Celery worker")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


# --- The measurements ------------------------------------------------------------------------


def share_context(index: int) -> dict:
    return {
        "sender_name": "Dr. Alice Tester",
        "patient_initials": "J.D.",
        "study_description": f"MR brain with contrast #{index}",
        "study_date": "2024-05-01",
        "link": f"https://portal.example.org/shares/{index:06d}/",
        "message": "Please have a look at the lesion in the left temporal lobe.",
        "urgent": index % 10 == 0,
    }


def queue(count: int, label: str) -> tuple[list[int], float, float]:
    """Queue ``count`` emails in one transaction. Returns their ids, the seconds spent creating
    the rows (rendering included) and the seconds of the commit with its on-commit publishes."""
    from django.db import transaction

    from notifications.models import Channel
    from notifications.services import queue_message

    started = time.perf_counter()
    with transaction.atomic():
        ids = [
            queue_message(
                channel=Channel.EMAIL,
                to=f"{label}-{index:05d}@example.org",
                template="share_notification",
                context=share_context(index),
                language=LANGUAGES[index % len(LANGUAGES)],
                concerning=(f"bench-{label}", index),
            ).pk
            for index in range(count)
        ]
        created = time.perf_counter()
    committed = time.perf_counter()
    return ids, created - started, committed - created


def wait_delivered(ids: list[int], smtp: SMTPServer, timeout: float) -> None:
    from notifications.models import Message, MessageStatus

    def done() -> bool:
        sent = Message.objects.filter(pk__in=ids, status=MessageStatus.SENT).count()
        if sent < len(ids):
            stuck = Message.objects.filter(pk__in=ids, status=MessageStatus.DEAD).count()
            if stuck:
                raise RuntimeError(f"{stuck} messages are DEAD; see the worker's log")
            return False
        return smtp.stats()["accepted"] >= len(ids)

    wait_until(done, timeout=timeout, interval=0.05, what=f"{len(ids)} messages to be delivered")


def task_runtimes(log: str) -> list[tuple[float, int]]:
    """Seconds each ``deliver_messages`` task ran and how many messages it was handed, as the
    worker logs it at INFO ("succeeded in 0.08s: {'sent': 50}")."""
    return [
        (float(match.group(1)), sum(int(count) for count in re.findall(r": (\d+)", match.group(2))))
        for match in re.finditer(
            r"notifications\.deliver_messages\[[^\]]+\] succeeded in ([0-9.]+)s: (\{[^}]*\})", log
        )
    ]


def rendered_emails(ids: list[int]):
    """The emails the outbox sent, built as ``notifications.backends.EmailBackend`` builds them
    (same subject, parts and headers), without a connection: the caller picks how to send."""
    from email.utils import make_msgid

    from django.conf import settings
    from django.core.mail import EmailMultiAlternatives
    from django.core.mail.message import DNS_NAME

    from notifications.models import Message

    emails = []
    for message in Message.objects.filter(pk__in=ids).order_by("pk"):
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.body_text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.recipient],
            headers={
                "Message-ID": make_msgid(idstring=f"direct-{message.pk}", domain=DNS_NAME),
                "Content-Language": message.language,
                "Auto-Submitted": "auto-generated",
            },
        )
        if message.body_html:
            email.attach_alternative(message.body_html, "text/html")
        emails.append(email)
    return emails


def send_each_on_its_own_connection(emails) -> None:
    from django.core.mail import get_connection

    for email in emails:
        email.connection = get_connection(fail_silently=False)
        if email.send() != 1:
            raise RuntimeError("Django's SMTP backend sent nothing")


def send_on_one_connection(emails) -> None:
    from django.core.mail import get_connection

    with get_connection(fail_silently=False) as connection:
        if connection.send_messages(emails) != len(emails):
            raise RuntimeError("Django's SMTP backend did not send every email")


def send_with_two_senders(emails) -> None:
    halves = [emails[0::2], emails[1::2]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(send_each_on_its_own_connection, half) for half in halves]:
            future.result()


def direct(send, ids: list[int], smtp: SMTPServer) -> float:
    """Seconds to send the emails of ``ids`` with ``send``, until the server has them all."""
    from django.db import connections

    emails = rendered_emails(ids)  # built outside the timing: the outbox renders when queueing
    connections.close_all()
    smtp.reset()
    started = time.perf_counter()
    send(emails)
    wait_until(
        lambda: smtp.stats()["accepted"] >= len(emails), timeout=60, what="the direct emails"
    )
    seconds = time.perf_counter() - started
    stats = smtp.stats()
    if stats["duplicates"] or stats["accepted"] != len(emails):
        raise RuntimeError(f"direct sending delivered {stats}, expected {len(emails)} once each")
    return seconds


# Keys of a round's measurements (seconds), in the order the report lists them.
OUTBOX = "outbox"
DIRECT_EACH = "direct_connection_per_message"
DIRECT_SHARED = "direct_one_connection"
DIRECT_TWO = "direct_two_senders"
LABELS = {
    "queue_create": "queue_message x N in one transaction (render + INSERT)",
    "queue_commit": "its commit, with the on-commit publishes to Redis (one per batch)",
    OUTBOX: "outbox: 1 worker, from the commit until all are SENT and received",
    DIRECT_EACH: "direct: 1 sender, one connection per message",
    DIRECT_SHARED: "direct: 1 sender, one connection for all (as the outbox's backend)",
    DIRECT_TWO: "direct: 2 senders, one connection per message",
}
BASELINES = (DIRECT_EACH, DIRECT_TWO, DIRECT_SHARED)


def measure_round(count: int, label: str, worker: Worker, smtp: SMTPServer) -> dict[str, float]:
    """Queue ``count`` emails, time the worker delivering them, then send the same emails
    directly three ways. Every number is in seconds, except the tasks' (milliseconds)."""
    from notifications.models import Message

    smtp.reset()
    log_offset = len(worker.log())
    ids, create_seconds, commit_seconds = queue(count, label)
    delivered_from = time.perf_counter() - commit_seconds  # the commit's start
    wait_delivered(ids, smtp, timeout=max(120.0, count * 0.5))
    outbox_seconds = time.perf_counter() - delivered_from
    stats = smtp.stats()
    attempts = Counter(Message.objects.filter(pk__in=ids).values_list("attempts", flat=True))
    if stats["duplicates"] or stats["accepted"] != count or set(attempts) != {1}:
        raise RuntimeError(f"outbox delivered {stats}, attempts {dict(attempts)}")
    tasks = task_runtimes(worker.log()[log_offset:]) or [(float("nan"), 1)]
    return {
        "queue_create": create_seconds,
        "queue_commit": commit_seconds,
        OUTBOX: outbox_seconds,
        DIRECT_EACH: direct(send_each_on_its_own_connection, ids, smtp),
        DIRECT_SHARED: direct(send_on_one_connection, ids, smtp),
        DIRECT_TWO: direct(send_with_two_senders, ids, smtp),
        "tasks": len(tasks),
        "task_median_ms": 1000 * statistics.median(seconds for seconds, _ in tasks),
        "task_ms_per_message": 1000
        * sum(seconds for seconds, _ in tasks)
        / max(1, sum(messages for _, messages in tasks)),
    }


def run(args: argparse.Namespace, folder: Path) -> dict:
    redis = smtp = worker = None
    database = ThrowawayDatabase(
        args.database, name=BENCH_DATABASE, folder=folder, postgres_url=args.postgres_url
    )
    try:
        say("Starting redis-server and the SMTP server")
        redis = Redis(folder)
        smtp = SMTPServer()
        database_url = database.create()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CELERY_", "EMAIL_", "NOTIFICATIONS_", "DJANGO_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="portal.settings",
            PORTAL_ENV_FILE="",  # a developer's demo .env is not this run's settings
            SECRET_KEY="outbox-benchmark-key-not-secret-" + "x" * 32,
            AUDIT_KEY="outbox-benchmark-audit-key-not-secret-" + "x" * 32,
            DEBUG="false",
            DEMO_MODE="false",
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=redis.url,
            CACHE_URL="",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=str(smtp.port),
            EMAIL_USE_TLS="false",
            EMAIL_USE_SSL="false",
            PORTAL_VAR_DIR=str(folder),
            LOG_LEVEL="WARNING",
        )
        # This process is the web side: it queues (publishing to Redis) and sends directly.
        # Celery prefers CELERY_BROKER_*_URL from the environment to its settings: none may be
        # left pointing at another broker.
        for key in [key for key in os.environ if key not in env]:
            del os.environ[key]
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection, connections

        say(f"Migrating the {args.database} database")
        call_command("migrate", verbosity=0, interactive=False)
        connections.close_all()

        worker_env = {**env, "LOG_LEVEL": args.worker_loglevel}
        say(f"Starting one worker (prefork, concurrency {args.concurrency})")
        worker = Worker(worker_env, folder, args.concurrency, args.worker_loglevel)

        # Warm-up: the pool's processes open their database connections and import templates,
        # this process its broker connection; then both directions once for the direct senders.
        warm_ids, _, _ = queue(WARMUP_MESSAGES, "warmup")
        wait_delivered(warm_ids, smtp, timeout=60)
        send_each_on_its_own_connection(rendered_emails(warm_ids[:5]))
        smtp.reset()

        count = args.messages
        load_before = os.getloadavg()
        rounds = []
        for number in range(1, args.rounds + 1):
            say(f"Round {number} of {args.rounds}: {count} emails")
            rounds.append(measure_round(count, f"r{number}", worker, smtp))
        load_after = os.getloadavg()
        worker.stop()
        worker = None
        vendor = connection.vendor
        version = ".".join(str(part) for part in connection.get_database_version())
        connections.close_all()
        return {
            "parameters": {
                "messages": count,
                "rounds": args.rounds,
                "database": args.database,
                "database_version": f"{vendor} {version}",
                "concurrency": args.concurrency,
                "worker_loglevel": args.worker_loglevel,
                "cpus": os.cpu_count(),
                "load_average_before": load_before,
                "load_average_after": load_after,
                "python": platform.python_version(),
                "django": django.get_version(),
                "celery": _version("celery"),
            },
            "rounds": rounds,
            "median": {
                key: statistics.median(round_[key] for round_ in rounds) for key in rounds[0]
            },
        }
    finally:
        if worker is not None:
            worker.stop()
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        database.drop()
        if smtp is not None:
            smtp.stop()
        if redis is not None:
            redis.stop()


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


def markdown(result: dict) -> str:
    parameters = result["parameters"]
    count = parameters["messages"]
    median = result["median"]
    rounds = parameters["rounds"]
    load_before = ", ".join(f"{value:.2f}" for value in parameters["load_average_before"])
    load_after = ", ".join(f"{value:.2f}" for value in parameters["load_average_after"])
    lines = [
        f"### Outbox: {count} emails, one worker (prefork, concurrency "
        f"{parameters['concurrency']}), {parameters['database_version']}, "
        f"{parameters['cpus']} CPUs",
        "",
        f"Python {parameters['python']}, Django {parameters['django']}, Celery "
        f"{parameters['celery']}; worker log level {parameters['worker_loglevel']}; load average "
        f"{load_before} before, {load_after} after"
        + (f"; median of {rounds} rounds." if rounds > 1 else "."),
        "",
        "| step | seconds | messages/s | ms/message |",
        "|---|---:|---:|---:|",
    ]
    lines += [_row(LABELS[key], median[key], count) for key in LABELS]
    lines += [
        "",
        f"Inside the worker, {median['tasks']:.0f} `deliver_messages` tasks (each: one claim "
        f"UPDATE and SELECT, the SMTP exchanges, one transaction of SENT UPDATEs) took "
        f"{median['task_median_ms']:.1f} ms each (median), "
        f"{median['task_ms_per_message']:.2f} ms per message, in each of the pool's processes.",
        "",
        "| outbox against | overhead ms/message | ratio (outbox / direct) |",
        "|---|---:|---:|",
    ]
    for key in BASELINES:
        overhead = 1000 * (median[OUTBOX] - median[key]) / count
        lines.append(f"| {LABELS[key]} | {overhead:.2f} | {median[OUTBOX] / median[key]:.2f} |")
    if rounds > 1:
        per_round = ", ".join(
            f"{round_[OUTBOX]:.2f} s ({round_[OUTBOX] / round_[DIRECT_EACH]:.2f}x)"
            for round_ in result["rounds"]
        )
        lines += ["", f"Outbox time per round (ratio to one connection per message): {per_round}."]
    lines += [
        "",
        "Overhead = (outbox time - direct time) / N. Each of the worker's processes keeps its SMTP "
        "connection between messages, so the like-for-like baseline is the last row (one "
        "connection for all); the second has as many senders as the worker has pool processes.",
    ]
    return "\n".join(lines)


def _row(name: str, seconds: float, count: int) -> str:
    return f"| {name} | {seconds:.2f} | {count / seconds:,.0f} | {1000 * seconds / count:.2f} |"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
    try:
        result = run(args, folder)
    except BaseException:
        log = folder / "worker.log"
        if log.exists():
            say("--- worker log (last 60 lines) ---")
            say("\n".join(log.read_text(errors="replace").splitlines()[-60:]))
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
