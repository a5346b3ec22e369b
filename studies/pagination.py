"""Keyset (cursor) pagination of study lists, on ``(sort key, id)``: each page is one indexed
range query whatever the size of the directory, and nothing counts the whole result set. A
cursor is an opaque base64 token that holds the id of the row to continue from, never a sort
value, so no patient name travels in a URL.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q, QuerySet

from portal.http import MAX_ID
from studies.models import Study


@dataclass(frozen=True)
class Sort:
    """A directory sort order: a key from :data:`SORT_KEYS` and a direction."""

    key: str = "date"
    descending: bool = True

    @classmethod
    def parse(cls, text: str | None) -> Sort:
        """``"-date"``, ``"name"``...; anything unknown gives the default (newest first)."""
        text = (text or "").strip()
        descending = text.startswith("-")
        key = text.lstrip("-")
        if key not in SORT_KEYS:
            return DEFAULT_SORT
        return cls(key=key, descending=descending)

    @property
    def param(self) -> str:
        return f"-{self.key}" if self.descending else self.key

    def ordering(self) -> list[Any]:
        """The ``order_by`` of this order, ties broken by id (the order pages are cut in)."""
        name, _nullable = SORT_KEYS[self.key]
        return _ordering(name, larger=not self.descending)

    def toggled(self, key: str) -> Sort:
        """The order a column header links to: the other direction of the current key, or the
        new key's natural direction (dates newest first, text A to Z)."""
        if key == self.key:
            return Sort(key=key, descending=not self.descending)
        return Sort(key=key, descending=key == "date")


# Sort key -> (field or annotation, nullable). Text fields are never NULL (blank is "").
SORT_KEYS: dict[str, tuple[str, bool]] = {
    "date": ("study_date", True),
    "name": ("sort_name", False),
    "modality": ("modalities", False),
    "description": ("description", False),
}
DEFAULT_SORT = Sort()


class InvalidCursor(ValueError):
    """The cursor is malformed, belongs to another sort, or its row is no longer visible."""


@dataclass(frozen=True)
class Cursor:
    pk: int
    backward: bool
    sort: str

    def encode(self) -> str:
        raw = json.dumps(
            {"i": self.pk, "b": int(self.backward), "s": self.sort}, separators=(",", ":")
        )
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            padded = token + "=" * (-len(token) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            cursor = cls(pk=int(data["i"]), backward=bool(data["b"]), sort=str(data["s"]))
        except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise InvalidCursor("Malformed cursor.") from exc
        if not 0 < cursor.pk <= MAX_ID:
            raise InvalidCursor("Malformed cursor.")
        return cursor


@dataclass
class StudyPage:
    studies: list[Study]
    next_cursor: str | None = None
    previous_cursor: str | None = None


def _beyond(name: str, value: Any, pk: int, *, larger: bool, nullable: bool) -> Q:
    """Rows strictly after ``(value, pk)`` walking towards larger (or smaller) keys, with NULL
    ordered as the largest value (PostgreSQL's own rule, so its indexes serve both ways)."""
    op = "gt" if larger else "lt"
    if value is None:
        after_nulls = Q(**{f"{name}__isnull": True, f"pk__{op}": pk})
        return after_nulls if larger else after_nulls | Q(**{f"{name}__isnull": False})
    condition = Q(**{f"{name}__{op}": value}) | Q(**{name: value, f"pk__{op}": pk})
    if nullable and larger:
        condition |= Q(**{f"{name}__isnull": True})
    return condition


def _ordering(name: str, *, larger: bool) -> list:
    if larger:
        return [F(name).asc(nulls_last=True), "pk"]
    return [F(name).desc(nulls_first=True), "-pk"]


def paginate(
    queryset: QuerySet[Study],
    *,
    sort: Sort,
    cursor: str | None,
    page_size: int,
    lookup: QuerySet[Study] | None = None,
) -> StudyPage:
    """One page of ``queryset`` in ``sort`` order, after or before the cursor's row.

    ``lookup`` is where the cursor's row is looked up for its sort value (by default the
    queryset itself); it must be restricted to what the caller may see.
    """
    name, nullable = SORT_KEYS[sort.key]
    forward_larger = not sort.descending
    position = None
    if cursor:
        position = Cursor.decode(cursor)
        if position.sort != sort.param:
            raise InvalidCursor("The cursor belongs to another sort order.")
        source = lookup if lookup is not None else queryset
        values = list(source.filter(pk=position.pk).values_list(name, flat=True)[:1])
        if not values:
            raise InvalidCursor("The cursor's study is no longer listed.")
        value = values[0]

    if position is not None and position.backward:
        larger = not forward_larger
        rows = list(
            queryset.filter(
                _beyond(name, value, position.pk, larger=larger, nullable=nullable)
            ).order_by(*_ordering(name, larger=larger))[: page_size + 1]
        )
        more_before = len(rows) > page_size
        page = list(reversed(rows[:page_size]))
        return StudyPage(
            studies=page,
            next_cursor=Cursor(page[-1].pk, False, sort.param).encode() if page else None,
            previous_cursor=(
                Cursor(page[0].pk, True, sort.param).encode() if page and more_before else None
            ),
        )

    filtered = queryset
    if position is not None:
        filtered = queryset.filter(
            _beyond(name, value, position.pk, larger=forward_larger, nullable=nullable)
        )
    rows = list(filtered.order_by(*_ordering(name, larger=forward_larger))[: page_size + 1])
    page = rows[:page_size]
    return StudyPage(
        studies=page,
        next_cursor=(
            Cursor(page[-1].pk, False, sort.param).encode() if len(rows) > page_size else None
        ),
        previous_cursor=(
            Cursor(page[0].pk, True, sort.param).encode() if position is not None and page else None
        ),
    )
