"""Real peers against the portal: dicomweb-client over HTTP, and Orthanc (Debian's ``orthanc`` and
``orthanc-dicomweb``) in a private network namespace.

- ``namespace``: a fresh network namespace (loopback only), deleted at teardown.
- ``orthanc``: ``orthanc(**options)`` starts an :class:`~tests.interop.orthanc.Orthanc` in
  ``namespace`` (options as that class takes them) and stops it at teardown; its log is printed
  when the test fails.
- ``ct_study`` and ``ct_datasets`` are the DICOMweb tests' (a three-slice CT and a one-slice MR
  of Dubois^Marie, ingested for St. Elsewhere's Radiology location).

Missing Orthanc or namespaces (not root, no ``ip``) skip the test, and fail it in CI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.accounts.helpers import plain_static_storage
from tests.conftest import require_service
from tests.dicomweb.conftest import ct_study  # noqa: F401 - a fixture used by the tests here
from tests.interop import netns
from tests.interop import orthanc as orthanc_module
from tests.interop.orthanc import Orthanc


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    plain_static_storage(settings)


@pytest.fixture
def namespace() -> Iterator[netns.NetworkNamespace]:
    reason = netns.unavailable_reason()
    require_service(reason is None, f"network namespaces are unavailable: {reason}")
    with netns.network_namespace("interop") as created:
        yield created


@pytest.fixture
def orthanc(request, namespace, tmp_path) -> Iterator[Callable[..., Orthanc]]:
    reason = orthanc_module.unavailable_reason()
    require_service(reason is None, str(reason))
    started: list[Orthanc] = []

    def start(**options) -> Orthanc:
        server = Orthanc(namespace, tmp_path / f"orthanc-{len(started) + 1}", **options)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            for server in started:
                print(f"\n----- Orthanc log ({server.workdir}) -----\n{server.log()[-8000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
