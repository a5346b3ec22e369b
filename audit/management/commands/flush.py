"""Django's ``manage.py flush``, made to work with the audit trail's append-only triggers.

Flushing empties every table, the trail and its chain head included. On PostgreSQL Django does it
with TRUNCATE, which the row triggers do not see. On SQLite it runs ``DELETE FROM`` on each table,
which the delete trigger refuses, so the command (and with it every transactional test's clean-up,
live-server browser tests included) would fail. Here the SQLite triggers are lifted for the flush
and put back in the same transaction, so the database never stays unprotected, even if the flush
fails. Emptied tables also end every remembered answer (``portal.decisions``): the rows they
rest on are gone, and emptying a table sends no signal.
"""

import importlib
from typing import Any

from django.core.management.commands import flush
from django.db import connections, transaction

from audit.models import AuditEvent
from portal import decisions

# The migration owns the trigger SQL, so that what is put back is exactly what it installed.
_append_only = importlib.import_module("audit.migrations.0002_append_only")


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        self._flush(**options)
        # The rows remembered answers rest on are gone, and emptying a table sends no signal.
        decisions.everything_changed()

    def _flush(self, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "sqlite":
            return super().handle(**options)
        table = AuditEvent._meta.db_table
        with transaction.atomic(using=connection.alias):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                    [table],
                )
                installed = {row[0] for row in cursor.fetchall()}
                lifted = installed & set(_append_only.TRIGGERS.values())
                if lifted:
                    for statement in _append_only.drop_sql(connection.vendor, table):
                        cursor.execute(statement)
            super().handle(**options)
            if lifted:
                with connection.cursor() as cursor:
                    for statement in _append_only.trigger_sql(connection.vendor, table):
                        cursor.execute(statement)
