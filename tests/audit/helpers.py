"""Tampering with the trail the way an intruder with database access would."""

import importlib
import json
import threading
from collections.abc import Callable
from io import StringIO

from django.core.management import CommandError, call_command
from django.db import connection, transaction

from audit.models import AuditEvent, ChainHead

# The migration that installs the triggers; its reverse SQL is what the tests use to remove them.
append_only_migration = importlib.import_module("audit.migrations.0002_append_only")


def drop_triggers() -> None:
    """What an intruder with the database owner's rights would do first. Runs inside the test's
    transaction, so the triggers come back when the test ends."""
    table = AuditEvent._meta.db_table
    with connection.cursor() as cursor:
        for statement in append_only_migration.drop_sql(connection.vendor, table):
            cursor.execute(statement)


def raw_execute(sql: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def rewrite_details(event_id: int, details: dict) -> None:
    """An UPDATE sent straight to the database (the triggers dropped first)."""
    sql = "UPDATE audit_auditevent SET details = %s WHERE id = %s"
    if connection.vendor == "postgresql":
        sql = "UPDATE audit_auditevent SET details = %s::jsonb WHERE id = %s"
    raw_execute(sql, [json.dumps(details), event_id])


def recompute_chain_from(event_id: int, digest, seal=None) -> list[int]:
    """The full recompute attack: after rewriting an event, recompute its hash and the hash of
    every later event of its chain, following the links (each event names its predecessor's
    hash), then move the chain head to the new last hash. ``digest(event, prev_hash)`` is the
    intruder's idea of an event's hash; ``seal(chain, count, last_hash)``, if given, re-seals
    the head (which takes the audit key). Returns the ids of the rewritten events."""
    event = AuditEvent.objects.get(pk=event_id)
    prev_hash = event.prev_hash
    rewritten = []
    while event is not None:
        old_hash = event.hash
        new_hash = digest(event, prev_hash)
        successor = AuditEvent.objects.filter(prev_hash=old_hash).first()
        raw_execute(
            "UPDATE audit_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
            [prev_hash, new_hash, event.pk],
        )
        rewritten.append(event.pk)
        prev_hash, event = new_hash, successor
    head = ChainHead.objects.get(last_hash=old_hash)
    changes = {"last_hash": prev_hash}
    if seal is not None:
        changes["seal"] = seal(head.pk, head.count, prev_hash)
    ChainHead.objects.filter(pk=head.pk).update(**changes)
    return rewritten


def run_verify(*args: str) -> tuple[int, str, str]:
    """Runs ``manage.py verify_audit`` as cron would see it: exit status, stdout, stderr."""
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=err)
    except CommandError as exc:
        # manage.py exits with this status.
        err.write(str(exc))
        return exc.returncode, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def appends_while_a_transaction_holds(
    hold: Callable[[], AuditEvent], *appends: Callable[[], AuditEvent]
) -> tuple[AuditEvent, list[AuditEvent | BaseException]]:
    """Run ``hold`` (an append) in a transaction of a worker of its own and keep that
    transaction open while each of ``appends`` runs in turn, each in a transaction of another
    worker that waits at most two seconds for a lock. Returns what ``hold`` appended and, for
    each of ``appends``, what it appended or what it raised (a lock timeout: it had to wait)."""
    holding = threading.Event()
    release = threading.Event()
    held: list[AuditEvent] = []
    outcomes: list[AuditEvent | BaseException] = []

    def hold_open() -> None:
        try:
            with transaction.atomic():
                held.append(hold())
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def run(append: Callable[[], AuditEvent]) -> None:
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    # Waiting longer than this on a lock is an error, not a hang.
                    cursor.execute("SET LOCAL lock_timeout = '2s'")
                outcomes.append(append())
        except BaseException as exc:  # the caller's to judge
            outcomes.append(exc)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_open)
    holder.start()
    try:
        assert holding.wait(timeout=30), "the holding transaction did not start"
        for append in appends:
            thread = threading.Thread(target=run, args=(append,))
            thread.start()
            thread.join(timeout=30)
    finally:
        release.set()
        holder.join(timeout=30)
    return held[0], outcomes
