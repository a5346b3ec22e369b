"""`make bench` runs pytest over this folder: each benchmark script here is one pytest item that
runs the script in a subprocess and prints its Markdown report at the end of the session.

The scripts stay plain scripts (``python bench/directory_bench.py --help``); pytest is only the
runner `make bench` calls. Sizes and databases come from the environment:

- ``BENCH_STUDIES`` (default 100000), ``BENCH_QUERIES`` (default 200) for the directory;
- ``BENCH_SHARE_ENTRIES`` (default 10000): the studies a recipient holds through shares, for
  the sharing benchmark;
- ``BENCH_MESSAGES`` (default 1000) for the outbox; ``BENCH_LINK_SECONDS`` (default 5) for
  each measurement of guest-link pages and opens;
- ``BENCH_HTTP_SECONDS`` (default 8) for each DICOMweb measurement, next to Orthanc (which needs
  Debian's ``orthanc`` and ``orthanc-dicomweb`` and root for its network namespace: without
  them that benchmark is skipped, saying so);
- ``BENCH_DATABASES`` (default ``sqlite,postgres`` when PostgreSQL answers at
  ``BENCH_POSTGRES_URL``, else ``sqlite`` alone).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
_REPORTS = pytest.StashKey[list[tuple[str, str]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REPORTS] = []


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.name in BENCHMARKS and file_path.parent == HERE and _named(parent.config):
        return BenchmarkScript.from_parent(parent, path=file_path)
    return None


def _named(config: pytest.Config) -> bool:
    """Whether this folder (or a file in it) was asked for by name: a plain ``pytest .`` must
    not start a benchmark that runs for many minutes."""
    start = config.invocation_params.dir
    for arg in config.args:
        target = (start / arg.split("::")[0]).resolve()
        if target == HERE or HERE in target.parents:
            return True
    return False


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for name, report in config.stash.get(_REPORTS, []):
        terminalreporter.write_sep("=", name)
        terminalreporter.write_line(report)


def _postgres_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(f"{url.rstrip('/')}/postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _databases() -> str:
    chosen = os.environ.get("BENCH_DATABASES", "").strip()
    if chosen:
        return chosen
    url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    return "sqlite,postgres" if _postgres_answers(url) else "sqlite"


class BenchmarkScript(pytest.File):
    def collect(self):
        yield BenchmarkRun.from_parent(self, name=self.path.stem)


class BenchmarkRun(pytest.Item):
    def runtest(self) -> None:
        missing = MISSING.get(self.path.name, lambda: "")()
        if missing:
            pytest.skip(f"{self.path.name}: {missing}")
        command = [sys.executable, str(self.path), *BENCHMARKS[self.path.name]()]
        # stderr (the script's progress) goes to pytest's capture: shown if the run fails.
        completed = subprocess.run(
            command, stdout=subprocess.PIPE, text=True, cwd=self.path.parent.parent, check=False
        )
        if completed.returncode != 0:
            raise AssertionError(
                f"{self.path.name} exited with status {completed.returncode}; its log is in "
                "the captured stderr."
            )
        self.config.stash[_REPORTS].append((self.path.name, completed.stdout))

    def reportinfo(self):
        return self.path, None, f"benchmark {self.path.name}"


def _directory_arguments() -> list[str]:
    return [
        "--studies",
        os.environ.get("BENCH_STUDIES", "100000"),
        "--queries",
        os.environ.get("BENCH_QUERIES", "200"),
        "--databases",
        _databases(),
    ]


def _share_arguments() -> list[str]:
    return [
        "--entries",
        os.environ.get("BENCH_SHARE_ENTRIES", "10000"),
        "--databases",
        _databases(),
    ]


def _outbox_arguments() -> list[str]:
    database = "postgres" if "postgres" in _databases() else "sqlite"
    return ["--messages", os.environ.get("BENCH_MESSAGES", "1000"), "--database", database]


def _link_arguments() -> list[str]:
    database = "postgres" if "postgres" in _databases() else "sqlite"
    return ["--database", database, "--duration", os.environ.get("BENCH_LINK_SECONDS", "5")]


def _dicomweb_arguments() -> list[str]:
    database = "postgres" if "postgres" in _databases() else "sqlite"
    return ["--database", database, "--duration", os.environ.get("BENCH_HTTP_SECONDS", "8")]


def _audit_arguments() -> list[str]:
    return []


def _viewer_arguments() -> list[str]:
    database = "postgres" if "postgres" in _databases() else "sqlite"
    return ["--database", database]


def _orthanc_missing() -> str:
    if shutil.which("Orthanc") is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if os.geteuid() != 0:
        return "Orthanc runs in a network namespace of its own, which needs root"
    return ""


def _ohif_missing() -> str:
    if not (HERE.parent / "var" / "ohif" / "index.html").is_file():
        return "OHIF is not installed (make ohif, which needs npm)"
    if not (shutil.which("chromium") or os.path.exists("/usr/bin/chromium")):
        return "Chromium is not installed (apt-get install chromium)"
    return ""


def _postgres_missing() -> str:
    url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    return "" if _postgres_answers(url) else f"no PostgreSQL answers at {url}"


# Each benchmark script and the arguments `make bench` runs it with.
BENCHMARKS = {
    "directory_bench.py": _directory_arguments,
    "outbox_bench.py": _outbox_arguments,
    "link_bench.py": _link_arguments,
    "share_bench.py": _share_arguments,
    "audit_bench.py": _audit_arguments,
    "dicomweb_bench.py": _dicomweb_arguments,
    "viewer_bench.py": _viewer_arguments,
}
# What a benchmark needs that a machine may lack: the reason it is skipped, or "".
MISSING = {
    "audit_bench.py": _postgres_missing,
    "dicomweb_bench.py": _orthanc_missing,
    "viewer_bench.py": _ohif_missing,
}
