"""Orthanc, the real DICOM peer of the interoperability tests and of the DICOMweb benchmark.

Debian's ``orthanc`` with the ``orthanc-dicomweb`` plugin, started from a temporary
configuration inside a private network namespace (:mod:`tests.interop.netns`): Orthanc binds
every interface and has no option to bind one address, so it never runs in the machine's own
namespace. Within that namespace it is configured as a careful installation would be anyway:
``RemoteAccessAllowed: false``, HTTP authentication on with a random password, its DICOM server
only when asked for, storage and index in a temporary folder, and only the DICOMweb plugin.

Everything that talks to it does so from inside the namespace: :meth:`Orthanc.request` opens its
connection from a thread that entered the namespace. The portal's servers, for Orthanc to call,
are bound inside the namespace too (see ``tests.interop.servers``).

Plain module (no pytest): ``bench/dicomweb_bench.py`` starts Orthanc with it as well.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.interop.netns import NetworkNamespace, free_port

ORTHANC_BINARY = os.environ.get("ORTHANC_BINARY", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = os.environ.get(
    "ORTHANC_DICOMWEB_PLUGIN", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
)
USERNAME = "interop"


def _die_with_parent() -> list[str]:
    """A command prefix that has the kernel kill Orthanc when the thread that started it ends,
    so that a test run killed outright leaves no Orthanc behind (util-linux's setpriv; without
    it, Orthanc is only stopped by :meth:`Orthanc.stop`). Start Orthanc from a thread that
    outlives it, the main thread in practice."""
    return ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []


def unavailable_reason() -> str | None:
    """Why Orthanc with its DICOMweb plugin cannot be started here, or None."""
    if not (os.path.exists(ORTHANC_BINARY) or shutil.which(ORTHANC_BINARY)):
        return f"Orthanc is not installed ({ORTHANC_BINARY}; apt-get install orthanc)"
    if not os.path.exists(DICOMWEB_PLUGIN):
        return (
            f"Orthanc's DICOMweb plugin is not installed ({DICOMWEB_PLUGIN}; "
            "apt-get install orthanc-dicomweb)"
        )
    return None


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Orthanc:
    """One Orthanc process in ``namespace``, storing under ``workdir``.

    ``modalities``: DICOM peers by name, ``{"portal": ("PORTAL", "127.0.0.1", 11112)}``.
    ``dicomweb_servers``: DICOMweb servers by name, ``{"portal": {"Url": ..., "HttpHeaders":
    {...}}}`` (the plugin's own syntax). ``dicom_server``: whether Orthanc accepts associations
    (C-STORE) on ``dicom_port``."""

    namespace: NetworkNamespace
    workdir: Path
    aet: str = "ORTHANC"
    dicom_server: bool = False
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    dicomweb_servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    http_port: int = 0
    dicom_port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    extra: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.http_port = self.http_port or free_port(self.namespace)
        if self.dicom_server and not self.dicom_port:
            self.dicom_port = free_port(self.namespace)
        self.config_path = self.workdir / "orthanc.json"
        self.log_path = self.workdir / "orthanc.log"

    # --- Configuration and process -------------------------------------------------------

    def configuration(self) -> dict[str, Any]:
        storage = self.workdir / "storage"
        return {
            "Name": "PortalInterop",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "Plugins": [DICOMWEB_PLUGIN],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            # Only loopback exists in the namespace; this keeps Orthanc to it regardless.
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USERNAME: self.password},
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "DicomServerEnabled": self.dicom_server,
            "DicomAet": self.aet,
            # Unused when the DICOM server is off, but Orthanc binds nothing then.
            "DicomPort": self.dicom_port or 4242,
            "DicomCheckCalledAet": False,
            "DicomModalities": {
                name: [aet, host, port] for name, (aet, host, port) in self.modalities.items()
            },
            "DicomScuTimeout": 30,
            "SaveJobs": False,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": False,
                "Servers": self.dicomweb_servers,
            },
            **self.extra,
        }

    def start(self, *, timeout: float = 60) -> Orthanc:
        if self.process is not None:
            raise RuntimeError("Orthanc is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.configuration(), indent=2))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.namespace.command(*_die_with_parent(), ORTHANC_BINARY, str(self.config_path)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"Orthanc exited at start:\n{self.log()[-4000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.request("GET", "/system", timeout=2).status == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Orthanc did not answer within {timeout:.0f} s:\n{self.log()[-4000:]}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 15) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- REST API ------------------------------------------------------------------------

    @property
    def authorization(self) -> str:
        credentials = base64.b64encode(f"{USERNAME}:{self.password}".encode()).decode()
        return f"Basic {credentials}"

    @property
    def url(self) -> str:
        """Orthanc's base URL, valid inside the namespace only."""
        return f"http://127.0.0.1:{self.http_port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict | list | None = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> Response:
        """One request to Orthanc's REST API, from inside the namespace."""
        sent_headers = {"Authorization": self.authorization, **(headers or {})}
        if isinstance(body, dict | list):
            body = json.dumps(body)
            sent_headers.setdefault("Content-Type", "application/json")

        def exchange() -> Response:
            connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
            try:
                connection.request(method, path, body=body, headers=sent_headers)
                answer = connection.getresponse()
                return Response(answer.status, dict(answer.getheaders()), answer.read())
            finally:
                connection.close()

        return self.namespace.run(exchange)

    def get_json(self, path: str, **options) -> Any:
        return self.checked("GET", path, **options).json()

    def post_json(self, path: str, body: Any, **options) -> Any:
        return self.checked("POST", path, body, **options).json()

    def checked(self, method: str, path: str, body: Any = None, **options) -> Response:
        """A request whose answer must be a success; otherwise an error naming Orthanc's."""
        response = self.request(method, path, body, **options)
        if not 200 <= response.status < 300:
            raise AssertionError(
                f"Orthanc answered {response.status} to {method} {path}: "
                f"{response.body[:2000].decode(errors='replace')}"
            )
        return response

    def upload(self, part10: bytes) -> dict[str, Any]:
        """Store one DICOM file through the REST API (POST /instances)."""
        return self.checked(
            "POST", "/instances", part10, headers={"Content-Type": "application/dicom"}
        ).json()

    def instance_file(self, orthanc_id: str) -> bytes:
        return self.checked("GET", f"/instances/{orthanc_id}/file").body
