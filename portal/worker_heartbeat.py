"""A gunicorn sync worker streaming a long answer tells the master, as it goes, that it is alive.

The master ends a sync worker it has not heard from for ``GUNICORN_TIMEOUT`` seconds, and a
sync worker reports only between requests: a study's ZIP or a WADO-RS retrieve reaching a slow
line for longer than that was cut off in the middle. ``gunicorn.conf.py`` hands each worker's
report here after the fork; ``portal.middleware.StreamingHeartbeatMiddleware`` reports through
it, at most once a second, each time a chunk of a streamed answer has gone out. A client that
stops reading stops the chunks, so a stalled answer still holds its worker no longer than the
timeout.

Free of Django: gunicorn's configuration imports it in every process it serves from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

_EVERY_SECONDS = 1.0

# The running worker's report to its master; None outside a gunicorn worker (runserver, tests,
# Celery), where nobody is listening.
_report: Callable[[], None] | None = None


def reports_with(report: Callable[[], None]) -> None:
    """Make ``report`` (the worker's ``notify``) the way this process tells its master."""
    global _report
    _report = report


def reporting(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks``, reporting to the master once a second while they go out: a chunk is asked
    for only once the one before has been written to the client. Outside a gunicorn worker,
    ``chunks`` as they are."""
    report = _report
    if report is None:
        yield from chunks
        return
    reported = time.monotonic()
    for chunk in chunks:
        yield chunk
        now = time.monotonic()
        if now - reported >= _EVERY_SECONDS:
            report()
            reported = now
