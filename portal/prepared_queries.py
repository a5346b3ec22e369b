"""Queries the ORM builds once, which the portal then only runs.

For the small lookups on the busiest paths, building a queryset's SQL (its filters, joins and
the compiler's set-up) costs several times what running it does: the guest link page's lookup
by token (anyone may fetch it without logging in) and the rows an ingestion chunk reads for
every STOW-RS request. A prepared query keeps the SQL the ORM compiled, with stand-ins where the
values go, and turns the rows into what the queryset would have given: models with the same
converters (SQLite's dates, for one), ``from_db`` and ``select_related`` populators, or a
``values_list`` query's tuples (its flat values when ``flat``). The models read this way have
no composite fields, the one other step of a queryset's rows.

Kept per thread (a connection belongs to its thread), per query and per number and kind of
values; a thread's new connection object (tests swap them) gets its queries built again.
Callers ask :func:`prepared_models` or :func:`prepared_values` with the values themselves, so
the query taken is always the one for that many values of that kind. The values are strings
(UIDs, digests) or whole numbers (keys): each kind has stand-ins that the fields' own
conversions leave as they are, so that the compiled parameters are exactly the stand-ins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, QuerySet
from django.db.models.query import (  # type: ignore[attr-defined] # not in the stubs
    FlatValuesListIterable,
    ModelIterable,
    ValuesListIterable,
    get_related_populators,
)
from django.db.transaction import TransactionManagementError

# What a queryset of the query is built from: the stand-ins for its values, in their order.
Build = Callable[[list[Any]], QuerySet[Any]]

# Whole-number stand-ins: far below any key a table gives out, so that no constant of a query
# is mistaken for one.
_FIRST_NUMBER_STAND_IN = -(2**62)


def _stand_ins(kind: type, count: int) -> list[Any]:
    if kind is str:
        return [f"value-{index}" for index in range(count)]
    if kind is int:
        return [_FIRST_NUMBER_STAND_IN - index for index in range(count)]
    raise TypeError(f"A prepared query takes strings or whole numbers, not {kind.__name__}")


class PreparedQuery:
    """``queryset``'s SQL, compiled once; its parameters must be exactly ``stand_ins``."""

    def __init__(self, queryset: QuerySet[Any], stand_ins: list[Any]) -> None:
        self.alias = queryset.db
        self.compiler = queryset.query.get_compiler(using=self.alias)
        self.sql, params = self.compiler.as_sql()
        if list(params) != stand_ins:
            raise RuntimeError(f"A prepared query takes other parameters than its own: {params}")
        self.locks = bool(queryset.query.select_for_update)
        select, klass_info = self.compiler.select, self.compiler.klass_info
        self.converters = self.compiler.get_converters([column for column, _, _ in select])
        iterable = queryset._iterable_class
        self.flat = iterable is FlatValuesListIterable
        if iterable is ModelIterable:
            assert klass_info is not None
            self.model: type[Model] | None = klass_info["model"]
            columns = klass_info["select_fields"]
            self.model_columns = slice(columns[0], columns[-1] + 1)
            self.attnames = [column.target.attname for column, _, _ in select[self.model_columns]]
            self.populators = get_related_populators(klass_info, select, self.alias)
        elif iterable in (ValuesListIterable, FlatValuesListIterable):
            self.model = None
        else:
            raise RuntimeError(f"A prepared query gives models or value lists, not {iterable}")

    def _rows(self, values: Sequence[Any]) -> list[Any]:
        connection = connections[self.alias]
        if self.locks and connection.get_autocommit():
            # A lock outside a transaction would end at once. The queryset refuses it where the
            # database has locks; this refuses it everywhere, so SQLite's tests find the mistake.
            raise TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        with connection.cursor() as cursor:
            cursor.execute(self.sql, list(values))
            rows: list[Any] = cursor.fetchall()
        if self.converters:
            return list(self.compiler.apply_converters(rows, self.converters))
        return rows

    def models(self, values: Sequence[Any]) -> list[Any]:
        """The models the queryset would give for ``values`` in place of the stand-ins."""
        assert self.model is not None, "a values_list query gives values()"
        found = []
        for row in self._rows(values):
            item = self.model.from_db(self.alias, self.attnames, row[self.model_columns])
            for populator in self.populators:
                populator.populate(row, item)
            found.append(item)
        return found

    def values(self, values: Sequence[Any]) -> list[Any]:
        """The rows of a ``values_list`` query (each row's one value when ``flat``)."""
        assert self.model is None, "a query of models gives models()"
        rows = self._rows(values)
        return [row[0] for row in rows] if self.flat else [tuple(row) for row in rows]


_built = threading.local()


def prepared(
    build: Build, count: int, *, kind: type = str, alias: str = DEFAULT_DB_ALIAS
) -> PreparedQuery:
    """The query ``build`` makes, for ``count`` values of ``kind`` (``str`` or ``int``), on
    database ``alias``: compiled on this thread's first call (and for each new connection), then
    only run. Counts are few per query (a token's digests, a chunk's studies, series and
    instances up to its file count), so what a thread keeps stays small. At least one value: a
    query for none finds nothing, and is not sent."""
    if count < 1:
        raise ValueError("A prepared query takes at least one value; with none, find nothing.")
    queries: dict[tuple[Build, str, int, type], PreparedQuery] = _built.__dict__.setdefault(
        "queries", {}
    )
    key = (build, alias, count, kind)
    query = queries.get(key)
    if query is None or query.compiler.connection is not connections[alias]:
        stand_ins = _stand_ins(kind, count)
        query = queries[key] = PreparedQuery(build(stand_ins).using(alias), stand_ins)
    return query


def prepared_models(
    build: Build, values: Sequence[Any], *, alias: str = DEFAULT_DB_ALIAS
) -> list[Any]:
    """The models ``build(values)`` gives, its query built once for that many values of
    their kind."""
    return prepared(build, len(values), kind=_kind_of(values), alias=alias).models(values)


def prepared_values(
    build: Build, values: Sequence[Any], *, alias: str = DEFAULT_DB_ALIAS
) -> list[Any]:
    """The rows of the ``values_list`` query ``build(values)``, built once for that many
    values of their kind."""
    return prepared(build, len(values), kind=_kind_of(values), alias=alias).values(values)


def _kind_of(values: Sequence[Any]) -> type:
    """``str`` or ``int``, the kind all of ``values`` are (a query for none is refused by
    :func:`prepared`)."""
    kinds = {type(value) for value in values}
    if len(kinds) > 1:
        names = ", ".join(sorted(kind.__name__ for kind in kinds))
        raise TypeError(f"A prepared query's values are of one kind, not {names}")
    return kinds.pop() if kinds else str
