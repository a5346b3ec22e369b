"""What every search asks before it searches: whether the user holds any anonymized or two-factor
share at all. Most users hold none, and the answer must come from an index, not from reading every
entry of their worklists (at 100,000 studies that read cost 9 ms of each directory page)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from studies.access import visible_worklist_ids
from studies.models import AccessLevel
from studies.selectors import _has_masked_entries
from tests.factories import make_study, share_entry

pytestmark = pytest.mark.django_db


def test_an_anonymized_or_two_factor_share_is_what_masks(carol, alice, org, location):
    studies = [make_study(org, location=location, patient_id=f"PID-{n}") for n in range(3)]
    share_entry(carol, studies[0], level=AccessLevel.REPORT_READ)
    worklists = list(visible_worklist_ids(carol))
    assert _has_masked_entries(worklists) is False

    two_factor = share_entry(carol, studies[1], two_factor_required=True)
    assert _has_masked_entries(worklists) is True
    two_factor.delete()

    share_entry(carol, studies[2], anonymized=True)
    assert _has_masked_entries(worklists) is True
    # Another user's worklists hold none of them.
    others = list(visible_worklist_ids(alice))
    assert others and not set(others) & set(worklists)
    assert _has_masked_entries(others) is False


def test_the_question_is_answered_by_the_masked_share_index(require_postgres, carol, org, location):
    for n in range(20):
        share_entry(carol, make_study(org, location=location, patient_id=f"PID-{n}"))
    worklists = list(visible_worklist_ids(carol))
    with CaptureQueriesContext(connection) as queries:
        assert _has_masked_entries(worklists) is False
    (query,) = queries.captured_queries
    with transaction.atomic(), connection.cursor() as cursor:
        # With sequential scans priced out, the plan shows which index can answer at all: the
        # partial index matches only if its condition covers both kinds of masking share.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {query['sql']}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "entry_masked_share" in plan, plan
