"""A free port on the loopback for a server a test starts as a process or thread of its own (in a
network namespace: ``tests.interop.netns.free_port``)."""

import socket


def free_port() -> int:
    """A port free on 127.0.0.1 at the time of asking; the server must bind it itself."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
