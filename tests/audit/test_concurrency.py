"""Many web workers auditing at once must still write one chain: the chain head's row lock
serializes appends, so no two events ever claim the same predecessor."""

import threading

import pytest
from django.db import connection, transaction
from django.db.models import Count

from audit.models import Action, AuditEvent, ChainHead
from audit.selectors import verify_chain
from audit.services import record

THREADS = 8
EVENTS_PER_THREAD = 25


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_form_one_unbroken_chain(require_postgres):
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def clinician(number: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(EVENTS_PER_THREAD):
                # Each event in its own transaction, as each request of a web worker would be.
                with transaction.atomic():
                    record(
                        action=Action.FRAMES_RENDERED,
                        actor_label=f"clinician-{number}",
                        details={"frame": i},
                    )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=clinician, args=(n,)) for n in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert not errors, errors
    total = THREADS * EVENTS_PER_THREAD
    assert AuditEvent.objects.count() == total
    shared = AuditEvent.objects.values("prev_hash").annotate(n=Count("id")).filter(n__gt=1).count()
    assert shared == 0
    head = ChainHead.objects.get(pk=1)
    assert head.count == total
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == total
    # Every worker's events all made it, interleaved in one chain.
    per_worker = AuditEvent.objects.values("actor_label").annotate(n=Count("id"))
    assert {row["n"] for row in per_worker} == {EVENTS_PER_THREAD}
    assert len(per_worker) == THREADS
