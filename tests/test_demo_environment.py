"""Issue 11: after `make run`, every documented manage.py command works on the demo (its settings
are written to .env, which portal.settings reads), and `make run PORT=...` serves there with
links that say so."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
from dotenv import dotenv_values

from portal import demo_env
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO = {
    "DEBUG": "true",
    "DEMO_MODE": "true",
    "DATABASE_URL": "sqlite:////tmp/demo/portal.sqlite3",
    "CELERY_BROKER_URL": "",
    "CACHE_URL": "",
    "EMAIL_HOST": "",
    "PORTAL_VAR_DIR": "/tmp/demo",
    "SITE_URL": "http://127.0.0.1:8001",
}


def plain_environment(**extra: str) -> dict[str, str]:
    """What a developer's shell holds: none of the portal's variables (CI exports some)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, **extra}


def test_the_demo_settings_are_written_owner_only_and_the_keys_are_kept(tmp_path):
    path = tmp_path / ".env"

    first = demo_env.write(path, DEMO)
    second = demo_env.write(path, {**DEMO, "SITE_URL": "http://127.0.0.1:8002"})

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = dotenv_values(path)
    assert {name: written[name] for name in DEMO} == {**DEMO, "SITE_URL": "http://127.0.0.1:8002"}
    for key in demo_env.KEPT_SECRETS:
        assert len(written[key]) >= 32
        assert first[key] == second[key] == written[key]
    assert first["SECRET_KEY"] != first["AUDIT_KEY"]


def settings_seen(env_file: Path | str, **environment: str) -> list[str]:
    show = (
        "from django.conf import settings; "
        "print(settings.DEBUG, settings.SITE_URL, settings.DATABASES['default']['NAME'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {show}"],
        cwd=ROOT,
        env=plain_environment(
            DJANGO_SETTINGS_MODULE="portal.settings",
            PORTAL_ENV_FILE=str(env_file),
            **environment,
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_settings_read_the_file_and_the_environment_wins(tmp_path):
    path = tmp_path / ".env"
    demo_env.write(path, DEMO)

    assert settings_seen(path) == ["True", "http://127.0.0.1:8001", "/tmp/demo/portal.sqlite3"]
    assert settings_seen(path, SITE_URL="https://portal.example.org")[1] == (
        "https://portal.example.org"
    )


def test_an_installation_reads_no_file_when_told(tmp_path):
    path = tmp_path / ".env"
    demo_env.write(path, DEMO)

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=plain_environment(DJANGO_SETTINGS_MODULE="portal.settings", PORTAL_ENV_FILE=""),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Without the file nothing says DEBUG: the production settings ask for their keys.
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


def new_study_from_bundled_files(folder: Path) -> list[Path]:
    """pydicom's bundled CT and MR (read from the package, never downloaded), under new UIDs:
    the demo already holds them as they are."""
    bundled = Path(pydicom.__file__).parent / "data" / "test_files"
    study_uid = pydicom.uid.generate_uid()
    folder.mkdir()
    written = []
    for name in ("CT_small.dcm", "MR_small.dcm"):
        dataset = pydicom.dcmread(bundled / name)
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = pydicom.uid.generate_uid()
        dataset.SOPInstanceUID = pydicom.uid.generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.PatientID, dataset.PatientName = "CLONE-1", "Clone^Test"
        path = folder / name
        dataset.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def wait_for_http(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make run ended early with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"nothing answered at {url} in {timeout:.0f} s")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_from_a_clean_clone_make_run_then_import_dicom_works_on_the_demo(tmp_path):
    clone = tmp_path / "portal"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    # The clone uses this checkout's installed environment (make would otherwise install a new
    # one from PyPI): its stamp is taken as up to date (-o).
    (clone / ".venv").symlink_to(Path(sys.executable).parent.parent)
    port, dicom_port = free_port(), free_port()
    log = (tmp_path / "make-run.log").open("w")
    server = subprocess.Popen(
        ["make", "-o", ".venv/.installed", "run", f"PORT={port}", f"DICOM_PORT={dicom_port}"],
        cwd=clone,
        env=plain_environment(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/accounts/login/", server, timeout=240)
        printed = (tmp_path / "make-run.log").read_text()
        assert f"Open http://127.0.0.1:{port}" in printed

        files = [str(path) for path in new_study_from_bundled_files(tmp_path / "new")]
        imported = subprocess.run(
            [
                str(clone / ".venv" / "bin" / "python"),
                "manage.py",
                "import_dicom",
                *files,
                "--organization",
                "St. Elsewhere Hospital",
                "--location",
                "Radiology",
                "--quiet",
            ],
            cwd=clone,
            env=plain_environment(),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        assert "Stored: 2" in imported.stdout, imported.stdout

        audit = subprocess.run(
            [str(clone / ".venv" / "bin" / "python"), "manage.py", "verify_audit"],
            cwd=clone,
            env=plain_environment(),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert audit.returncode == 0, audit.stdout + audit.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
