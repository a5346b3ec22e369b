"""The namespace helper keeps its promises: code runs inside while the caller stays outside, a
socket made inside is reachable from inside only yet can be served from outside, and the
namespace is gone afterwards, also after an error."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from tests.conftest import require_service
from tests.interop.netns import (
    NamespaceError,
    bind_listener,
    current_namespace_id,
    free_port,
    network_namespace,
    unavailable_reason,
)


def _connect_and_read(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        return connection.recv(64)


def test_a_function_runs_inside_and_the_caller_stays_outside(namespace):
    outside = current_namespace_id()

    inside = namespace.run(current_namespace_id)

    assert inside != outside
    assert current_namespace_id() == outside
    # What `ip netns exec` sees is the same namespace.
    link = namespace.command_output("readlink", "/proc/self/ns/net").strip()
    assert link == f"net:[{inside}]"


def test_threads_started_inside_inherit_the_namespace(namespace):
    def from_a_child_thread() -> int:
        seen: list[int] = []
        child = threading.Thread(target=lambda: seen.append(current_namespace_id()))
        child.start()
        child.join()
        return seen[0]

    assert namespace.run(from_a_child_thread) == namespace.run(current_namespace_id)


def test_a_socket_bound_inside_is_served_from_outside_and_reachable_from_inside_only(namespace):
    listener = bind_listener(namespace)
    port = listener.getsockname()[1]
    served_from: list[int] = []

    def serve_one() -> None:
        connection, _ = listener.accept()
        served_from.append(current_namespace_id())
        with connection:
            connection.sendall(b"hello from the root namespace")

    server = threading.Thread(target=serve_one)
    server.start()
    try:
        with pytest.raises(ConnectionRefusedError):
            _connect_and_read(port)

        assert namespace.run(_connect_and_read, port) == b"hello from the root namespace"
    finally:
        server.join(timeout=5)
        listener.close()
    assert served_from == [current_namespace_id()]


def test_the_namespace_has_its_own_free_ports(namespace):
    # A port taken in the root namespace is still free inside: the two are separate stacks.
    with bind_listener(None) as taken:
        port = taken.getsockname()[1]
        inside = bind_listener(namespace, port=port)
        inside.close()
    assert 0 < free_port(namespace) < 65536


def test_an_exception_inside_reaches_the_caller(namespace):
    def fail() -> None:
        raise ValueError("raised inside the namespace")

    with pytest.raises(ValueError, match="raised inside the namespace"):
        namespace.run(fail)


def test_the_namespace_is_deleted_after_the_block_also_after_an_error():
    reason = unavailable_reason()
    require_service(reason is None, f"network namespaces are unavailable: {reason}")
    with pytest.raises(RuntimeError, match="boom"), network_namespace("netns-test") as created:
        path = created.path
        assert os.path.exists(path)
        raise RuntimeError("boom")
    assert not os.path.exists(path)
    with pytest.raises(NamespaceError, match="no network namespace"):
        created.run(current_namespace_id)
