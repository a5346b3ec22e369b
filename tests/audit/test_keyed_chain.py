"""Issue 10, finding 3: the audit chain was unkeyed. Someone with database rights rewrote event 10,
recomputed every later hash and the chain head, and ``verify_audit`` answered OK.

Now each event's hash is an HMAC under ``AUDIT_KEY`` (never in the database), each chain head is
sealed with it, and signed checkpoints published outside the database catch whoever holds the key
too. The intruders below do what the review did: drop the append-only triggers, rewrite an event
with raw SQL, recompute the chain by following its links, and move the chain head.
"""

import importlib
import json
import logging
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.utils import timezone

from audit import checkpoints
from audit.codes import codes_for
from audit.models import (
    LEGACY_CHAIN,
    NO_ORGANIZATION_CHAIN,
    Action,
    AuditEvent,
    ChainHead,
    Outcome,
)
from audit.selectors import (
    CHECKPOINT_MISMATCH,
    CONTENT_CHANGED,
    HEAD_ALTERED,
    KEY_UNKNOWN,
    UNKEYED_AFTER_KEYED,
    verify_chain,
)
from audit.services import GENESIS_HASH, event_digest, event_mac, hashed_fields, record
from audit.signing import SigningKey, current_key, seal_head
from audit.tasks import publish_checkpoints
from tests.audit.helpers import (
    drop_triggers,
    raw_execute,
    recompute_chain_from,
    rewrite_details,
    run_verify,
)
from tests.factories import make_study

pytestmark = pytest.mark.django_db

keyed_chains = importlib.import_module("audit.migrations.0009_keyed_chains")

# The key an installation that forgot to set AUDIT_KEY would run with in DEBUG mode: the first
# thing an intruder who read the source would try.
DEVELOPMENT_KEY = "insecure-development-audit-key-only-for-debug-mode-" + "x" * 20


@pytest.fixture
def month(org, other_org, alice, carol, dana):
    """A month at St. Elsewhere and Riverside, in id order. Event 10 (``month[9]``) is alice
    downloading a study: what an intruder would want to make disappear."""
    study = make_study(org)
    return [
        record(action=Action.LOGIN, actor=alice, organization_id=org.pk),
        record(action=Action.STUDY_VIEWED, actor=alice, study=study),
        record(action=Action.LOGIN, actor=carol, organization_id=other_org.pk),
        record(
            action=Action.LOGIN_FAILED,
            actor_label="unknown user",
            outcome=Outcome.MINOR_FAILURE,
            details={"username": "mallory"},
        ),
        record(action=Action.REPORT_CHANGED, actor=dana, study=study, details={"length": 812}),
        record(action=Action.LOGOUT, actor=carol, organization_id=other_org.pk),
        record(action=Action.STUDY_VIEWED, actor=alice, study=study),
        record(action=Action.LOGIN, actor=dana, organization_id=org.pk),
        record(action=Action.LOGIN, actor=carol, organization_id=other_org.pk),
        record(action=Action.STUDY_DOWNLOADED, actor=alice, study=study, details={"files": 212}),
        record(action=Action.LOGOUT, actor=alice, organization_id=org.pk),
        record(action=Action.LOGOUT, actor=dana, organization_id=org.pk),
    ]


@pytest.fixture
def checkpoint_file(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_FILE = tmp_path / "audit-checkpoints.jsonl"
    return settings.AUDIT_CHECKPOINT_FILE


def kinds(result) -> set[str]:
    return {b.kind for b in result.breaks}


def unkeyed(event, prev_hash):
    """The plain SHA-256 chain anyone can compute from the published source."""
    return event_digest(hashed_fields(event), prev_hash)


# --- Without the key ---------------------------------------------------------------------------


def test_audit_chain_recompute_attack_is_detected(month):
    """The review's attack, step by step: event 10 rewritten with raw SQL, every later hash of
    its chain and the chain head recomputed without the key. verify_audit must fail, naming the
    rewritten event."""
    downloaded = month[9]
    drop_triggers()
    rewrite_details(downloaded.pk, {"files": 0})

    rewritten = recompute_chain_from(downloaded.pk, unkeyed)

    # The later events of St. Elsewhere's chain.
    assert rewritten == [month[9].pk, month[10].pk, month[11].pk]
    status, out, err = run_verify()
    assert status == 1, out
    assert out == ""
    for event_id in rewritten:
        assert f"event #{event_id}: content changed" in err
    assert "head altered" in err
    assert not AuditEvent.objects.filter(action=Action.AUDIT_VERIFIED).exists()


@pytest.mark.parametrize("guess", ["development key", "SECRET_KEY", "hunter2"])
def test_audit_chain_recompute_attack_without_the_key_cannot_forge(month, guess, settings):
    """A stolen database and the source: the intruder knows the scheme, and the key id stored
    in every row, but not the key. Whatever key they try (the development default, the
    SECRET_KEY they may also have stolen, a guess), nothing they recompute verifies."""
    guess = {"development key": DEVELOPMENT_KEY, "SECRET_KEY": settings.SECRET_KEY}.get(
        guess, guess
    )
    key_id = current_key().id
    forged_key = SigningKey(id=key_id, secret=guess.encode())
    drop_triggers()
    rewrite_details(month[9].pk, {"files": 0})

    rewritten = recompute_chain_from(
        month[9].pk,
        lambda event, prev_hash: event_mac(hashed_fields(event), prev_hash, forged_key),
        seal=lambda chain, count, last_hash: seal_head(chain, count, last_hash, forged_key),
    )

    result = verify_chain()
    assert [(b.kind, b.event_id) for b in result.breaks] == [
        *[(CONTENT_CHANGED, event_id) for event_id in rewritten],
        (HEAD_ALTERED, None),
    ]
    assert run_verify()[0] == 1


def test_audit_chain_recompute_attack_downgrading_to_the_unkeyed_scheme_is_detected(month):
    """An intruder rewrites the whole trail as the unkeyed chain of earlier versions (no key
    id, plain SHA-256, one chain) and replaces the heads with one unkeyed head. Its seal takes
    the key."""
    drop_triggers()
    prev_hash = GENESIS_HASH
    for event in AuditEvent.objects.order_by("id"):
        event.key_id = None
        new_hash = unkeyed(event, prev_hash)
        raw_execute(
            "UPDATE audit_auditevent SET key_id = NULL, prev_hash = %s, hash = %s WHERE id = %s",
            [prev_hash, new_hash, event.pk],
        )
        prev_hash = new_hash
    ChainHead.objects.all().delete()
    ChainHead.objects.create(chain=LEGACY_CHAIN, last_hash=prev_hash, count=len(month))

    result = verify_chain()
    assert kinds(result) == {HEAD_ALTERED}
    assert "unkeyed chain of earlier versions" in result.breaks[0].message


def test_audit_chain_truncation_without_the_key_is_detected(month, org):
    """Deleting the newest events and moving the head back to the event before them leaves a
    perfect chain; the head's seal, which takes the key, does not follow."""
    drop_triggers()
    raw_execute("DELETE FROM audit_auditevent WHERE id IN (%s, %s)", [month[10].pk, month[11].pk])
    ChainHead.objects.filter(chain=org.pk).update(count=6, last_hash=month[9].hash)

    result = verify_chain()
    assert kinds(result) == {HEAD_ALTERED}


# --- With the key, without the checkpoints ------------------------------------------------------


def test_audit_chain_recompute_attack_with_the_key_is_detected_by_checkpoints(
    month, org, checkpoint_file
):
    """An intruder who also stole AUDIT_KEY can recompute a chain the database alone cannot
    tell from the original. The checkpoints published before the rewrite can."""
    checkpoints.write_checkpoints()
    record(action=Action.LOGIN, actor_label="alice", organization_id=org.pk)
    checkpoints.write_checkpoints()
    key = current_key()
    drop_triggers()
    rewrite_details(month[9].pk, {"files": 0})

    recompute_chain_from(
        month[9].pk,
        lambda event, prev_hash: event_mac(hashed_fields(event), prev_hash, key),
        seal=lambda chain, count, last_hash: seal_head(chain, count, last_hash, key),
    )

    # What checkpoints are for: the database alone now verifies.
    assert verify_chain().ok
    published, _invalid = checkpoints.read(checkpoint_file)
    assert kinds(verify_chain(checkpoints=published)) == {CHECKPOINT_MISMATCH}
    status, out, err = run_verify("--checkpoints")
    assert status == 1, out
    mismatches = [line for line in err.splitlines() if "checkpoint mismatch" in line]
    # Both of St. Elsewhere's checkpoints (counts 8 and 9) were taken after event 10.
    assert len(mismatches) == 2
    assert all(f"chain of organization #{org.pk}" in line for line in mismatches)
    assert "the chain was rewritten up to here" in mismatches[0]


def test_audit_chain_truncation_with_the_key_is_detected_by_checkpoints(
    month, org, other_org, checkpoint_file
):
    """With the key, an intruder deletes St. Elsewhere's newest events and re-seals its head,
    and deletes Riverside's whole chain with its head: only the checkpoints still know."""
    checkpoints.write_checkpoints()
    key = current_key()
    drop_triggers()
    raw_execute("DELETE FROM audit_auditevent WHERE id IN (%s, %s)", [month[10].pk, month[11].pk])
    ChainHead.objects.filter(chain=org.pk).update(
        count=6, last_hash=month[9].hash, seal=seal_head(org.pk, 6, month[9].hash, key)
    )
    raw_execute("DELETE FROM audit_auditevent WHERE organization_id = %s", [other_org.pk])
    ChainHead.objects.filter(chain=other_org.pk).delete()

    assert verify_chain().ok
    status, _, err = run_verify("--checkpoints")
    assert status == 1
    assert f"counted 8 events in the chain of organization #{org.pk}, which now holds 6" in err
    assert f"counted 3 events in the chain of organization #{other_org.pk}, which now holds 0" in (
        err
    )


# --- Checkpoints --------------------------------------------------------------------------------


def test_checkpoints_are_signed_lines_appended_to_a_file_and_logged(
    month, org, other_org, settings, checkpoint_file, caplog
):
    published = logging.getLogger("audit.checkpoint")
    published.addHandler(caplog.handler)
    try:
        written = checkpoints.write_checkpoints()
    finally:
        published.removeHandler(caplog.handler)

    lines = checkpoint_file.read_text().splitlines()
    assert [json.loads(line) for line in lines] == written
    assert [(c["chain"], c["count"]) for c in written] == [
        (NO_ORGANIZATION_CHAIN, 1),
        (org.pk, 8),
        (other_org.pk, 3),
    ]
    assert written[1]["last_hash"] == month[11].hash
    assert set(written[1]) == {"chain", "count", "last_hash", "at", "key_id", "mac"}
    assert written[1]["key_id"] == current_key().id
    assert settings.AUDIT_KEY not in checkpoint_file.read_text()
    assert [entry.getMessage() for entry in caplog.records] == lines
    assert checkpoint_file.stat().st_mode & 0o007 == 0  # not for everyone's eyes

    # Nothing moved: nothing to publish. One organization audited: its chain alone.
    assert checkpoints.write_checkpoints() == []
    record(action=Action.LOGOUT, actor_label="carol", organization_id=other_org.pk)
    assert [(c["chain"], c["count"]) for c in checkpoints.write_checkpoints()] == [
        (other_org.pk, 4)
    ]
    assert checkpoint_file.read_text().splitlines()[:3] == lines  # appended, never rewritten
    published, invalid = checkpoints.read(checkpoint_file)
    assert (len(published), invalid) == (4, [])


def test_verify_audit_with_checkpoints_says_how_many_matched(month, checkpoint_file):
    checkpoints.write_checkpoints()

    status, out, err = run_verify("--checkpoints", str(checkpoint_file))

    assert (status, err) == (0, "")
    assert out.strip() == "OK: 12 events verified, 3 checkpoints matched"
    attestation = AuditEvent.objects.latest("id")
    assert attestation.details == {"count": 12, "checkpoints": 3}


def test_forged_or_unreadable_checkpoints_fail_verification(month, checkpoint_file):
    checkpoints.write_checkpoints()
    first, *rest = checkpoint_file.read_text().splitlines()
    altered = json.loads(first) | {"count": 0}
    checkpoint_file.write_text("\n".join([json.dumps(altered), *rest, "not json"]) + "\n")

    status, _, err = run_verify("--checkpoints")

    assert status == 1
    assert "checkpoint invalid (line 1): its signature does not match" in err
    assert "checkpoint invalid (line 4): unreadable" in err


def test_a_missing_checkpoint_file_is_an_error(month, checkpoint_file):
    status, _, err = run_verify("--checkpoints")
    assert status == 2
    assert "cannot read the checkpoints" in err


def test_celery_beat_publishes_checkpoints_periodically(month, org, settings, checkpoint_file):
    entry = settings.CELERY_BEAT_SCHEDULE["audit-write-checkpoints"]
    assert entry == {"task": "audit.write_checkpoints", "schedule": 600.0}
    assert publish_checkpoints.name == "audit.write_checkpoints"

    assert publish_checkpoints.apply().get() == 3
    assert len(checkpoint_file.read_text().splitlines()) == 3

    # Without Celery beat, cron runs the command.
    record(action=Action.LOGIN, actor_label="alice", organization_id=org.pk)
    out = StringIO()
    call_command("audit_checkpoint", stdout=out)
    assert out.getvalue().strip() == "1 checkpoint written"
    assert len(checkpoint_file.read_text().splitlines()) == 4


# --- Key rotation -------------------------------------------------------------------------------


def test_audit_chain_key_rotation_new_events_use_the_new_key_old_ones_verify_with_a_fallback(
    month, org, settings, checkpoint_file
):
    old_key = current_key()
    checkpoints.write_checkpoints()
    settings.AUDIT_KEY_FALLBACKS = [settings.AUDIT_KEY]
    settings.AUDIT_KEY = "a-new-audit-key-after-rotation-" + "r" * 40

    after = record(action=Action.LOGIN, actor_label="alice", organization_id=org.pk)

    assert after.key_id == current_key().id != old_key.id
    assert after.prev_hash == month[11].hash  # the chain goes on across the rotation
    assert verify_chain(checkpoints=checkpoints.read(checkpoint_file)[0]).ok

    # Dropping the old key too early leaves what it signed unverifiable: said, not hidden.
    settings.AUDIT_KEY_FALLBACKS = []
    result = verify_chain()
    assert kinds(result) == {KEY_UNKNOWN}
    # The 12 events of the month, and the two heads not re-sealed since.
    assert result.break_count == 12 + 2
    assert f"signed with audit key {old_key.id}" in str(result.breaks[0])
    assert checkpoints.read(checkpoint_file)[1][0][1].startswith(f"signed with key {old_key.id}")


# --- Upgrading from the unkeyed chain -----------------------------------------------------------


def legacy_trail(org, count: int) -> list[AuditEvent]:
    """Events as the portal recorded them before the chain was keyed: one chain for everyone,
    plain SHA-256, no key id, and the one chain head (row 1)."""
    events, prev_hash = [], GENESIS_HASH
    for number in range(count):
        event_code, event_type_code = codes_for(Action.LOGIN)
        event = AuditEvent(
            at=timezone.now(),
            actor_label=f"user-{number}",
            action=Action.LOGIN,
            event_code=event_code,
            event_type_code=event_type_code,
            organization_id=org.pk if number % 2 else None,
            details={"n": number},
            prev_hash=prev_hash,
        )
        event.hash = unkeyed(event, prev_hash)
        event.save(force_insert=True)
        events.append(event)
        prev_hash = event.hash
    ChainHead.objects.create(chain=1, last_hash=prev_hash, count=count)
    return events


def test_unkeyed_events_of_earlier_versions_verify_up_to_the_first_keyed_event(org):
    legacy = legacy_trail(org, 3)

    keyed_chains.seal_legacy_chain(apps, None)
    keyed = [
        record(action=Action.LOGIN, actor_label="alice", organization_id=org.pk),
        record(action=Action.LOGOUT, actor_label="alice", organization_id=org.pk),
    ]

    head = ChainHead.objects.get(chain=LEGACY_CHAIN)
    assert (head.count, head.last_hash) == (3, legacy[-1].hash)
    # Row 1 was the old head; it must not pass for organization 1's chain.
    assert ChainHead.objects.get(chain=org.pk).count == 2
    assert keyed[0].prev_hash == GENESIS_HASH
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == 5


def test_unkeyed_prefix_is_sealed_at_the_upgrade(org):
    """Once sealed, the unkeyed chain cannot be recomputed either, nor can a keyed event pass
    for an unkeyed one."""
    legacy = legacy_trail(org, 3)
    keyed_chains.seal_legacy_chain(apps, None)
    keyed = [
        record(action=Action.LOGIN, actor_label="alice", organization_id=org.pk),
        record(action=Action.LOGOUT, actor_label="alice", organization_id=org.pk),
    ]
    drop_triggers()
    rewrite_details(legacy[1].pk, {"n": 99})
    recompute_chain_from(legacy[1].pk, unkeyed)

    assert kinds(verify_chain()) == {HEAD_ALTERED}

    downgraded = keyed[1]
    raw_execute(
        "UPDATE audit_auditevent SET key_id = NULL, hash = %s WHERE id = %s",
        [unkeyed(downgraded, downgraded.prev_hash), downgraded.pk],
    )
    result = verify_chain()
    assert (UNKEYED_AFTER_KEYED, downgraded.pk) in [(b.kind, b.event_id) for b in result.breaks]


def test_legacy_head_is_moved_back_when_the_migration_is_reversed(org):
    legacy = legacy_trail(org, 2)
    keyed_chains.seal_legacy_chain(apps, None)

    keyed_chains.unseal_legacy_chain(apps, None)

    assert list(ChainHead.objects.values_list("chain", "count", "last_hash")) == [
        (1, 2, legacy[-1].hash)
    ]
    record(action=Action.LOGIN, actor_label="alice", organization_id=org.pk)
    with pytest.raises(RuntimeError, match="Keyed audit events exist"):
        keyed_chains.unseal_legacy_chain(apps, None)
