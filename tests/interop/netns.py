"""Private Linux network namespaces for servers that must not listen on the machine's interfaces.

Orthanc binds its HTTP and DICOM ports on every interface (it has no bind-address option), so
the tests and benchmarks run it inside a network namespace of their own: a loopback interface
and nothing else, invisible from the machine's network and deleted afterwards.

The portal itself stays in the root namespace (its database, PostgreSQL on 127.0.0.1 in CI,
lives there) yet must be reachable from Orthanc. That works because on Linux the network
namespace is an attribute of each *thread*, and a socket belongs to the namespace its creating
thread was in, for its whole life:

- :meth:`NetworkNamespace.run` calls a function in a fresh thread that first entered the
  namespace (``setns(2)``). A listening socket created there accepts connections made inside the
  namespace, whichever thread later serves it; a client socket created there connects to
  servers inside the namespace. Threads started by that function inherit the namespace (a
  pynetdicom association's reactor thread, for example).
- :func:`bind_listener` is the common case: a bound, listening TCP socket on the namespace's
  loopback.
- :meth:`NetworkNamespace.command` prefixes a command line with ``ip netns exec`` for a whole
  process (Orthanc, a load generator).

The calling thread never changes namespace: a thread that entered one ends with its function.

Needs root (or CAP_SYS_ADMIN) and iproute2's ``ip``; :func:`unavailable_reason` says why not.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class NamespaceError(RuntimeError):
    """A namespace could not be created, entered or deleted; the message says which and why."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise NamespaceError(f"setns(CLONE_NEWNET) failed: {os.strerror(error)}")


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "creating a network namespace needs root (CAP_SYS_ADMIN)"
    return None


class NetworkNamespace:
    """A named namespace under /var/run/netns (as ``ip netns add`` makes it), loopback up."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = os.path.join(NETNS_DIR, name)

    @classmethod
    def create(cls, prefix: str = "portal") -> NetworkNamespace:
        # Namespace names are file names: a random suffix keeps parallel runs apart.
        namespace = cls(f"{prefix}-{secrets.token_hex(4)}")
        _ip("netns", "add", namespace.name)
        try:
            namespace.command_output("ip", "link", "set", "lo", "up")
        except BaseException:
            namespace.delete()
            raise
        return namespace

    def delete(self) -> None:
        """Remove the namespace. Processes still inside keep it alive until they exit, so
        callers stop theirs first; the name is gone at once either way."""
        if os.path.exists(self.path):
            _ip("netns", "delete", self.name)

    @property
    def exists(self) -> bool:
        return os.path.exists(self.path)

    def command(self, *argv: str) -> list[str]:
        """``argv`` as a command line that runs inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def command_output(self, *argv: str, timeout: float = 30) -> str:
        completed = subprocess.run(
            self.command(*argv), capture_output=True, text=True, timeout=timeout, check=False
        )
        if completed.returncode != 0:
            raise NamespaceError(
                f"{' '.join(argv)} in namespace {self.name} exited with "
                f"{completed.returncode}: {completed.stderr.strip()}"
            )
        return completed.stdout

    def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` in a new thread that entered the namespace first; its
        result, or its exception re-raised here. Blocks until the function returns."""
        outcome: dict[str, Any] = {}

        def inside() -> None:
            try:
                # The fd is only needed for the setns call: the thread stays in the namespace
                # until it ends, and never goes back.
                try:
                    fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    raise NamespaceError(f"no network namespace {self.name}") from None
                try:
                    _setns(fd)
                finally:
                    os.close(fd)
                outcome["result"] = function(*args, **kwargs)
            except BaseException as error:  # handed to the caller's thread
                outcome["error"] = error

        thread = threading.Thread(target=inside, name=f"netns:{self.name}", daemon=True)
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def __repr__(self) -> str:
        return f"<NetworkNamespace {self.name}>"


def _ip(*argv: str) -> None:
    completed = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise NamespaceError(f"ip {' '.join(argv)} failed: {completed.stderr.strip()}")


@contextlib.contextmanager
def network_namespace(prefix: str = "portal") -> Iterator[NetworkNamespace]:
    """A fresh namespace for the block, deleted afterwards (also after an error)."""
    namespace = NetworkNamespace.create(prefix)
    try:
        yield namespace
    finally:
        namespace.delete()


def current_namespace_id() -> int:
    """The inode of the calling thread's network namespace: equal inodes, same namespace."""
    return os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino


def bind_listener(
    namespace: NetworkNamespace | None, host: str = "127.0.0.1", port: int = 0, backlog: int = 128
) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` and listening, in ``namespace`` (or the caller's
    namespace when None). Port 0 picks a free port: read it with ``getsockname()``."""

    def make() -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((host, port))
            listener.listen(backlog)
        except BaseException:
            listener.close()
            raise
        return listener

    return make() if namespace is None else namespace.run(make)


def free_port(namespace: NetworkNamespace | None = None) -> int:
    """A port free on the namespace's loopback at the time of asking (for servers started as
    separate processes, which must bind it themselves)."""
    with contextlib.closing(bind_listener(namespace)) as probe:
        return probe.getsockname()[1]
