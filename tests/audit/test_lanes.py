"""Lanes (audit.lanes): on PostgreSQL each database connection appends the events it records to a
lane of the organization's chain that it alone holds, in one statement, outside a transaction
and in an action's own; every lane verifies as a chain of its own."""

import threading
import time

import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit import checkpoints, lanes
from audit.models import (
    Action,
    AuditEvent,
    ChainHead,
    chain_for,
    lane_chain,
    lane_of,
)
from audit.selectors import HEAD_ALTERED, chain_label, verify_chain
from audit.services import _appended_in_two_round_trips, _new_event, record
from audit.signing import current_key, seal_head
from tests.audit.helpers import (
    appends_while_a_transaction_holds,
    drop_triggers,
    raw_execute,
    run_verify,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ORGANIZATION = 7


@pytest.fixture(autouse=True)
def organization_chains(settings):
    """Lanes on, as in production (the audit stories' own fixture turns them off)."""
    settings.AUDIT_LANES = 32


@pytest.fixture(autouse=True)
def new_connection():
    """Each test starts on a connection of its own, holding no lane yet."""
    connection.close()


def search(**arguments) -> AuditEvent:
    return record(
        action=Action.STUDIES_QUERIED,
        actor_label="alice",
        organization_id=ORGANIZATION,
        **arguments,
    )


def share() -> AuditEvent:
    return record(action=Action.SHARE_CREATED, actor_label="alice", organization_id=ORGANIZATION)


def lane_lock(database_url: str, lane: int, *, within: float = 0.0):
    """Another connection (another worker) holding lane ``lane`` of the organization's chain,
    taken at once or, with ``within``, as soon as it is free within that many seconds."""
    holder = psycopg.connect(database_url, autocommit=True)
    key = lanes._LOCK_TAG | lane_chain(chain_for(ORGANIZATION), lane)
    deadline = time.monotonic() + within
    while not holder.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:
        assert time.monotonic() < deadline, f"lane {lane} is still held"
        time.sleep(0.02)
    return holder


def test_a_connection_appends_to_its_lane_in_one_statement(require_postgres):
    first = search()
    chain, lane = lane_of(first.chain)
    assert (chain, lane) == (chain_for(ORGANIZATION), 1)
    with CaptureQueriesContext(connection) as queries:
        events = [search(details={"rows": n}) for n in range(3)]
    assert len(queries.captured_queries) == 3, [q["sql"][:60] for q in queries]
    assert {event.chain for event in events} == {first.chain}
    assert [event.prev_hash for event in events] == [first.hash] + [e.hash for e in events[:2]]
    head = ChainHead.objects.get(chain=first.chain)
    assert (head.count, head.last_hash) == (4, events[-1].hash)
    stored = AuditEvent.objects.get(pk=events[1].pk)
    assert (stored.hash, stored.at, stored.chain, stored.details) == (
        events[1].hash,
        events[1].at,
        first.chain,
        {"rows": 1},
    )
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == 4
    assert chain_label(first.chain) == "lane 1 of the chain of organization #7"


def test_an_actions_event_goes_to_its_lane_in_one_statement_and_commits_with_it(
    require_postgres,
):
    first = search()
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            shared = share()
        assert len(queries.captured_queries) == 1, [q["sql"][:80] for q in queries]
    assert (shared.chain, shared.prev_hash) == (first.chain, first.hash)
    assert AuditEvent.objects.get(pk=shared.pk).hash == shared.hash
    assert ChainHead.objects.get(chain=first.chain).last_hash == shared.hash
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == 2


def test_an_event_rolled_back_with_its_action_leaves_its_lane_whole(require_postgres):
    """The connection expects its lane's head to be the event it wrote; after the rollback it
    is not, so the next event is chained onto the head as it really is."""
    first = search()
    with pytest.raises(RuntimeError), transaction.atomic():
        share()
        raise RuntimeError("the action fails after its event was appended")
    assert list(AuditEvent.objects.values_list("pk", flat=True)) == [first.pk]
    assert ChainHead.objects.get(chain=first.chain).last_hash == first.hash
    following = search()
    assert (following.chain, following.prev_hash) == (first.chain, first.hash)
    with transaction.atomic():
        last = share()
    assert last.prev_hash == following.hash
    assert ChainHead.objects.get(chain=first.chain).count == 3
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == 3


def test_an_action_not_yet_committed_holds_up_no_other_action_of_its_organization(
    require_postgres,
):
    """Without lanes, a transaction that audited holds its organization's head until it
    commits, and the organization's next action waits (test_concurrency); with them, each
    worker's action appends to its own lane."""
    search()

    held, [other] = appends_while_a_transaction_holds(share, share)

    assert isinstance(other, AuditEvent), other
    assert other.chain != held.chain
    assert {lane_of(event.chain)[0] for event in (held, other)} == {chain_for(ORGANIZATION)}
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == 3


def test_a_lane_whose_head_moved_under_it_is_appended_to_the_locking_way(require_postgres):
    """The statement moves the head only from the hash its connection left: if anything else
    appended there (a pooler that handed the session to another client), it writes nothing
    and the event is chained onto the real head."""
    first = search()
    foreign = _new_event(action=Action.LOGIN, actor_label="bob", organization_id=ORGANIZATION)
    assert _appended_in_two_round_trips(foreign, first.chain, current_key()) == 2
    after = search()
    assert (after.chain, after.prev_hash) == (first.chain, foreign.hash)
    assert ChainHead.objects.get(chain=first.chain).count == 3
    following = search()
    assert following.prev_hash == after.hash
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == 4


def test_workers_each_hold_their_own_lane(require_postgres):
    start = threading.Barrier(3)
    chains: dict[int, set[int]] = {}
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            start.wait(timeout=30)
            chains[number] = {search(details={"n": n}).chain for n in range(20)}
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert all(len(held) == 1 for held in chains.values()), chains
    assert len(set.union(*chains.values())) == 3
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == 60


def test_with_every_lane_held_events_go_to_the_organizations_chain(
    require_postgres, settings, database_url
):
    settings.AUDIT_LANES = 2
    holders = [lane_lock(database_url, lane) for lane in (1, 2)]
    try:
        event = search()
    finally:
        for holder in holders:
            holder.close()
    assert event.chain == chain_for(ORGANIZATION)
    assert verify_chain().ok


def test_a_closed_connection_releases_its_lane(require_postgres, database_url):
    held = search().chain
    connection.close()
    # PostgreSQL ends the closed connection's backend, and with it its locks, on its own time:
    # under load that can be a moment after the client's close returned.
    other = lane_lock(database_url, lane_of(held)[1], within=10)
    try:
        # This connection, opened again, claims the next lane.
        assert lane_of(search().chain)[1] == lane_of(held)[1] + 1
    finally:
        other.close()


def test_an_event_moved_to_another_lane_breaks_both(require_postgres, database_url):
    first = search()
    moved = search()
    search()
    assert lane_of(first.chain)[1] == 1
    connection.close()
    holder = lane_lock(database_url, 1)
    try:
        search()  # lane 2
    finally:
        holder.close()
    assert verify_chain().ok
    with transaction.atomic():
        drop_triggers()
        raw_execute(
            "UPDATE audit_auditevent SET chain = %s WHERE id = %s",
            [lane_chain(chain_for(ORGANIZATION), 2), moved.pk],
        )
        result = verify_chain()
        transaction.set_rollback(True)
    assert not result.ok
    assert {b.event_id for b in result.breaks} & {moved.pk}


def test_a_lane_cut_short_is_detected_by_its_seal_and_by_checkpoints(
    require_postgres, settings, tmp_path
):
    """A lane is a chain like any other: its newest events deleted and its head moved back
    break its seal; with the key to re-seal it too, or with the whole lane deleted with its
    head, the checkpoints published before still know."""
    settings.AUDIT_CHECKPOINT_FILE = tmp_path / "audit-checkpoints.jsonl"
    events = [search(details={"n": n}) for n in range(4)]
    lane = events[0].chain
    checkpoints.write_checkpoints()
    published = settings.AUDIT_CHECKPOINT_FILE.read_text().splitlines()
    assert any(f'"chain":{lane},' in line.replace(" ", "") for line in published), published

    with transaction.atomic():
        drop_triggers()
        raw_execute("DELETE FROM audit_auditevent WHERE id = %s", [events[-1].pk])
        ChainHead.objects.filter(chain=lane).update(count=3, last_hash=events[2].hash)
        assert {b.kind for b in verify_chain().breaks} == {HEAD_ALTERED}
        ChainHead.objects.filter(chain=lane).update(
            seal=seal_head(lane, 3, events[2].hash, current_key())
        )
        assert verify_chain().ok
        status, _out, err = run_verify("--checkpoints")
        assert status == 1
        assert f"counted 4 events in {chain_label(lane)}, which now holds 3" in err
        transaction.set_rollback(True)

    with transaction.atomic():
        drop_triggers()
        raw_execute("DELETE FROM audit_auditevent WHERE chain = %s", [lane])
        ChainHead.objects.filter(chain=lane).delete()
        assert verify_chain().ok
        status, _out, err = run_verify("--checkpoints")
        assert status == 1
        assert f"counted 4 events in {chain_label(lane)}, which now holds 0" in err
        transaction.set_rollback(True)


def test_a_batch_of_one_event_takes_its_lane_too(require_postgres):
    """An upload or a STOW-RS request of one study records one event (``record_many``): like
    ``record``, it goes to the connection's lane, in one statement."""
    from audit.services import record_many

    first = search()
    with CaptureQueriesContext(connection) as queries:
        [event] = record_many(
            [
                {
                    "action": Action.STUDIES_QUERIED,
                    "actor_label": "alice",
                    "organization_id": ORGANIZATION,
                }
            ]
        )
    assert len(queries.captured_queries) == 1, [q["sql"][:60] for q in queries]
    assert event.chain == first.chain
    assert run_verify()[0] == 0
