"""Lanes of the audit chains on PostgreSQL: which lane of an organization's chain this database
connection appends to, and the head it left there.

Every search and every view writes an audit event, most of them outside any transaction. On one
chain, each such append locked the chain's head, read it, hashed the event and wrote it: two round
trips, with every other worker of the organization queueing on the head meanwhile. A lane is a
chain of its own that one connection claims for as long as it lives (a session-level advisory
lock, released by PostgreSQL when the connection ends). Its owner knows the lane's head, since
nobody else appends there, and appends in one statement that moves the head only if it is still
the one expected (audit.services): about 1.3x the searches a second with five workers. An action's
own transaction (a link opened, a share made) appends to the lane too: the lane's head stays
locked until the action commits, which holds up nobody, where the organization's head would hold
up every other action of the organization meanwhile.

The advisory lock is what keeps the expected head right, not what keeps the chain whole: the
statement checks the head under its row lock, so an append that finds another one there (a
connection pooler that handed the session to someone else, an append of this connection that
failed half-way) writes nothing and is made again the locking way.
"""

import weakref
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from audit.models import lane_chain

# Advisory lock keys are one 64-bit space shared by everything on the database: the lanes' keys
# carry this tag above the chain ids, which stay below 2**48 with at most MAX_LANES lanes.
_LOCK_TAG = 0x4155 << 48
MAX_LANES = 255


@dataclass
class Lane:
    chain: int
    # The lane's head as this connection left it; None until read (or after a failed append).
    last_hash: str | None = None
    count: int = 0


# Per open connection (the driver's object, so that a connection closed and opened again
# claims again): the organization chain's id -> its claimed lane, or None where all were taken.
_claims: "weakref.WeakKeyDictionary[object, dict[int, Lane | None]]" = weakref.WeakKeyDictionary()


def claimed_lane(chain: int) -> Lane | None:
    """This connection's lane of ``chain``, claimed on first use; None if lanes are off
    (``AUDIT_LANES`` = 0) or every lane is held by another connection, and then the caller
    appends to ``chain`` itself."""
    if settings.AUDIT_LANES <= 0:
        return None
    connection.ensure_connection()
    claims = _claims.setdefault(connection.connection, {})
    if chain not in claims:
        claims[chain] = _claim(chain)
    return claims[chain]


def _claim(chain: int) -> Lane | None:
    with connection.cursor() as cursor:
        for lane in range(1, min(settings.AUDIT_LANES, MAX_LANES) + 1):
            candidate = lane_chain(chain, lane)
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_TAG | candidate])
            if cursor.fetchone()[0]:
                return Lane(chain=candidate)
    return None
