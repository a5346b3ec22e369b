"""Pieces for benchmarks that measure servers side by side on a shared, noisy machine.

- :class:`ThrowawayDatabase`: PostgreSQL (a database dropped and re-created, dropped again at
  the end; refused while another run uses it) or an SQLite file, as ``DATABASE_URL``.
- :class:`Gunicorn`: the portal served as in production, from ``gunicorn.conf.py`` with sync
  workers, on a port of 127.0.0.1, in its own process group.
- :func:`http_load`: requests per second for a list of GET paths, from ``wrk`` (preferred: a C
  client that leaves the CPUs to the servers) or from a bounded pool of Python threads. Either
  can run inside a network namespace (``command_prefix`` for wrk, the caller's thread for
  Python), and every answer that is not 2xx fails the measurement.
- :func:`interleaved`: each contender measured in turn within a round, the order alternating
  from round to round, so that a machine getting busier affects all alike; :func:`median`.
- :func:`run_each_database` and :func:`run_worker_on_throwaway`: a benchmark that seeds and
  measures in a subprocess of its own script (``--worker``) under the portal's settings, once
  per database, on a throwaway database, with one report for all.
- :func:`production_env` and :func:`prepare_portal`: the portal's environment as production
  sets it, and its database migrated and static files collected.
- :func:`bench_clinician`: the organization, location and clinician a seeding starts from.
- :func:`wait_until`, :func:`say`, :func:`free_port`, :func:`load_average`.

The caller keeps its own report: these only measure.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, *, timeout: float, interval: float = 0.05, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    return "?"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def empty_redis(url: str) -> None:
    """Start (and end) a run with an empty Redis database: no frame or decision of an earlier
    run. Benchmarks take their own database number, not the one a developer's portal uses."""
    import redis

    redis.Redis.from_url(url).flushdb()


# --- The database ----------------------------------------------------------------------------


def postgres_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(f"{url.rstrip('/')}/postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


class ThrowawayDatabase:
    """``engine`` "postgres" (database ``name`` on the server at ``postgres_url``) or
    "sqlite" (a file in ``folder``)."""

    def __init__(self, engine: str, *, name: str, folder: Path, postgres_url: str) -> None:
        self.engine = engine
        self.name = name
        self.folder = folder
        self.postgres_url = postgres_url.rstrip("/")
        # Only a database this run created is dropped at its end: a run that refused to start
        # (another run's database in use) cleans up after itself without touching the other's.
        self._created = False

    def _postgres(self, statement: str, *params: object) -> Any:
        import psycopg

        with psycopg.connect(f"{self.postgres_url}/postgres", autocommit=True) as connection:
            cursor = connection.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []

    def create(self) -> str:
        """The new, empty database's URL. One that a stopped run left behind is dropped first;
        one that another run still uses is not (RuntimeError): a benchmark started while
        another runs would otherwise pull the other's database from under its servers."""
        if self.engine == "sqlite":
            return f"sqlite:///{self.folder / f'{self.name}.sqlite3'}"
        [(sessions,)] = self._postgres(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", self.name
        )
        if sessions:
            raise RuntimeError(
                f"The database {self.name} is in use ({sessions} connection(s)): another "
                "benchmark is running, or a stopped one left its servers behind. Let it end, "
                "or stop it, then start again."
            )
        self._postgres(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        self._postgres(f"CREATE DATABASE {self.name}")
        self._created = True
        return f"{self.postgres_url}/{self.name}"

    def drop(self) -> None:
        """Drop the database this run created; nothing when it created none."""
        if self.engine == "postgres" and self._created:
            self._created = False
            with contextlib.suppress(Exception):
                self._postgres(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


# --- gunicorn --------------------------------------------------------------------------------


class Gunicorn:
    """``gunicorn -c gunicorn.conf.py`` with sync workers on 127.0.0.1:``port``: the portal, or
    ``app`` (a WSGI application's ``module:name``, such as a benchmark's anchor project) served
    the same way. Either must answer ``/healthz``."""

    def __init__(
        self,
        env: dict[str, str],
        folder: Path,
        *,
        workers: int | None = None,
        app: str | None = None,
        name: str = "gunicorn",
        port: int | None = None,
    ):
        self.port = port or free_port()
        self.log_path = folder / f"{name}.log"
        command = [
            sys.executable, "-m", "gunicorn",
            "-c", str(ROOT / "gunicorn.conf.py"),
            "--bind", f"127.0.0.1:{self.port}",
            "--worker-class", "sync",
            "--access-logfile", str(folder / f"{name}-access.log"),
        ]  # fmt: skip
        if workers is not None:
            command += ["--workers", str(workers)]
        if app is not None:
            command.append(app)
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
                self.stop()
                raise RuntimeError(f"gunicorn did not start; its log:\n{self.log_path.read_text()}")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                connection.request("GET", "/healthz")
                return connection.getresponse().status == 200
            finally:
                connection.close()
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        """The master's worker processes (Linux: read from /proc)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                # The command may hold spaces and parentheses: the fields follow the last ")".
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid:
                    pids.append(int(entry.name))
        return sorted(pids)

    def worker_memory_mb(self) -> list[dict[str, float]]:
        """Each worker's memory now, in MB: resident (``rss``, pages shared with the master
        and the other workers included), its proportional share (``pss``) and what only it
        holds (``private``), from /proc/<pid>/smaps_rollup."""
        sizes = []
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                fields = {}
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
                    name, _, value = line.partition(":")
                    if value.strip().endswith("kB"):
                        fields[name] = int(value.split()[0]) / 1024
                sizes.append(
                    {
                        "rss": fields.get("Rss", 0.0),
                        "pss": fields.get("Pss", 0.0),
                        "private": fields.get("Private_Clean", 0.0)
                        + fields.get("Private_Dirty", 0.0),
                    }
                )
        return sizes

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


# --- HTTP load -------------------------------------------------------------------------------


@dataclass
class LoadResult:
    client: str
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    megabytes_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoadFailed(RuntimeError):
    pass


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


_WRK_SCRIPT = """
local paths = %(paths)s
local headers = %(headers)s
local index = 0
request = function()
  index = index %% #paths + 1
  return wrk.format("GET", paths[index], headers)
end
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def _lua_table(values: dict[str, str] | list[str]) -> str:
    if isinstance(values, dict):
        items = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in values.items())
    else:
        items = ", ".join(_lua_string(v) for v in values)
    return "{" + items + "}"


def run_wrk(
    base_url: str,
    paths: Sequence[str],
    headers: dict[str, str],
    *,
    duration: float,
    connections: int,
    threads: int = 2,
    command_prefix: Sequence[str] = (),
) -> LoadResult:
    """``wrk`` for ``duration`` seconds over ``connections`` connections, cycling through
    ``paths``. ``command_prefix`` (``ip netns exec NAME``) runs it elsewhere."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            _WRK_SCRIPT % {"paths": _lua_table(list(paths)), "headers": _lua_table(headers)}
        )
    try:
        command = [
            *command_prefix, "wrk",
            "--threads", str(min(threads, connections)),
            "--connections", str(connections),
            "--duration", f"{max(1, round(duration))}s",
            "--timeout", "30s",
            "--script", script.name,
            base_url,
        ]  # fmt: skip
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 120, check=False
        )
    finally:
        os.unlink(script.name)
    line = next(
        (line for line in completed.stdout.splitlines() if line.startswith("WRK_RESULT ")), None
    )
    if completed.returncode != 0 or line is None:
        raise LoadFailed(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    found = json.loads(line.removeprefix("WRK_RESULT "))
    failed = {k: found[k] for k in ("connect", "read", "write", "status", "timeout") if found[k]}
    if failed:
        raise LoadFailed(f"wrk counted errors {failed} of {found['requests']} requests")
    seconds = found["duration_us"] / 1e6
    return LoadResult(
        client=f"wrk, {connections} connections",
        requests=found["requests"],
        seconds=seconds,
        requests_per_s=found["requests"] / seconds,
        p50_ms=found["p50_us"] / 1000,
        p99_ms=found["p99_us"] / 1000,
        megabytes_per_s=found["bytes"] / seconds / 1e6,
    )


def run_python_load(
    host: str,
    port: int,
    paths: Sequence[str],
    headers: dict[str, str],
    *,
    duration: float,
    connections: int,
    each_once: bool = False,
) -> LoadResult:
    """``connections`` Python threads, each on its own connection (re-opened whenever the
    server closes it), for ``duration`` seconds; with ``each_once``, until every path was asked
    once, in order (a viewer's first walk through a series), or ``duration`` ran out. Sockets
    belong to the calling thread's network namespace: call this inside ``NetworkNamespace.run``
    to load a server there."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    received = [0]
    counter = [0]
    deadline = time.monotonic() + duration

    def client() -> None:
        connection: http.client.HTTPConnection | None = None
        own: list[float] = []
        size = 0
        try:
            while time.monotonic() < deadline and not errors:
                with lock:
                    if each_once and counter[0] == len(paths):
                        break
                    path = paths[counter[0] % len(paths)]
                    counter[0] += 1
                if connection is None:
                    connection = http.client.HTTPConnection(host, port, timeout=30)
                started = time.perf_counter()
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                body = response.read()
                own.append(time.perf_counter() - started)
                size += len(body)
                if not 200 <= response.status < 300:
                    raise LoadFailed(f"{path} answered {response.status}")
                if response.will_close:
                    connection.close()
                    connection = None
        except Exception as error:
            with lock:
                errors.append(f"{type(error).__name__}: {error}")
        finally:
            if connection is not None:
                connection.close()
            with lock:
                latencies.extend(own)
                received[0] += size

    workers = [threading.Thread(target=client) for _ in range(connections)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    if errors:
        raise LoadFailed(f"{len(errors)} client(s) failed: {errors[0]}")
    if each_once and counter[0] < len(paths):
        raise LoadFailed(f"{counter[0]} of {len(paths)} paths asked within {duration:g} s")
    ordered = sorted(latencies)
    done = len(ordered)
    return LoadResult(
        client=f"Python, {connections} threads",
        requests=done,
        seconds=seconds,
        requests_per_s=done / seconds,
        p50_ms=1000 * ordered[done // 2] if done else float("nan"),
        p99_ms=1000 * ordered[min(done - 1, int(done * 0.99))] if done else float("nan"),
        megabytes_per_s=received[0] / seconds / 1e6,
    )


# --- Rounds ----------------------------------------------------------------------------------


def interleaved(
    contenders: dict[str, Callable[[], dict[str, Any]]],
    *,
    rounds: int,
    label: str,
) -> dict[str, list[dict[str, Any]]]:
    """Measure each contender once per round; the first contender of round ``n`` is the
    ``n``-th in turn. Returns every round's result per contender."""
    names = list(contenders)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for number in range(rounds):
        order = names[number % len(names) :] + names[: number % len(names)]
        for name in order:
            result = contenders[name]()
            results[name].append(result)
            summary = ", ".join(
                f"{key} {value:.1f}" if isinstance(value, float) else f"{key} {value}"
                for key, value in result.items()
                if key in ("requests_per_s", "instances_per_s", "p50_ms", "seconds")
            )
            say(f"  round {number + 1}, {label}, {name}: {summary}")
    return results


# --- The portal as production runs it --------------------------------------------------------


def production_env(
    folder: Path, *, database_url: str, cache_url: str, **settings: str
) -> dict[str, str]:
    """The portal's environment as production sets it, on the loopback: DEBUG off, fresh keys,
    plain HTTP (in production TLS ends at the reverse proxy), an EMAIL_HOST never used (with
    DEBUG off the portal refuses to start without one), files under ``folder/var``, this
    database, and ``cache_url`` (emptied first) or no shared cache. ``settings`` add to it."""
    env = {
        **{
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("DJANGO_", "CELERY_"))
            and name not in ("CACHE_URL", "REDIS_URL", "SITE_URL")
        },
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_ENV_FILE": "",  # a developer's demo .env is not this run's settings
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "AUDIT_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "EMAIL_HOST": "127.0.0.1",
        "PORTAL_VAR_DIR": str(folder / "var"),
        "DATABASE_URL": database_url,
        "PYTHONPATH": str(ROOT),
        **settings,
    }
    if cache_url:
        empty_redis(cache_url)
        env["CACHE_URL"] = cache_url
    return env


def prepare_portal(env: dict[str, str]) -> None:
    """What an installation does before serving with DEBUG off: migrate, collect the static
    files."""
    for step in (["migrate", "--no-input"], ["collectstatic", "--no-input"]):
        subprocess.run(
            [sys.executable, "manage.py", *step, "-v", "0"], cwd=ROOT, env=env, check=True
        )


# --- Seeding ----------------------------------------------------------------------------------


def bench_clinician(username: str, password: str):
    """In a seeding subprocess (Django set up): "Bench Hospital" with a Radiology location and
    ``username``, a clinician there; (organization, location, user)."""
    from django.db import transaction

    from accounts.models import Location, Membership, Organization, Role, User
    from accounts.permissions import CLINICIAN

    with transaction.atomic():
        organization = Organization.objects.create(name="Bench Hospital")
        location = Location.objects.create(organization=organization, name="Radiology")
        role = Role.objects.create(name="Clinician", permissions=[p.value for p in CLINICIAN])
        user = User.objects.create_user(username, password=password)
        membership = Membership.objects.create(user=user, organization=organization, role=role)
        membership.locations.add(location)
    return organization, location, user


# --- A worker subprocess per database --------------------------------------------------------


def run_each_database(
    args,
    *,
    heading: str,
    run_database: Callable[[str, Any], dict],
    report: Callable[[dict[str, dict], Any], str],
    parameters: Callable[[Any], dict],
) -> int:
    """Run a benchmark's worker on each database of ``args.databases`` in turn, print the
    Markdown report and write the JSON (``args.json``)."""
    import psycopg

    results: dict[str, dict] = {}
    failed = []
    for database in args.databases:
        print(f"== {database}: {heading}", file=sys.stderr, flush=True)
        try:
            results[database] = run_database(database, args)
        except subprocess.CalledProcessError:
            # Keep going: the other database's numbers are still worth reporting.
            print(f"The {database} benchmark failed (see above).", file=sys.stderr)
            failed.append(database)
        except psycopg.Error as exc:
            print(
                f"PostgreSQL at {args.postgres_url} cannot host the benchmark database: {exc}",
                file=sys.stderr,
            )
            failed.append(database)

    if results:
        print(report(results, args))
    if args.json:
        payload = {"parameters": parameters(args), "results": results, "failed": failed}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0


def run_worker_on_throwaway(
    database: str,
    *,
    script: Path,
    postgres_url: str,
    database_name: str,
    worker_args: list[str],
    environment: dict[str, str] | None = None,
) -> dict:
    """Make a throwaway database, run ``script --worker`` against it under the portal's own
    settings, and always clean up; the worker's JSON result. ``environment`` overrides the
    embedded set-up below (share_bench.py gives the outbox a broker)."""
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as folder:
        throwaway = ThrowawayDatabase(
            database, name=database_name, folder=Path(folder), postgres_url=postgres_url
        )
        url = throwaway.create()
        output = Path(folder) / "result.json"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PORTAL_ENV_FILE": "",  # a developer's demo .env is not this run's settings
            "DEBUG": "true",
            "DEMO_MODE": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": url,
            # Everything else the portal writes (frame cache, DICOM storage) stays in the
            # temporary folder; no broker, no shared cache, no mail server.
            "PORTAL_VAR_DIR": folder,
            "CACHE_URL": "",
            "CELERY_BROKER_URL": "",
            "EMAIL_HOST": "",
            "ALLOWED_HOSTS": "testserver",
            "LOG_LEVEL": "WARNING",
            **(environment or {}),
        }
        command = [
            sys.executable,
            str(script),
            "--worker",
            "--worker-output",
            str(output),
            "--databases",
            database,
            *worker_args,
        ]
        try:
            subprocess.run(command, env=env, cwd=ROOT, check=True)
            return json.loads(output.read_text(encoding="utf-8"))
        finally:
            throwaway.drop()
