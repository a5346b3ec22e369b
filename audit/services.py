"""Appending to the audit trail.

``record`` runs inside the caller's transaction: the event commits with the action it describes,
or neither does. If the event cannot be written the exception propagates and the action fails
(fail closed). ``record_many`` appends several events at once (a batch of received studies).

Each organization has its own chain (and events of no organization one more): an append locks
only its chain's head, so unrelated organizations never wait for each other. On PostgreSQL an
event goes to the lane of that chain its connection holds (audit.lanes), where it waits for
nobody, in the caller's transaction or, outside one, in a transaction of its own. Each event's
hash is an HMAC under ``AUDIT_KEY`` (audit.signing) of its content and its predecessor's hash.
"""

import contextlib
import hashlib
import json
from collections.abc import Iterable
from datetime import UTC
from typing import TYPE_CHECKING, Any, Protocol, Required, TypedDict, Unpack, cast

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.codes import codes_for
from audit.lanes import claimed_lane
from audit.models import AuditEvent, ChainHead, Outcome, chain_for
from audit.signing import SigningKey, current_key, seal_head

# The one authority on the client's address (behind a trusted proxy, the address it forwards);
# callers have always found it here too.
from portal.clients import canonical_ip as canonical_ip
from portal.clients import client_ip as client_ip

if TYPE_CHECKING:
    from django.db.backends.postgresql.operations import DatabaseOperations as PostgresOperations

GENESIS_HASH = "0" * 64
ANONYMOUS_RECIPIENT = "anonymous recipient"
_SECRET_WORDS = ("password", "token", "code", "otp", "secret", "passcode", "pin")


def redact(details: Any) -> Any:
    """Replace the value of every key that names a secret, at any depth."""
    if isinstance(details, dict):
        return {
            key: "[redacted]"
            if any(word in str(key).lower() for word in _SECRET_WORDS)
            else redact(value)
            for key, value in details.items()
        }
    if isinstance(details, list | tuple):
        return [redact(item) for item in details]
    return details


def storable_details(details: dict[str, Any] | None) -> dict[str, Any]:
    """The details exactly as the JSON column will give them back: non-string keys become strings,
    tuples lists, dates and UUIDs ISO strings, secrets masked. Hashing this form (not the caller's
    objects) is what lets the hash be recomputed from the stored row. NaN and infinities are
    refused: PostgreSQL's jsonb cannot store them, so they must not work on SQLite either."""
    encoded = json.dumps(details or {}, cls=DjangoJSONEncoder, allow_nan=False)
    stored: dict[str, Any] = redact(json.loads(encoded))
    return stored


# Python writes floats of 1e16 and beyond in exponent form; PostgreSQL's jsonb stores them as
# numerics and gives back integers ({"n": 1e16} returns as {"n": 10000000000000000}), and turns
# -0.0 into 0.0. Hashing every number that large as a float, and zero as 0.0, makes both
# spellings hash alike.
_EXACT_INTEGER_LIMIT = 10**16


def _canonical_numbers(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) >= _EXACT_INTEGER_LIMIT:
            try:
                return float(value)
            except OverflowError:
                return value
        return value
    if isinstance(value, float):
        return 0.0 if value == 0 else value
    if isinstance(value, dict):
        return {key: _canonical_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_numbers(item) for item in value]
    return value


def _canonical(fields: dict[str, Any], prev_hash: str) -> bytes:
    return json.dumps(
        _canonical_numbers({**fields, "prev_hash": prev_hash}),
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    ).encode()


def event_digest(fields: dict[str, Any], prev_hash: str) -> str:
    """The unkeyed SHA-256 of events recorded before the chain was keyed (``key_id`` empty).
    Anyone can recompute it: it is kept only to verify those older events."""
    return hashlib.sha256(_canonical(fields, prev_hash)).hexdigest()


def event_mac(fields: dict[str, Any], prev_hash: str, key: SigningKey) -> str:
    """An event's hash: HMAC-SHA256 under the audit key of its content, the key's id and the
    previous event's hash. Without the key nobody can compute it, so a rewritten event cannot
    be given a hash that verifies."""
    return key.mac(_canonical({**fields, "key_id": key.id}, prev_hash))


def hashed_fields(event: AuditEvent) -> dict[str, Any]:
    """The content an event's hash covers; verify_audit recomputes it from stored rows, so every
    value is taken in a form that reads back identically from SQLite and PostgreSQL."""
    at = event.at.astimezone(UTC).replace(tzinfo=None)
    return {
        "at": at.isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "ip": canonical_ip(event.ip),
        "action": event.action,
        "event_code": event.event_code,
        "event_type_code": event.event_type_code,
        "outcome": str(event.outcome),
        "organization_id": event.organization_id,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "study_uid": event.study_uid,
        "patient_id": event.patient_id,
        "details": event.details,
    }


class _AuditedPatient(Protocol):
    patient_id: str


class AuditedStudy(Protocol):
    """What the trail reads of a study (a ``studies.Study``, which audit does not import)."""

    study_uid: str
    organization_id: int

    @property
    def patient(self) -> _AuditedPatient: ...


class EventArguments(TypedDict, total=False):
    """What an event is made of (:func:`record`, :func:`record_many`): only ``action`` is
    required. ``actor`` defaults to the request's user; with neither, the event is by an
    anonymous recipient. ``study`` fills the study UID, patient ID and organization."""

    action: Required[str]
    actor: AbstractBaseUser | None
    actor_label: str | None
    request: HttpRequest | None
    outcome: str
    organization_id: int | None
    target_type: str
    target_id: str | int
    study: AuditedStudy | None
    details: dict[str, Any] | None


def record(**arguments: Unpack[EventArguments]) -> AuditEvent:
    """Append one event (see :class:`EventArguments`): on PostgreSQL to this connection's lane of
    its organization's chain (audit.lanes); otherwise, or with no lane free, to that chain."""
    return _appended(_new_event(**arguments))


def _appended(event: AuditEvent) -> AuditEvent:
    chain = chain_for(event.organization_id)
    key = current_key()
    if _appended_in_lane(event, chain, key):
        return event
    if _appended_in_two_round_trips(event, chain, key) is None:
        _appended_with_orm([event], chain, key)
    return event


def record_many(events: Iterable[EventArguments]) -> list[AuditEvent]:
    """Append several events, in order, in the caller's transaction or one of their own: each
    as :func:`record` appends one with those arguments. On PostgreSQL each chain's head is
    locked and moved once for all of its events, which are inserted together: a batch of 100
    received studies took 200 round trips to audit one by one, and takes three. A single event
    goes as :func:`record` takes it (to its lane: one statement), as most batches of a STOW-RS
    request or an upload of one study have."""
    built = [_new_event(**arguments) for arguments in events]
    if not built:
        return []
    if len(built) == 1:
        return [_appended(built[0])]
    by_chain: dict[int, list[AuditEvent]] = {}
    for event in built:
        by_chain.setdefault(chain_for(event.organization_id), []).append(event)
    key = current_key()
    # Within the caller's transaction, if any (no savepoint: the events go with the action).
    with transaction.atomic(savepoint=False):
        # Heads locked in one order: two batches never each wait for a head the other holds.
        for chain in sorted(by_chain):
            if not _appended_together(by_chain[chain], chain, key):
                _appended_with_orm(by_chain[chain], chain, key)
    return built


def _new_event(
    *,
    action: str,
    actor: AbstractBaseUser | None = None,
    actor_label: str | None = None,
    request: HttpRequest | None = None,
    outcome: str = Outcome.SUCCESS,
    organization_id: int | None = None,
    target_type: str = "",
    target_id: str | int = "",
    study: AuditedStudy | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """The event :func:`record` appends (its defaults are :class:`EventArguments`'), not yet
    chained nor saved."""
    if actor is None and request is not None and request.user.is_authenticated:
        actor = request.user
    if actor_label is None:
        actor_label = actor.get_username() if actor is not None else ANONYMOUS_RECIPIENT
    event_code, event_type_code = codes_for(action)
    study_uid = patient_id = ""
    if study is not None:
        study_uid = study.study_uid
        patient_id = study.patient.patient_id
        organization_id = organization_id or study.organization_id
        target_type = target_type or "study"
        target_id = target_id or study.study_uid
    if organization_id is not None:
        # Hashed as given and read back as an integer: "5" and 5 must not hash differently.
        organization_id = int(organization_id)
    return AuditEvent(
        # By id: audit knows users as AUTH_USER_MODEL's base class, not as the accounts model.
        actor_id=actor.pk if actor is not None else None,
        actor_label=actor_label,
        ip=client_ip(request),
        action=action,
        event_code=event_code,
        event_type_code=event_type_code,
        outcome=outcome,
        organization_id=organization_id,
        target_type=target_type,
        target_id=str(target_id),
        study_uid=study_uid,
        patient_id=patient_id,
        details=storable_details(details),
    )


def _appended_with_orm(events: list[AuditEvent], chain: int, key: SigningKey) -> int:
    """Append ``events`` to ``chain`` through the ORM: on SQLite, and for a chain's first event
    on PostgreSQL (its head is made here). Returns the chain's new count."""
    with transaction.atomic():
        # Only this chain's head is locked, until the caller's transaction ends.
        last_hash, count = _locked_or_new_head(chain)
        for event in events:
            event.key_id = key.id
            _chain_onto(event, chain, last_hash, key)
            event.save(force_insert=True)
            last_hash, count = event.hash, count + 1
        _move_head(chain, last_hash, count, seal_head(chain, count, last_hash, key))
    return count


# Every audited request appends an event, so the head's statements are written out rather than
# built by the ORM each time (a third of an audited search's time went to building them). Only
# the models' own table and column names are formatted into them; every value is a parameter.
_HEAD_TABLE = ChainHead._meta.db_table
_EVENT_TABLE = AuditEvent._meta.db_table
_EVENT_FIELDS = [field for field in AuditEvent._meta.concrete_fields if not field.primary_key]
# Set under the chain head's lock; every other column is known before.
_CHAINING = frozenset({"chain", "at", "prev_hash", "hash"})
_EVENT_COLUMNS = ", ".join(f'"{field.column}"' for field in _EVENT_FIELDS)
# Two round trips, each several statements sent at once: the lock is held only while the event is
# hashed and the second one runs, so concurrent appenders queue for less time.
_READ_HEAD = f'SELECT "last_hash", "count" FROM "{_HEAD_TABLE}" WHERE "chain" = %s'  # noqa: S608
_MOVE_HEAD = (
    f'UPDATE "{_HEAD_TABLE}" SET "last_hash" = %s, "count" = %s, "seal" = %s '  # noqa: S608
    'WHERE "chain" = %s'
)
_LOCK = f"{_READ_HEAD} FOR UPDATE"
_APPEND = (
    f'{_MOVE_HEAD}; INSERT INTO "{_EVENT_TABLE}" ({_EVENT_COLUMNS}) '  # noqa: S608
    f'VALUES ({", ".join(["%s"] * len(_EVENT_FIELDS))}) RETURNING "id"'
)


def _chain_onto(event: AuditEvent, chain: int, last_hash: str, key: SigningKey) -> None:
    """Make ``event`` the successor of the head's event in ``chain``, under the head's lock (or
    in the lane its connection holds). Timestamped there, so that times never go backwards
    along the chain."""
    event.chain = chain
    event.at = timezone.now()
    event.prev_hash = last_hash
    event.hash = event_mac(hashed_fields(event), last_hash, key)


def _appended_in_two_round_trips(event: AuditEvent, chain: int, key: SigningKey) -> int | None:
    """Append ``event`` on PostgreSQL in two round trips: lock the chain's head; then move it
    and insert the event. Outside a transaction (a search, a retrieve: the event is the
    request's only write) the first also begins one and the second commits it, where the ORM
    took five round trips (begin, lock, insert, move, commit); inside the caller's transaction
    the head stays locked until the caller commits, and no savepoint is taken: an event that
    cannot be written fails the whole action. Concurrent appenders to one chain queue on its
    head, so the shorter it is held the more of them append per second (about 1.6x with five
    workers here). Several statements go in one round trip: their parameters are bound on the
    client (``compose_sql``, the driver's own quoting), since a connection that binds them on the
    server (``portal.settings``, for prepared statements) takes one statement per round trip.

    Returns the chain's new count; None, having written nothing, on SQLite and for a chain
    without a head yet: the ORM's path runs then."""
    if connection.vendor != "postgresql":
        return None
    # The vendor was just checked: these are PostgreSQL's operations, which compose_sql is.
    operations = cast("PostgresOperations", connection.ops)
    own_transaction = not connection.in_atomic_block
    # Everything but the chaining is prepared before the lock is taken.
    event.key_id = key.id
    prepared = {
        field.attname: field.get_db_prep_save(getattr(event, field.attname), connection)
        for field in _EVENT_FIELDS
        if field.attname not in _CHAINING
    }
    with connection.cursor() as cursor:
        try:
            if own_transaction:
                cursor.execute(operations.compose_sql(f"BEGIN; {_LOCK}", [chain]))
                cursor.nextset()
            else:
                cursor.execute(_LOCK, [chain])
            head = cursor.fetchone()
            if head is None:
                if own_transaction:
                    cursor.execute("ROLLBACK")
                return None
            last_hash, count = head[0], int(head[1])
            _chain_onto(event, chain, last_hash, key)
            seal = seal_head(chain, count + 1, event.hash, key)
            values = [
                prepared[field.attname]
                if field.attname in prepared
                else field.get_db_prep_save(getattr(event, field.attname), connection)
                for field in _EVENT_FIELDS
            ]
            append = f"{_APPEND}; COMMIT" if own_transaction else _APPEND
            params = [event.hash, count + 1, seal, chain, *values]
            cursor.execute(operations.compose_sql(append, params))
            cursor.nextset()
            event.pk = cursor.fetchone()[0]
        except BaseException:
            if own_transaction:
                # Whatever failed, the connection must not stay in the transaction begun here.
                with contextlib.suppress(Exception):
                    cursor.execute("ROLLBACK")
            raise
    event._state.adding = False
    event._state.db = connection.alias
    return count + 1


# The lane's head moves only from the hash its owner expects, and the event is inserted only if
# it moved: one statement, so one round trip and its own transaction.
_APPEND_IN_LANE = (
    f'WITH moved AS ({_MOVE_HEAD} AND "last_hash" = %s RETURNING 1) '  # noqa: S608
    f'INSERT INTO "{_EVENT_TABLE}" ({_EVENT_COLUMNS}) '
    f'SELECT {", ".join(["%s"] * len(_EVENT_FIELDS))} FROM moved RETURNING "id"'
)


def _appended_in_lane(event: AuditEvent, chain: int, key: SigningKey) -> bool:
    """Append ``event`` to this connection's lane of ``chain`` (audit.lanes) on PostgreSQL: in
    one statement when the lane's head is the one this connection left, else (the lane's first
    event here, or a head moved by someone else) the locking way.

    Outside a transaction the statement is its own. Inside the caller's, the event commits or
    rolls back with the action, and the lane's head stays locked until then, which holds up
    nobody: no other connection appends to the lane. After a rollback the head is not the one
    this connection left, so its next event is appended the locking way, onto the real head.

    Returns False, having written nothing, on SQLite and when no lane is free."""
    if connection.vendor != "postgresql":
        return False
    lane = claimed_lane(chain)
    if lane is None:
        return False
    event.key_id = key.id
    expected, lane.last_hash = lane.last_hash, None  # known again only once this append holds
    if expected is not None:
        _chain_onto(event, lane.chain, expected, key)
        seal = seal_head(lane.chain, lane.count + 1, event.hash, key)
        values = [
            field.get_db_prep_save(getattr(event, field.attname), connection)
            for field in _EVENT_FIELDS
        ]
        with connection.cursor() as cursor:
            cursor.execute(
                _APPEND_IN_LANE, [event.hash, lane.count + 1, seal, lane.chain, expected, *values]
            )
            row = cursor.fetchone()
        if row is not None:
            event.pk = row[0]
            event._state.adding = False
            event._state.db = connection.alias
            lane.last_hash, lane.count = event.hash, lane.count + 1
            return True
    count = _appended_in_two_round_trips(event, lane.chain, key)
    if count is None:
        count = _appended_with_orm([event], lane.chain, key)
    lane.last_hash, lane.count = event.hash, count
    return True


# The most events one INSERT statement carries (each has a parameter per column).
_EVENTS_PER_INSERT = 500
_EVENT_ROW = f"({', '.join(['%s'] * len(_EVENT_FIELDS))})"


def _appended_together(events: list[AuditEvent], chain: int, key: SigningKey) -> bool:
    """Append ``events`` to ``chain`` on PostgreSQL, inside the caller's transaction: lock the
    head, chain the events onto it one after the other, insert them (one statement for up to
    ``_EVENTS_PER_INSERT``), move the head once. PostgreSQL returns the new ids in the order
    the rows were given, which is the chain's order.

    Returns False, having written nothing, on SQLite."""
    if connection.vendor != "postgresql":
        return False
    operations = cast("PostgresOperations", connection.ops)
    last_hash, count = _locked_or_new_head(chain)
    with connection.cursor() as cursor:
        rows = []
        for event in events:
            event.key_id = key.id
            _chain_onto(event, chain, last_hash, key)
            last_hash, count = event.hash, count + 1
            rows.append(
                [
                    field.get_db_prep_save(getattr(event, field.attname), connection)
                    for field in _EVENT_FIELDS
                ]
            )
        for start in range(0, len(rows), _EVENTS_PER_INSERT):
            batch = rows[start : start + _EVENTS_PER_INSERT]
            insert = (
                f'INSERT INTO "{_EVENT_TABLE}" ({_EVENT_COLUMNS}) '  # noqa: S608
                f'VALUES {", ".join([_EVENT_ROW] * len(batch))} RETURNING "id"'
            )
            values = [value for row in batch for value in row]
            cursor.execute(operations.compose_sql(insert, values))
            inserted = events[start : start + _EVENTS_PER_INSERT]
            for event, (pk,) in zip(inserted, cursor.fetchall(), strict=True):
                event.pk = pk
                event._state.adding = False
                event._state.db = connection.alias
        seal = seal_head(chain, count, last_hash, key)
        cursor.execute(_MOVE_HEAD, [last_hash, count, seal, chain])
    return True


def _locked_or_new_head(chain: int) -> tuple[str, int]:
    """:func:`_locked_head`, the head made first for a chain's first event."""
    head = _locked_head(chain)
    if head is None:
        ChainHead.objects.get_or_create(
            chain=chain,
            defaults={"last_hash": GENESIS_HASH, "seal": seal_head(chain, 0, GENESIS_HASH)},
        )
        head = _locked_head(chain)
        if head is None:
            raise RuntimeError(f"The head of audit chain {chain} was created but is missing.")
    return head


def _locked_head(chain: int) -> tuple[str, int] | None:
    """The chain head's hash and count, locked until the transaction ends (SQLite locks the
    whole database for a writing transaction instead and knows no FOR UPDATE)."""
    with connection.cursor() as cursor:
        cursor.execute(_LOCK if connection.features.has_select_for_update else _READ_HEAD, [chain])
        row = cursor.fetchone()
    return (row[0], int(row[1])) if row else None


def _move_head(chain: int, last_hash: str, count: int, seal: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_MOVE_HEAD, [last_hash, count, seal, chain])
