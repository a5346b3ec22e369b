"""Reading the audit trail: the events an administrator may see, one page of them, and the
verification of the hash chain (shared by ``manage.py verify_audit``, the admin and the tests).

Nothing here writes; callers record their own AUDIT_READ / AUDIT_VERIFIED events.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from audit.models import AuditEvent, ChainHead
from audit.services import GENESIS_HASH, event_digest, hashed_fields

# --- Who sees what -------------------------------------------------------------------------


def events_visible_to(*, user, organization_ids: Iterable[int]) -> QuerySet[AuditEvent]:
    """Events of the given organizations (those the user administers), plus the user's own
    actions wherever they happened. The caller decides which organizations those are."""
    return AuditEvent.objects.filter(
        Q(organization_id__in=list(organization_ids)) | Q(actor_id=user.pk)
    )


def filter_events(
    events: QuerySet[AuditEvent],
    *,
    study: str = "",
    actor: str = "",
    action: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """Narrow ``events``. ``since`` is inclusive, ``until`` exclusive (callers turn a date into
    the start of the next day)."""
    if study:
        events = events.filter(study_uid=study)
    if actor:
        events = events.filter(actor_label=actor)
    if action:
        events = events.filter(action=action)
    if since is not None:
        events = events.filter(at__gte=since)
    if until is not None:
        events = events.filter(at__lt=until)
    return events


def events_page(
    events: QuerySet[AuditEvent], *, before_id: int | None, size: int
) -> tuple[list[AuditEvent], int | None]:
    """One page, newest first, by keyset on the id: stable while events keep arriving, and as
    fast on page 10,000 as on page 1. Returns the events and the id to continue before (None on
    the last page)."""
    if before_id is not None:
        events = events.filter(id__lt=before_id)
    rows = list(events.order_by("-id")[: size + 1])
    if len(rows) > size:
        rows = rows[:size]
        return rows, rows[-1].id
    return rows, None


# --- Verifying the chain -------------------------------------------------------------------

CONTENT_CHANGED = "content_changed"
LINK_BROKEN = "link_broken"
EVENT_MISSING = "event_missing"
HEAD_MISMATCH = "head_mismatch"

# A rewritten table could break at every row; report the first ones and count the rest.
MAX_REPORTED_BREAKS = 1000


@dataclass(frozen=True)
class ChainBreak:
    kind: str
    message: str
    event_id: int | None = None

    def __str__(self) -> str:
        if self.event_id is None:
            return self.message
        return _("event #%(id)s: %(message)s") % {"id": self.event_id, "message": self.message}


@dataclass
class VerificationResult:
    count: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)
    break_count: int = 0

    @property
    def ok(self) -> bool:
        return self.break_count == 0

    def add(self, kind: str, message: str, event_id: int | None = None) -> None:
        self.break_count += 1
        if len(self.breaks) < MAX_REPORTED_BREAKS:
            self.breaks.append(ChainBreak(kind=kind, message=message, event_id=event_id))

    @property
    def unreported(self) -> int:
        return self.break_count - len(self.breaks)


def _head() -> tuple[str, int] | None:
    head = ChainHead.objects.filter(pk=1).values_list("last_hash", "count").first()
    return tuple(head) if head is not None else None


def _short(digest: str) -> str:
    return f"{digest[:12]}…"


def verify_chain(*, chunk_size: int = 2000) -> VerificationResult:
    """Walk every event in id order: recompute its hash from its content and its ``prev_hash``,
    check that ``prev_hash`` is the hash of the event before it (the genesis hash for the first),
    and that the chain head names the last event and counts them all.

    Streams the table, so memory stays flat on millions of rows. Events appended while the walk
    runs are allowed for: the head is read before and after, and only a head that did not move
    must match the walk exactly; one that moved must appear at the position it counted."""
    result = VerificationResult()
    head_before = _head()
    expected_prev = GENESIS_HASH
    previous_id: int | None = None
    # An empty chain's head sits at position 0, on the genesis hash.
    hash_at_head_position = GENESIS_HASH if head_before and head_before[1] == 0 else None
    events = AuditEvent.objects.order_by("id").iterator(chunk_size=chunk_size)
    for event in events:
        result.count += 1
        if event_digest(hashed_fields(event), event.prev_hash) != event.hash:
            result.add(
                CONTENT_CHANGED,
                _("content changed: its stored hash does not match its content"),
                event.id,
            )
        if event.prev_hash != expected_prev:
            _explain_link(result, event, previous_id)
        expected_prev = event.hash
        previous_id = event.id
        if head_before is not None and result.count == head_before[1]:
            hash_at_head_position = event.hash
    _check_head(result, head_before, _head(), expected_prev, hash_at_head_position)
    return result


def _explain_link(result: VerificationResult, event: AuditEvent, previous_id: int | None) -> None:
    """The event does not chain onto the one before it in id order: say why, as precisely as the
    stored hashes allow."""
    if result.break_count >= MAX_REPORTED_BREAKS:
        # Past the report limit, count without paying a lookup per row.
        result.add(LINK_BROKEN, "", event.id)
        return
    follows = (
        _("the start of the trail")
        if previous_id is None
        else _("event #%(id)s") % {"id": previous_id}
    )
    if event.prev_hash == GENESIS_HASH:
        result.add(
            LINK_BROKEN,
            _("link broken: it starts a new chain, but follows %(follows)s") % {"follows": follows},
            event.id,
        )
        return
    predecessor = (
        AuditEvent.objects.filter(hash=event.prev_hash).values_list("id", flat=True).first()
    )
    if predecessor is not None:
        # The event it was chained to exists, elsewhere: the rows were reordered or re-linked.
        result.add(
            LINK_BROKEN,
            _("link broken: it was chained to event #%(chained)s, but follows %(follows)s")
            % {"chained": predecessor, "follows": follows},
            event.id,
        )
    elif previous_id is None or event.id > previous_id + 1:
        result.add(
            EVENT_MISSING,
            _(
                "event missing: the event it was chained to (hash %(hash)s) is not in the "
                "trail; an event before it was deleted"
            )
            % {"hash": _short(event.prev_hash)},
            event.id,
        )
    else:
        result.add(
            LINK_BROKEN,
            _(
                "link broken: the event it was chained to (hash %(hash)s) is not in the trail; "
                "%(follows)s was replaced or rewritten"
            )
            % {"hash": _short(event.prev_hash), "follows": follows},
            event.id,
        )


def _check_head(
    result: VerificationResult,
    before: tuple[str, int] | None,
    after: tuple[str, int] | None,
    last_hash: str,
    hash_at_head_position: str | None,
) -> None:
    if before is None or after is None:
        if result.count:
            result.add(
                HEAD_MISMATCH,
                _("head mismatch: the chain head is missing, but the trail holds %(count)s events")
                % {"count": result.count},
            )
        return
    head_hash, head_count = before
    if before == after:
        # Nothing was appended during the walk: the head must name exactly what was walked.
        matches = head_count == result.count and head_hash == last_hash
    else:
        # Events were appended meanwhile: the walk ends somewhere between the two heads, and
        # the first head must be found at the position it counted.
        matches = head_count <= result.count <= after[1] and hash_at_head_position == head_hash
    if not matches:
        result.add(
            HEAD_MISMATCH,
            _(
                "head mismatch: the chain head counts %(head_count)s events ending with hash "
                "%(head_hash)s, but the trail holds %(count)s events ending with hash "
                "%(last_hash)s; the newest events were deleted or the head was altered"
            )
            % {
                "head_count": head_count,
                "head_hash": _short(head_hash),
                "count": result.count,
                "last_hash": _short(last_hash),
            },
        )
