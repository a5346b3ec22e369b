"""Django's PostgreSQL backend, whose check of a reused connection asks the server nothing while
the server has said nothing.

With ``CONN_HEALTH_CHECKS`` Django checks a connection it reuses before a request's first query
by running ``SELECT 1``: a round trip on every request, as long as a guest link's indexed lookup
itself. A server says nothing on an idle connection unless it ends it (a restart, an
administrator's ``pg_terminate_backend``, ``idle_session_timeout``: a FATAL message, then the
close) or has a notification for a ``LISTEN``, which the portal never issues. So a connection the
driver saw no failure on, outside a transaction, whose socket has nothing to read, would pass
``SELECT 1``; one with anything to read, or in any other state, is checked Django's way. A link
cut without a word (a firewall dropping idle connections) fails the first query either way,
``SELECT 1`` included, only later.
"""

import select

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if (
            connection.info.transaction_status != pq.TransactionStatus.IDLE
            or _has_something_to_read(connection.fileno())
        ):
            return super().is_usable()
        return True


def _has_something_to_read(socket: int) -> bool:
    # poll rather than select: a worker may hold descriptors past select's limit of 1,024.
    waiting = select.poll()
    waiting.register(socket, select.POLLIN | select.POLLPRI)
    return bool(waiting.poll(0))
