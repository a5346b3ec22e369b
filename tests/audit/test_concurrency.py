"""Many web workers auditing at once must still write unbroken chains: a chain head's row lock
serializes the appends of its chain, so no two events ever claim the same predecessor, while
unrelated organizations, each with its own chain, append in parallel (issue 10, finding 3)."""

import threading

import pytest
from django.db import DataError, OperationalError, connection, transaction
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from psycopg.pq import TransactionStatus

from audit.models import NO_ORGANIZATION_CHAIN, Action, AuditEvent, ChainHead, lane_of
from audit.selectors import verify_chain
from audit.services import record, record_many
from tests.audit.helpers import appends_while_a_transaction_holds

THREADS = 8
EVENTS_PER_THREAD = 25
# Organizations by id: the trail needs no Organization row to chain an organization's events.
ST_ELSEWHERE, RIVERSIDE = 101, 102


def run_in_threads(work, count: int) -> list[BaseException]:
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            start.wait(timeout=30)
            work(number)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    return errors


def start_chain(**arguments) -> None:
    """Make the chain's head with a first event (these stories turn lanes off: the
    organization's chain itself takes every event)."""
    record(**arguments)


def shared_predecessors() -> int:
    return (
        AuditEvent.objects.exclude(prev_hash="0" * 64)
        .values("prev_hash")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_form_one_unbroken_chain(require_postgres):
    def clinician(number: int) -> None:
        for i in range(EVENTS_PER_THREAD):
            # Each event in its own transaction, as each request of a web worker would be.
            with transaction.atomic():
                record(
                    action=Action.FRAMES_RENDERED,
                    actor_label=f"clinician-{number}",
                    details={"frame": i},
                )

    errors = run_in_threads(clinician, THREADS)

    assert not errors, errors
    total = THREADS * EVENTS_PER_THREAD
    assert AuditEvent.objects.count() == total
    assert shared_predecessors() == 0
    head = ChainHead.objects.get(chain=NO_ORGANIZATION_CHAIN)
    assert head.count == total
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == total
    # Every worker's events all made it, interleaved in one chain.
    per_worker = AuditEvent.objects.values("actor_label").annotate(n=Count("id"))
    assert {row["n"] for row in per_worker} == {EVENTS_PER_THREAD}
    assert len(per_worker) == THREADS


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_of_several_organizations_form_one_unbroken_chain_each(
    require_postgres,
):
    organizations = [ST_ELSEWHERE, RIVERSIDE, None]

    def clinician(number: int) -> None:
        for i in range(EVENTS_PER_THREAD):
            with transaction.atomic():
                record(
                    action=Action.FRAMES_RENDERED,
                    actor_label=f"clinician-{number}",
                    organization_id=organizations[(number + i) % len(organizations)],
                    details={"frame": i},
                )

    errors = run_in_threads(clinician, THREADS)

    assert not errors, errors
    total = THREADS * EVENTS_PER_THREAD
    assert shared_predecessors() == 0
    heads = dict(ChainHead.objects.values_list("chain", "count"))
    assert set(heads) == {ST_ELSEWHERE, RIVERSIDE, NO_ORGANIZATION_CHAIN}
    assert sum(heads.values()) == total
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == total


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_audit_chain_unrelated_organizations_append_in_parallel(require_postgres):
    """Issue 10, finding 3: every audited transaction of every organization used to wait on one
    chain-head row lock. A transaction of St. Elsewhere that audited and has not committed yet
    (a share still writing its entries) must not hold up Riverside, while without lanes a second
    transaction of St. Elsewhere still waits its turn (with lanes it does not: test_lanes)."""
    record(action=Action.LOGIN, actor_label="alice", organization_id=ST_ELSEWHERE)
    record(action=Action.LOGIN, actor_label="carol", organization_id=RIVERSIDE)

    def viewed(label: str, organization_id: int):
        return lambda: record(
            action=Action.STUDY_VIEWED, actor_label=label, organization_id=organization_id
        )

    _held, [carol, bob] = appends_while_a_transaction_holds(
        lambda: record(
            action=Action.SHARE_CREATED, actor_label="alice", organization_id=ST_ELSEWHERE
        ),
        viewed("carol", RIVERSIDE),
        viewed("bob", ST_ELSEWHERE),
    )

    assert isinstance(carol, AuditEvent), carol
    assert isinstance(bob, OperationalError), bob
    assert "lock timeout" in str(bob)
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lanes", [0, 32])
def test_concurrent_appends_outside_transactions_form_unbroken_chains(
    require_postgres, settings, lanes
):
    """A search or a retrieve audits in no transaction of its own: on PostgreSQL its event is
    appended to the lane its connection holds (audit.lanes), or with lanes off to the chain
    itself in two round trips (audit.services._appended_in_two_round_trips). Many workers
    doing so at once still chain every event onto the one before it in its chain, in id order,
    and times never go backwards along a chain."""
    settings.AUDIT_LANES = lanes
    record(action=Action.LOGIN, actor_label="alice")  # the chain's head exists from here on
    # A worker that is done closes its connection, which frees its lane for the next one: all
    # hold theirs from their first event on, as web workers do, before any goes on.
    all_appending = threading.Barrier(THREADS)

    def searcher(number: int) -> None:
        for i in range(EVENTS_PER_THREAD):
            assert not connection.in_atomic_block
            record(
                action=Action.STUDIES_QUERIED,
                actor_label=f"searcher-{number}",
                details={"rows": i},
            )
            if i == 0:
                all_appending.wait(timeout=30)

    errors = run_in_threads(searcher, THREADS)

    assert not errors, errors
    total = THREADS * EVENTS_PER_THREAD + 1
    assert shared_predecessors() == 0
    heads = dict(ChainHead.objects.values_list("chain", "count"))
    assert sum(heads.values()) == total
    # Each thread its own connection, and so its own lane.
    assert len(heads) == (1 + THREADS if lanes else 1)
    assert {lane_of(chain)[0] for chain in heads} == {NO_ORGANIZATION_CHAIN}
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == total
    for chain in heads:
        times = list(
            AuditEvent.objects.filter(chain=chain).order_by("id").values_list("at", flat=True)
        )
        assert len(times) == heads[chain]
        assert times == sorted(times)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_append_outside_a_transaction_without_lanes_takes_two_round_trips(
    require_postgres, settings
):
    settings.AUDIT_LANES = 0
    record(action=Action.LOGIN, actor_label="alice")
    with CaptureQueriesContext(connection) as queries:
        event = record(action=Action.STUDIES_QUERIED, actor_label="alice", details={"rows": 3})
    assert len(queries.captured_queries) == 2, [q["sql"][:80] for q in queries]
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.hash, stored.prev_hash, stored.at) == (event.hash, event.prev_hash, event.at)
    assert stored.details == {"rows": 3}
    assert ChainHead.objects.get(chain=NO_ORGANIZATION_CHAIN).last_hash == event.hash


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_append_inside_a_transaction_takes_two_round_trips_and_commits_with_it(
    require_postgres,
):
    start_chain(action=Action.LOGIN, actor_label="alice")
    with pytest.raises(RuntimeError), transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            record(action=Action.SHARE_CREATED, actor_label="alice")
        assert len(queries.captured_queries) == 2, [q["sql"][:80] for q in queries]
        raise RuntimeError("the action fails after its event was appended")
    # The event went with the action it described; the head did not move.
    assert AuditEvent.objects.count() == 1
    assert ChainHead.objects.get(chain=NO_ORGANIZATION_CHAIN).count == 1
    with transaction.atomic():
        event = record(action=Action.SHARE_CREATED, actor_label="alice")
    assert AuditEvent.objects.get(pk=event.pk).hash == event.hash
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lanes", [0, 32])
@pytest.mark.parametrize("earlier", [1, 2])
def test_failed_append_outside_a_transaction_writes_nothing_and_ends_its_transaction(
    require_postgres, settings, lanes, earlier
):
    """With lanes, the first event of a connection's lane is appended the locking way and the
    next in one statement: a failure in either leaves the lane as it was."""
    settings.AUDIT_LANES = lanes
    for _ in range(earlier):
        last = record(action=Action.LOGIN, actor_label="alice")
    with pytest.raises(DataError):
        # Longer than the column: the database refuses the insert after the head was locked.
        record(action=Action.STUDIES_QUERIED, actor_label="alice", target_id="x" * 500)
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE
    head = ChainHead.objects.get(chain=last.chain)
    assert (head.count, head.last_hash) == (earlier, last.hash)
    assert AuditEvent.objects.count() == earlier
    after = record(action=Action.LOGOUT, actor_label="alice")
    assert after.chain == last.chain
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == earlier + 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_hundred_events_appended_together_take_three_round_trips(require_postgres, org):
    start_chain(action=Action.LOGIN, actor_label="alice", organization_id=org.pk)
    batch = [
        {
            "action": Action.INSTANCES_RECEIVED,
            "actor_label": "PACS",
            "organization_id": org.pk,
            "target_type": "study",
            "target_id": f"1.2.3.{n}",
        }
        for n in range(100)
    ]
    with CaptureQueriesContext(connection) as queries:
        events = record_many(batch)
    statements = [q["sql"][:40] for q in queries.captured_queries]
    # Begin and lock the head, insert the hundred, move the head, commit.
    assert len([s for s in statements if s not in ("BEGIN", "COMMIT")]) == 3, statements
    assert [AuditEvent.objects.get(pk=e.pk).target_id for e in events[::25]] == [
        "1.2.3.0",
        "1.2.3.25",
        "1.2.3.50",
        "1.2.3.75",
    ]
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == 101


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_batch_larger_than_one_insert_keeps_the_chain_order(require_postgres, org, monkeypatch):
    from audit import services

    monkeypatch.setattr(services, "_EVENTS_PER_INSERT", 40)
    start_chain(action=Action.LOGIN, actor_label="alice", organization_id=org.pk)
    with CaptureQueriesContext(connection) as queries:
        events = record_many(
            {"action": Action.INSTANCES_RECEIVED, "actor_label": "PACS", "organization_id": org.pk}
            for _ in range(100)
        )
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 3
    stored = list(AuditEvent.objects.filter(organization_id=org.pk).order_by("id"))
    assert [event.hash for event in stored[1:]] == [event.hash for event in events]
    assert [event.prev_hash for event in stored[1:]] == [event.hash for event in stored[:-1]]
    assert verify_chain().ok
