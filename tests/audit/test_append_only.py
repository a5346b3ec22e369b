"""The trail can only grow: neither the ORM nor raw SQL may change or remove an event, while the
chain head keeps moving forward."""

import pytest
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction

from audit.models import Action, AuditEvent, ChainHead
from audit.selectors import verify_chain
from audit.services import GENESIS_HASH, record
from tests.audit.helpers import raw_execute

pytestmark = pytest.mark.django_db


def test_database_refuses_a_raw_update_of_an_event(trail):
    event = trail[1]
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw_execute(
            "UPDATE audit_auditevent SET actor_label = %s WHERE id = %s", ["mallory", event.pk]
        )
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "alice"


def test_database_refuses_a_raw_delete_of_an_event(trail):
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw_execute("DELETE FROM audit_auditevent WHERE id = %s", [trail[2].pk])
    assert AuditEvent.objects.count() == len(trail)


def test_database_refuses_emptying_the_table_with_delete(trail):
    with pytest.raises(DatabaseError), transaction.atomic():
        raw_execute("DELETE FROM audit_auditevent")
    assert AuditEvent.objects.count() == len(trail)


def test_orm_refuses_bulk_update_and_delete(trail):
    with pytest.raises(PermissionError):
        AuditEvent.objects.update(actor_label="nobody")
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(action=Action.LOGIN).update(outcome="8")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=trail[0].pk).delete()
    assert AuditEvent.objects.filter(actor_label="nobody").count() == 0
    assert AuditEvent.objects.count() == len(trail)


def test_orm_refuses_saving_or_deleting_one_event(trail):
    event = AuditEvent.objects.get(pk=trail[0].pk)
    event.actor_label = "mallory"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "alice"


def test_chain_head_stays_writable(trail, org):
    head = ChainHead.objects.get(chain=org.pk)
    assert head.count == 5
    assert head.last_hash == trail[-1].hash
    latest = record(action=Action.LOGOUT, actor_label="bob", organization_id=org.pk)
    head.refresh_from_db()
    assert (head.count, head.last_hash) == (6, latest.hash)


def test_deleting_a_user_keeps_their_events_and_the_chain(trail, alice):
    """Deleting an account must neither be blocked by the trail nor rewrite it: the events keep
    the id and the name they were recorded with."""
    alice_events = AuditEvent.objects.filter(actor_id=alice.pk).count()
    user_id = alice.pk
    alice.delete()
    assert AuditEvent.objects.filter(actor_id=user_id, actor_label="alice").count() == alice_events
    assert verify_chain().ok


def test_models_and_migrations_agree():
    """The append-only QuerySet is Python only: it needs no migration, and none is missing."""
    call_command("makemigrations", "audit", "--check", "--dry-run", "--skip-checks", verbosity=0)


def installed_triggers() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [AuditEvent._meta.db_table],
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                [AuditEvent._meta.db_table],
            )
        return {row[0] for row in cursor.fetchall()}


def test_triggers_are_installed_on_this_database():
    assert installed_triggers() == {"audit_event_no_update", "audit_event_no_delete"}


@pytest.mark.django_db(transaction=True)
def test_flush_empties_the_trail_and_keeps_it_protected():
    """``manage.py flush`` (and every transactional test's clean-up) must work on both
    databases, and leave the triggers in place for what comes next."""
    record(action=Action.LOGIN, actor_label="alice")

    call_command("flush", interactive=False, verbosity=0)

    assert not AuditEvent.objects.exists()
    assert not ChainHead.objects.exists()
    assert installed_triggers() == {"audit_event_no_update", "audit_event_no_delete"}
    event = record(action=Action.LOGIN, actor_label="alice")
    assert event.prev_hash == GENESIS_HASH
    with pytest.raises(IntegrityError), transaction.atomic():
        raw_execute("DELETE FROM audit_auditevent")
    assert verify_chain().ok
