"""Queries the ORM builds once and the portal then only runs (``portal.prepared_queries``): the
same rows as the queryset's, built once per thread and number and kind of values, and no way
around the queryset's own refusals."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from portal.prepared_queries import prepared, prepared_models, prepared_values
from studies.models import Series, Study
from tests.factories import make_study

pytestmark = pytest.mark.django_db


def studies_with_patients(uids: list[str]):
    return Study.objects.select_related("patient").filter(study_uid__in=uids).order_by("pk")


def series_uids_and_counts(uids: list[str]):
    return Series.objects.filter(series_uid__in=uids).values_list("series_uid", "instance_count")


def series_uids(uids: list[str]):
    return Series.objects.filter(series_uid__in=uids).values_list("series_uid", flat=True)


def studies_by_key(keys: list[int]):
    return Study.objects.select_related("patient").filter(pk__in=keys).order_by("pk")


def locked_studies(uids: list[str]):
    return Study.objects.select_for_update().filter(study_uid__in=uids)


def test_a_prepared_query_gives_the_models_its_queryset_gives(org):
    first = make_study(org, patient_id="P-1", family_name="Peeters", study_date=date(2024, 2, 29))
    second = make_study(org, patient_id="P-2", family_name="Maes")
    make_study(org, patient_id="P-3")  # not asked
    uids = [second.study_uid, first.study_uid, "1.2.3.not.stored"]

    with CaptureQueriesContext(connection) as captured:
        found = prepared_models(studies_with_patients, uids)
        names = [study.patient.family_name for study in found]

    assert len(captured.captured_queries) == 1  # the patients came with the studies
    assert names == ["Peeters", "Maes"]
    expected = list(studies_with_patients(uids))
    assert [study.pk for study in found] == [study.pk for study in expected]
    # Every field as the queryset converts it (SQLite keeps dates as text).
    assert found[0].study_date == date(2024, 2, 29)
    for mine, theirs in zip(found, expected, strict=True):
        for field in Study._meta.concrete_fields:
            assert getattr(mine, field.attname) == getattr(theirs, field.attname), field.name
        assert not mine._state.adding and mine._state.db == "default"


def test_value_lists_come_as_tuples_or_flat(org):
    study = make_study(org)
    stored = study.series.get()

    assert prepared_values(series_uids_and_counts, [stored.series_uid]) == [(stored.series_uid, 1)]
    assert prepared_values(series_uids, [stored.series_uid, "1.2.3"]) == [stored.series_uid]
    assert prepared_values(series_uids, ["1.2.3"]) == []


def test_keys_are_asked_as_whole_numbers_in_a_query_of_their_own(org, built_queries):
    first, second = make_study(org, patient_id="P-1"), make_study(org, patient_id="P-2")
    built_queries.clear()

    found = prepared_models(studies_by_key, [second.pk, first.pk, first.pk + second.pk])
    assert [study.pk for study in found] == [first.pk, second.pk]
    assert found[1].patient.patient_id == "P-2"
    assert prepared_models(studies_by_key, [second.pk])[0].pk == second.pk
    assert prepared_models(studies_by_key, [second.pk + first.pk + 1]) == []
    assert len(built_queries) == 2  # three keys, then one
    # A mix of kinds, or another kind, is refused before anything is built.
    with pytest.raises(TypeError, match="of one kind"):
        prepared_models(studies_by_key, [first.pk, str(second.pk)])
    with pytest.raises(TypeError, match="strings or whole numbers"):
        prepared_models(studies_by_key, [1.5])
    assert len(built_queries) == 2


def test_a_query_is_built_once_per_thread_and_number_of_values(org, built_queries):
    study = make_study(org)
    built_queries.clear()  # the study's own rows were written through the ORM

    for _ in range(3):
        assert [item.pk for item in prepared(studies_with_patients, 1).models([study.study_uid])]
    assert len(built_queries) == 1
    prepared(studies_with_patients, 2).models([study.study_uid, "1.2.3"])
    assert len(built_queries) == 2

    # Another thread has a connection of its own, and builds its own query for it.
    elsewhere = []

    def other_thread():
        elsewhere.append(prepared(studies_with_patients, 1))
        connection.close()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert len(built_queries) == 3
    assert elsewhere[0] is not prepared(studies_with_patients, 1)
    assert len(built_queries) == 3


def test_a_query_taking_other_values_than_its_own_is_refused(org):
    def with_a_fixed_value(uids: list[str]):
        return Study.objects.filter(study_uid__in=uids, organization_id=org.pk)

    with pytest.raises(RuntimeError, match="other parameters"):
        prepared(with_a_fixed_value, 1)


@pytest.mark.django_db(transaction=True)
def test_a_lock_is_taken_inside_a_transaction_only(org):
    study = make_study(org)
    with transaction.atomic():
        locked = prepared(locked_studies, 1).models([study.study_uid])
    assert [item.pk for item in locked] == [study.pk]

    # Built already, the query still refuses to run where its lock would end at once, as the
    # queryset does on PostgreSQL (on SQLite too, where the queryset lets it pass unlocked).
    with pytest.raises(TransactionManagementError):
        prepared(locked_studies, 1).models([study.study_uid])
