"""``manage.py dicom_listener`` as an installation runs it: its own process, stopped by SIGTERM,
and killed outright without losing what it acknowledged."""

from __future__ import annotations

import gc
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from audit.models import Action, AuditEvent
from dimse import listener
from studies.models import Instance, Study
from tests.dimse.conftest import STUDY_UID, Scu, ct_files, received_events
from tests.integration.helpers import wait_until
from tests.servers import free_port

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


class ListenerProcess:
    def __init__(self, env: dict[str, str], port: int, log: Path):
        self.env, self.port, self.log_path = env, port, log
        self.process: subprocess.Popen | None = None
        self.host = "127.0.0.1"

    def start(self) -> ListenerProcess:
        already = len(self.log())
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "dicom_listener", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the listener exited:\n{self.log()}")
            return "DICOM listener PORTAL on 127.0.0.1:" in self.log()[already:]

        wait_until(ready, timeout=60, interval=0.1, what="the listener to start")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=30)


@pytest.fixture
def listener_process(database_url, node, settings, tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CACHE_URL"}
        and not key.startswith(("DICOM_", "CELERY_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url,
        DICOM_STORAGE_ROOT=settings.STORAGES["dicom"]["OPTIONS"]["location"],
        PORTAL_VAR_DIR=str(tmp_path / "var"),
        DICOM_AE_TITLE="PORTAL",
        PYTHONUNBUFFERED="1",
    )
    process = ListenerProcess(env, free_port(), tmp_path / "listener.log")
    yield process
    if process.process is not None and process.process.poll() is None:
        process.process.kill()
        process.process.wait(timeout=10)


def test_a_killed_listener_loses_nothing_it_acknowledged_and_stops_cleanly_on_sigterm(
    listener_process, tmp_path
):
    paths = ct_files(tmp_path / "ct", slices=5)
    listener_process.start()
    echo = Scu(listener_process).associate()
    assert echo.send_c_echo().Status == 0
    echo.release()

    # Three instances acknowledged, then the process dies mid-association (no release).
    responses, assoc = Scu(listener_process).send(paths[:3], release=False)
    assert [r.status for r in responses.values()] == [0, 0, 0]
    assert listener_process.signal(signal.SIGKILL) == -signal.SIGKILL
    assoc.abort()

    assert Study.objects.get(study_uid=STUDY_UID).instance_count == 3
    assert Instance.objects.count() == 3
    # What the crash costs, as documented: that association's transfer event.
    assert not AuditEvent.objects.filter(action=Action.INSTANCES_RECEIVED).exists()

    # The PACS sends the study again to the restarted listener.
    listener_process.start()
    responses, _assoc = Scu(listener_process).send(paths)
    assert [r.status for r in responses.values()] == [0, 0, 0, 0, 0]
    [event] = received_events(1)
    assert (event.details["stored"], event.details["duplicates"]) == (2, 3)
    assert Study.objects.get(study_uid=STUDY_UID).instance_count == 5

    assert listener_process.signal(signal.SIGTERM) == 0
    assert "DICOM listener stopped." in listener_process.log()


def test_the_listener_freezes_what_it_loaded_before_it_serves(monkeypatch):
    """Loaded, the listener leaves what it holds out of Python's collections
    (``portal.preload.freeze_what_is_loaded``) before the first association."""
    start = listener.start_in_thread
    frozen_when_serving = []

    def start_then_stop(server):
        frozen_when_serving.append(gc.get_freeze_count())
        thread = start(server)
        os.kill(os.getpid(), signal.SIGTERM)  # the command's own handler: it stops
        return thread

    monkeypatch.setattr(listener, "start_in_thread", start_then_stop)
    before = gc.get_freeze_count()
    try:
        call_command("dicom_listener", "--port", "0", stdout=io.StringIO())
    finally:
        gc.unfreeze()
    assert len(frozen_when_serving) == 1
    assert frozen_when_serving[0] > before
