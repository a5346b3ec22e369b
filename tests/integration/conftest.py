"""Real services for the outbox's integration tests, all started by the tests themselves.

- ``smtp_server``: an aiosmtpd server on 127.0.0.1 (free port) in this process. It keeps what it
  accepts, parsed (``ReceivedEmail``), and can refuse (``refuse("RCPT", "550 ...", to=...)``),
  slow down (``delay``) or hold the next DATA until released (``stall_next``).
- ``redis_server``: a throwaway ``redis-server`` on a free port (never the machine's 6379), with
  ``stop()`` (SIGKILL, as a crash) and ``start()`` on the same port; always killed at teardown.
- ``database_url``: the test database as a ``DATABASE_URL`` that another process can open. On
  PostgreSQL that is pytest-django's ``test_*`` database; on SQLite, whose test database lives in
  this process's memory, a copy in a file that this process switches to for the test.
- ``broker``: this process's Celery app pointed at ``redis_server`` with eager mode off, so that
  ``queue_message``'s on-commit publish really goes through Redis (and fails fast when it's down).
- ``celery_worker``: starts real workers (``python -m celery -A portal worker``) as subprocesses in
  their own session, configured as an installation is, by environment variables (``tests.settings``
  plus ``DATABASE_URL``, ``CELERY_BROKER_URL``, ``EMAIL_*`` and the short ``FAST_OUTBOX`` delays);
  stopped, then killed, at teardown. Their logs are printed when a test fails.

Every test here needs ``redis-server``: missing, it skips (fails in CI, see ``require_service``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import require_service
from tests.integration.helpers import wait_until
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
# Delays short enough that retries, leases and the re-queue play out within seconds. Workers get
# them as environment variables (portal.settings reads them), this process through ``settings``.
FAST_OUTBOX = {
    "NOTIFICATIONS_MAX_ATTEMPTS": 3,
    "NOTIFICATIONS_BACKOFF_BASE": 1,
    "NOTIFICATIONS_BACKOFF_CEILING": 2,
    "NOTIFICATIONS_LEASE_SECONDS": 3,
    "NOTIFICATIONS_QUEUED_GRACE": 0,
}
EMAIL_TIMEOUT = 10


# --- Helpers ---------------------------------------------------------------------------------


# --- SMTP ------------------------------------------------------------------------------------


@dataclass
class ReceivedEmail:
    mail_from: str
    rcpt_tos: list[str]
    to: str
    subject: str
    text: str
    html: str
    message: email.message.EmailMessage = field(repr=False)


def _content(part) -> str:
    """A part's decoded text with the line ends it had before SMTP made them CRLF."""
    return part.get_content().replace("\r\n", "\n") if part is not None else ""


def parse_email(mail_from: str, rcpt_tos: list[str], content: bytes) -> ReceivedEmail:
    message = email.message_from_bytes(content, policy=email.policy.default)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return ReceivedEmail(
        mail_from=mail_from,
        rcpt_tos=list(rcpt_tos),
        to=str(message.get("To", "")),
        # A non-ASCII subject is folded right after "Subject:"; Python's parser keeps the fold's
        # space, which mail clients drop.
        subject=str(message.get("Subject", "")).strip(),
        text=_content(text),
        html=_content(html),
        message=message,
    )


class SMTPServer:
    """The aiosmtpd server's handler, and what the tests see of the server. Its coroutines run
    on the controller's event loop thread; the test thread reads through the lock. Holding a
    DATA (``stall_next``) awaits instead of blocking, so the server keeps serving other
    connections and notices a client that goes away."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._changed = threading.Condition()
        self.received: list[ReceivedEmail] = []
        self.refusals: dict[tuple[str, str | None], str] = {}
        self.refused: Counter[str] = Counter()
        self.delay = 0.0
        self.abandoned = 0
        self.greetings = 0  # EHLO/HELO: one per connection a client opens
        self.stalled = threading.Event()
        self._stall: threading.Event | None = None

    # Test side
    def refuse(self, stage: str, reply: str, *, to: str | None = None) -> None:
        """Answer ``stage`` ("RCPT" or "DATA") with ``reply``: for mail to ``to``, or all mail.
        ``refused`` counts the refusals per recipient."""
        assert stage in {"RCPT", "DATA"}
        self.refusals[stage, to] = reply

    def _refusal(self, stage: str, recipients: list[str]) -> str | None:
        for recipient in recipients:
            reply = self.refusals.get((stage, recipient)) or self.refusals.get((stage, None))
            if reply:
                self.refused.update(recipients)
                return reply
        return None

    def stall_next(self) -> threading.Event:
        """Hold the next DATA until the returned event is set. If the client goes away
        meanwhile, the transaction never completes: nothing is kept (counted as abandoned)."""
        release = threading.Event()
        self._stall = release
        return release

    def count(self) -> int:
        with self._changed:
            return len(self.received)

    def wait_for(self, count: int, timeout: float) -> list[ReceivedEmail]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(
                    f"the SMTP server received {len(self.received)} of {count} emails "
                    f"in {timeout:.0f} s"
                )
            return list(self.received)

    # Server side
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self._changed:
            self.greetings += 1
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if reply := self._refusal("RCPT", [address]):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if reply := self._refusal("DATA", envelope.rcpt_tos):
            return reply
        if self.delay:
            await asyncio.sleep(self.delay)
        release, self._stall = self._stall, None
        if release is not None:
            self.stalled.set()
            try:
                while not release.is_set():
                    await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                # aiosmtpd cancels the session when the client's connection ends.
                with self._changed:
                    self.abandoned += 1
                    self._changed.notify_all()
                raise
        received = parse_email(
            envelope.mail_from, envelope.rcpt_tos, envelope.original_content or envelope.content
        )
        with self._changed:
            self.received.append(received)
            self._changed.notify_all()
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer("127.0.0.1", free_port())
    # aiosmtpd logs every SMTP command at INFO; a failing test's log should show the workers'.
    mail_log = logging.getLogger("mail.log")
    previous_level = mail_log.level
    mail_log.setLevel(logging.WARNING)
    controller = Controller(server, hostname=server.host, port=server.port, ready_timeout=10)
    controller.start()
    try:
        yield server
    finally:
        if server._stall is not None:
            server._stall.set()
        controller.stop()
        mail_log.setLevel(previous_level)


# --- Redis -----------------------------------------------------------------------------------


class RedisServer:
    """A redis-server of our own: no persistence, so a stop loses what the broker held, as a
    crashed broker without persistence would."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.log_path = workdir / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def ping(self) -> bool:
        import redis

        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        assert self.process is None, "already running"
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.ping, timeout=10, interval=0.05, what=f"redis-server on {self.port}")

    def stop(self) -> None:
        """The broker goes away at once (SIGKILL): connections drop, queued tasks are lost."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def queue_length(self, queue: str = "celery") -> int:
        import redis

        with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
            return int(client.llen(queue))

    def drained(self) -> bool:
        """No task waiting in the queue, and none reserved by a worker (kombu's unacked hash)."""
        import redis

        with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
            return client.llen("celery") == 0 and client.hlen("unacked") == 0


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    require_service(
        shutil.which("redis-server") is not None,
        "redis-server is not installed (apt-get install redis-server) for integration tests",
    )
    server = RedisServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- The database, seen from other processes ------------------------------------------------


# --- Celery: this process as the publisher, subprocesses as workers --------------------------


def _reset_broker_connections(app) -> None:
    """Celery keeps broker connections and producers in pools; a new broker URL needs new ones."""
    from kombu import pools

    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def outbox_settings(settings, smtp_server):
    """This process's settings agree with the workers': short delays, mail to ``smtp_server``."""
    for name, value in FAST_OUTBOX.items():
        setattr(settings, name, value)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = smtp_server.host
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = EMAIL_TIMEOUT
    return settings


@pytest.fixture
def broker(redis_server, outbox_settings, monkeypatch) -> Iterator[RedisServer]:
    """Publish for real to ``redis_server``. With the broker down a publish fails within
    milliseconds (no connection retries), so a commit that cannot publish doesn't hang.

    Celery reads ``CELERY_BROKER_URL`` (and ``_READ_URL``/``_WRITE_URL``) from the environment
    before its configuration, and CI sets it to the machine's shared Redis: the variables are
    pointed at ``redis_server`` too, and the fixture checks where a publish would go."""
    from portal.celery import app

    monkeypatch.setenv("CELERY_BROKER_URL", redis_server.url)
    monkeypatch.delenv("CELERY_BROKER_READ_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)

    configured = {
        "broker_url": redis_server.url,
        "task_always_eager": False,
        "broker_connection_timeout": 1,
        "broker_transport_options": {
            "max_retries": 0,
            "interval_start": 0,
            "interval_step": 0.1,
            "interval_max": 0.2,
        },
        "task_publish_retry": False,
    }
    saved = {name: app.conf.get(name) for name in configured}
    outbox_settings.CELERY_BROKER_URL = redis_server.url
    outbox_settings.CELERY_TASK_ALWAYS_EAGER = False
    _reset_broker_connections(app)
    app.conf.update(configured)
    with app.connection_for_write() as connection:
        target = (connection.hostname, connection.port)
    assert target == ("127.0.0.1", redis_server.port), f"would publish to {target}"
    try:
        yield redis_server
    finally:
        _reset_broker_connections(app)
        app.conf.update(saved)


class Worker:
    """``celery -A portal worker`` in its own session, so that ``kill()`` takes the pool's
    children down with it."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> Worker:
        already_logged = len(self.log())
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited:\n{self.log()}")
            return f"{self.name}@" in (text := self.log()[already_logged:]) and " ready." in text

        wait_until(ready, timeout=timeout, interval=0.1, what=f"worker {self.name} to be ready")
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """Worker lost: SIGKILL to the main process and its pool children, no goodbye."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        """Ask for a warm shutdown: the worker finishes what it runs, then exits."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)

    def stop(self, timeout: float = 10) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL for whatever is left of the group."""
        if self.process is None:
            return
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


@pytest.fixture
def worker_env(database_url, redis_server, smtp_server, tmp_path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CELERY_", "EMAIL_", "NOTIFICATIONS_"))
        and key not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CACHE_URL"}
    }
    env.update({name: str(value) for name, value in FAST_OUTBOX.items()})
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=redis_server.url,
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST=smtp_server.host,
        EMAIL_PORT=str(smtp_server.port),
        EMAIL_USE_TLS="false",
        EMAIL_USE_SSL="false",
        EMAIL_TIMEOUT=str(EMAIL_TIMEOUT),
        PORTAL_VAR_DIR=str(tmp_path / "var"),
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def celery_worker(request, worker_env, tmp_path) -> Iterator[Callable[..., Worker]]:
    """Start workers: ``celery_worker()`` (prefork, concurrency 2) or
    ``celery_worker(pool="solo")``; each call starts one more and waits until it is ready."""
    workers: list[Worker] = []

    def start(*, pool: str = "prefork", concurrency: int = 2) -> Worker:
        name = f"integ{len(workers) + 1}-{uuid.uuid4().hex[:8]}"
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker",
            "--hostname", f"{name}@%h",
            "--pool", pool,
            "--concurrency", str(concurrency),
            "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        worker = Worker(name, command, worker_env, tmp_path / f"worker-{name}.log")
        workers.append(worker)
        return worker.start()

    try:
        yield start
    finally:
        for worker in workers:  # all at once: a warm shutdown takes a second or two
            worker.terminate()
        for worker in workers:
            worker.stop()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            for worker in workers:
                print(f"\n----- log of worker {worker.name} -----\n{worker.log()}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
