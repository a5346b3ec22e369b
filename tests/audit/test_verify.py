"""``manage.py verify_audit``: an intact trail is attested; every kind of tampering is named, with
the event it hit, and fails the command with exit status 1."""

import json
from itertools import pairwise

import pytest
from django.db import connection

from audit import selectors
from audit.models import NO_ORGANIZATION_CHAIN, Action, AuditEvent, ChainHead
from audit.selectors import (
    CONTENT_CHANGED,
    EVENT_MISSING,
    HEAD_ALTERED,
    HEAD_MISMATCH,
    LINK_BROKEN,
    verify_chain,
)
from audit.services import GENESIS_HASH, event_digest, hashed_fields, record
from tests.audit.helpers import drop_triggers, raw_execute, run_verify

pytestmark = pytest.mark.django_db


def kinds(result) -> list[tuple[str, int | None]]:
    return [(b.kind, b.event_id) for b in result.breaks]


# --- Intact ----------------------------------------------------------------------------------


def test_intact_trail_verifies_and_the_check_is_recorded(trail):
    status, out, err = run_verify()

    assert status == 0
    assert out.strip() == f"OK: {len(trail)} events verified"
    assert err == ""
    attestation = AuditEvent.objects.latest("id")
    assert attestation.action == Action.AUDIT_VERIFIED
    assert attestation.event_code == "110101"
    assert attestation.details == {"count": len(trail)}
    assert "verify_audit" in attestation.actor_label
    # The attestation is itself a link of the chain.
    status, out, _ = run_verify()
    assert (status, out.strip()) == (0, f"OK: {len(trail) + 1} events verified")


def test_empty_trail_verifies():
    status, out, _ = run_verify()
    assert (status, out.strip()) == (0, "OK: 0 events verified")


def test_each_organization_has_a_chain_from_genesis_linking_its_events(trail, org, other_org):
    """St. Elsewhere's events form one chain, Riverside's another, and the failed login of
    nobody in particular a third; each chain's head counts its events."""
    st_elsewhere = [trail[i] for i in (0, 1, 2, 5, 6)]
    assert st_elsewhere[0].prev_hash == GENESIS_HASH
    for previous, event in pairwise(st_elsewhere):
        assert event.prev_hash == previous.hash
    assert trail[3].prev_hash == GENESIS_HASH  # no organization
    assert trail[4].prev_hash == GENESIS_HASH  # Riverside
    heads = dict(ChainHead.objects.values_list("chain", "count"))
    assert heads == {org.pk: 5, other_org.pk: 1, NO_ORGANIZATION_CHAIN: 1}


def test_small_chunks_verify_the_same_as_one(trail):
    """The walk streams; chunk boundaries must not matter."""
    assert verify_chain(chunk_size=2).count == len(trail)
    assert verify_chain(chunk_size=2).ok


# --- Tampered --------------------------------------------------------------------------------


def test_changed_details_are_detected_at_that_event(trail):
    drop_triggers()
    forged = trail[2]
    details = json.dumps({"files": 0})
    if connection.vendor == "postgresql":
        sql = "UPDATE audit_auditevent SET details = %s::jsonb WHERE id = %s"
    else:
        sql = "UPDATE audit_auditevent SET details = %s WHERE id = %s"
    raw_execute(sql, [details, forged.pk])

    result = verify_chain()
    assert kinds(result) == [(CONTENT_CHANGED, forged.pk)]

    status, out, err = run_verify()
    assert status == 1
    assert out == ""
    assert f"event #{forged.pk}: content changed" in err
    # A broken chain gains no "verified" link.
    assert not AuditEvent.objects.filter(action=Action.AUDIT_VERIFIED).exists()


def test_rewritten_event_with_recomputed_hash_breaks_the_next_link(trail):
    """An intruder who also recomputes the forged event's hash (without the audit key, so with
    the plain SHA-256 anyone can compute) still cannot fix the hash the next event of its chain
    recorded."""
    drop_triggers()
    forged = AuditEvent.objects.get(pk=trail[2].pk)
    forged.details = {"files": 0}
    new_hash = event_digest(hashed_fields(forged), forged.prev_hash)
    AuditEvent._base_manager.filter(pk=forged.pk).update(details=forged.details, hash=new_hash)

    result = verify_chain()
    assert kinds(result) == [(CONTENT_CHANGED, trail[2].pk), (LINK_BROKEN, trail[5].pk)]
    assert f"event #{trail[2].pk} was replaced or rewritten" in result.breaks[1].message


def test_event_deleted_in_the_middle_is_reported_missing(trail):
    drop_triggers()
    raw_execute("DELETE FROM audit_auditevent WHERE id = %s", [trail[2].pk])

    result = verify_chain()
    # The next event of St. Elsewhere's chain misses its predecessor.
    assert kinds(result) == [(EVENT_MISSING, trail[5].pk), (HEAD_MISMATCH, None)]
    assert "event missing" in str(result.breaks[0])

    status, _, err = run_verify()
    assert status == 1
    assert f"event #{trail[5].pk}: event missing" in err
    assert "head mismatch" in err


def test_first_event_deleted_is_reported_missing(trail):
    drop_triggers()
    raw_execute("DELETE FROM audit_auditevent WHERE id = %s", [trail[0].pk])

    assert kinds(verify_chain()) == [(EVENT_MISSING, trail[1].pk), (HEAD_MISMATCH, None)]


def test_newest_event_deleted_is_a_head_mismatch(trail):
    """Cutting off the end leaves a perfect chain; only the head still knows it was longer."""
    drop_triggers()
    raw_execute("DELETE FROM audit_auditevent WHERE id = %s", [trail[-1].pk])

    result = verify_chain()
    assert kinds(result) == [(HEAD_MISMATCH, None)]
    assert f"chain of organization #{trail[-1].organization_id} counts 5 events" in (
        result.breaks[0].message
    )
    assert "holds 4 events" in result.breaks[0].message
    status, _, err = run_verify()
    assert status == 1
    assert "head mismatch" in err


def test_reordered_events_break_their_links(trail):
    """Swapping two events' places (their ids) in a chain keeps every hash valid but not the
    order."""
    drop_triggers()
    second, third = trail[1].pk, trail[2].pk
    raw_execute("UPDATE audit_auditevent SET id = %s WHERE id = %s", [-1, second])
    raw_execute("UPDATE audit_auditevent SET id = %s WHERE id = %s", [second, third])
    raw_execute("UPDATE audit_auditevent SET id = %s WHERE id = %s", [third, -1])

    result = verify_chain()
    assert kinds(result) == [
        (LINK_BROKEN, second),
        (LINK_BROKEN, third),
        (LINK_BROKEN, trail[5].pk),
    ]
    assert f"chained to event #{third}" in result.breaks[0].message
    assert f"follows event #{trail[0].pk}" in result.breaks[0].message
    status, _, err = run_verify()
    assert status == 1
    assert f"event #{second}: link broken" in err


def test_altered_chain_head_is_reported(trail, org):
    ChainHead.objects.filter(chain=org.pk).update(count=3)
    assert kinds(verify_chain()) == [(HEAD_ALTERED, None), (HEAD_MISMATCH, None)]


def test_missing_chain_head_is_reported(trail, org):
    ChainHead.objects.filter(chain=org.pk).delete()
    result = verify_chain()
    assert kinds(result) == [(HEAD_MISMATCH, None)]
    assert f"chain head of the chain of organization #{org.pk} is missing" in (
        result.breaks[0].message
    )


def test_a_rewritten_table_reports_the_first_breaks_and_counts_the_rest(trail, monkeypatch):
    monkeypatch.setattr(selectors, "MAX_REPORTED_BREAKS", 2)
    drop_triggers()
    AuditEvent._base_manager.update(actor_label="mallory")

    result = verify_chain()
    assert len(result.breaks) == 2
    assert result.break_count == len(trail)
    assert result.unreported == len(trail) - 2
    status, _, err = run_verify()
    assert status == 1
    assert f"… and {len(trail) - 2} more breaks not listed." in err


# --- Appends during the walk ----------------------------------------------------------------


def test_events_appended_while_verifying_are_not_mistaken_for_tampering(trail, org, monkeypatch):
    """On a live portal events keep arriving while millions of rows are walked: the head read
    before the walk must be found where it counted, and the newer events must chain on."""
    real_heads = selectors._heads
    calls = []

    def heads_then_someone_logs_in():
        heads = real_heads()
        if not calls:
            record(action=Action.LOGIN, actor_label="bob", organization_id=org.pk)
            # A chain that did not exist when the walk began.
            record(action=Action.LOGIN, actor_label="erin", organization_id=org.pk + 1000)
        calls.append(heads)
        return heads

    monkeypatch.setattr(selectors, "_heads", heads_then_someone_logs_in)
    result = verify_chain()

    assert calls[0] != calls[1]
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == len(trail) + 2


def test_a_head_that_moved_during_the_walk_must_still_match_what_it_counted(
    trail, org, monkeypatch
):
    """Appends during the walk are no cover for a deleted event."""
    drop_triggers()
    raw_execute("DELETE FROM audit_auditevent WHERE id = %s", [trail[-1].pk])
    real_heads = selectors._heads
    calls = []

    def heads_then_someone_logs_in():
        heads = real_heads()
        if not calls:
            record(action=Action.LOGIN, actor_label="bob", organization_id=org.pk)
        calls.append(heads)
        return heads

    monkeypatch.setattr(selectors, "_heads", heads_then_someone_logs_in)
    result = verify_chain()
    assert (HEAD_MISMATCH, None) in kinds(result)
