"""Tampering with the trail the way an intruder with database access would."""

import importlib

from django.db import connection

from audit.models import AuditEvent

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
