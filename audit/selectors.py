"""Reading the audit trail: the events an administrator may see, one page of them, and the
verification of the hash chains (shared by ``manage.py verify_audit``, the admin and the tests).

Nothing here writes; callers record their own AUDIT_READ / AUDIT_VERIFIED events.
"""

import hmac
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from audit.checkpoints import Checkpoint
from audit.models import (
    LEGACY_CHAIN,
    NO_ORGANIZATION_CHAIN,
    AuditEvent,
    ChainHead,
    chain_of,
    lane_of,
)
from audit.services import GENESIS_HASH, event_digest, event_mac, hashed_fields
from audit.signing import SigningKey, head_seal_valid, verification_keys

# --- Who sees what -------------------------------------------------------------------------


# Audit imports no feature app: the apps that know its readers tell it, each in its
# AppConfig.ready(), which organizations' trail a user reads (accounts) and how a study is named
# to a reader who may see it (studies). Until they have, a reader sees no organization's trail
# and studies keep their UIDs.
TrailOrganizations = Callable[[Any], Collection[int]]
StudyLabels = Callable[[Any, Iterable[str]], dict[str, str]]


class _Readers:
    organizations: TrailOrganizations | None = None
    study_labels: StudyLabels | None = None


_readers = _Readers()


def register_trail_organizations(organizations: TrailOrganizations) -> None:
    """``organizations(user)``: the organizations whose trail the user reads."""
    _readers.organizations = organizations


def register_study_labels(labels: StudyLabels) -> None:
    """``labels(user, study_uids)``: a label for each study the user may see, by UID."""
    _readers.study_labels = labels


def trail_organization_ids(user: AbstractBaseUser | AnonymousUser) -> list[int]:
    """The organizations whose events the user reads (those the user administers)."""
    organizations = _readers.organizations
    return sorted(organizations(user)) if organizations else []


def study_labels(
    user: AbstractBaseUser | AnonymousUser, study_uids: Iterable[str]
) -> dict[str, str]:
    """How the trail names studies to this reader: patient, study description and date where
    the access authority lets the reader see the study (the pseudonym where that access is
    anonymized); the others are not in the answer and keep their UID."""
    labels = _readers.study_labels
    return labels(user, study_uids) if labels else {}


def events_visible_to(
    *, user: AbstractBaseUser | AnonymousUser, organization_ids: Iterable[int]
) -> QuerySet[AuditEvent]:
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


# --- Verifying the chains ------------------------------------------------------------------

CONTENT_CHANGED = "content_changed"
LINK_BROKEN = "link_broken"
EVENT_MISSING = "event_missing"
HEAD_MISMATCH = "head_mismatch"
HEAD_ALTERED = "head_altered"
KEY_UNKNOWN = "key_unknown"
UNKEYED_AFTER_KEYED = "unkeyed_after_keyed"
CHECKPOINT_INVALID = "checkpoint_invalid"
CHECKPOINT_MISMATCH = "checkpoint_mismatch"

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
    # Checkpoints found where they said the chain was.
    checkpoints_matched: int = 0

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


# A chain head as read: last hash, count, seal.
Head = tuple[str, int, str]


@dataclass
class _Walk:
    """Where the walk stands in one chain."""

    count: int = 0
    last_hash: str = GENESIS_HASH
    previous_id: int | None = None
    previous_intact: bool = True
    # The hash at the position the head counted before the walk (appends during the walk).
    hash_at_head: str | None = None


def _heads() -> dict[int, Head]:
    rows = ChainHead.objects.values_list("chain", "last_hash", "count", "seal")
    return {chain: (last_hash, count, seal) for chain, last_hash, count, seal in rows}


def _short(digest: str) -> str:
    return f"{digest[:12]}…"


def chain_label(chain: int) -> str:
    if chain == LEGACY_CHAIN:
        return _("the unkeyed chain of earlier versions")
    chain, lane = lane_of(chain)
    if chain == NO_ORGANIZATION_CHAIN:
        label = _("the chain of events of no organization")
    else:
        label = _("the chain of organization #%(id)s") % {"id": chain}
    if lane:
        return _("lane %(lane)s of %(chain)s") % {"lane": lane, "chain": label}
    return label


def verify_chain(
    *, chunk_size: int = 2000, checkpoints: Iterable[Checkpoint] = ()
) -> VerificationResult:
    """Walk every event in id order, each in its chain (its organization's, the chain of events
    of no organization, or the unkeyed chain of events recorded before the chain was keyed):
    recompute its hash (an HMAC under the key it names, current or fallback; a plain SHA-256 for
    unkeyed events, which must all precede the keyed ones), check that ``prev_hash`` is the hash
    of the event before it in its chain (the genesis hash for the first), and that each chain's
    head is sealed with an audit key, names its last event and counts them all. Each checkpoint
    given must be found: its chain's event at its count has its hash.

    Streams the table, so memory stays flat on millions of rows (one small record per chain and
    per checkpoint). Events appended while the walk runs are allowed for: the heads are read
    before and after, and only a head that did not move must match the walk exactly; one that
    moved must appear at the position it counted."""
    result = VerificationResult()
    keys = verification_keys()
    expected: dict[int, dict[int, list[Checkpoint]]] = {}
    for checkpoint in checkpoints:
        expected.setdefault(checkpoint.chain, {}).setdefault(checkpoint.count, []).append(
            checkpoint
        )
    heads_before = _heads()
    walks: dict[int, _Walk] = {}
    first_keyed: int | None = None
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=chunk_size):
        result.count += 1
        if event.key_id is not None and first_keyed is None:
            first_keyed = event.id
        if event.key_id is None and first_keyed is not None:
            result.add(
                UNKEYED_AFTER_KEYED,
                _(
                    "unkeyed event after keyed event #%(id)s: events recorded since the chain "
                    "was keyed all carry a key id; this one was rewritten"
                )
                % {"id": first_keyed},
                event.id,
            )
        chain, intact = _check_event(result, event, keys)
        walk = walks.setdefault(chain, _Walk())
        walk.count += 1
        if event.prev_hash != walk.last_hash:
            _explain_link(result, event, walk)
        walk.last_hash = event.hash
        walk.previous_id = event.id
        walk.previous_intact = intact
        head = heads_before.get(chain)
        if head is not None and walk.count == head[1]:
            walk.hash_at_head = event.hash
        for checkpoint in expected.get(chain, {}).get(walk.count, ()):
            _check_checkpoint(result, checkpoint, event.hash, event.id)
    heads_after = _heads()
    for chain in sorted(heads_before.keys() | heads_after.keys() | walks.keys()):
        _check_head(
            result,
            chain,
            heads_before.get(chain),
            heads_after.get(chain),
            walks.get(chain) or _Walk(),
            keys,
        )
    _check_checkpoints_reached(result, expected, walks)
    return result


def _check_event(
    result: VerificationResult, event: AuditEvent, keys: dict[str, SigningKey]
) -> tuple[int, bool]:
    """The event's chain, and whether its stored hash is the one its content gives."""
    if event.key_id is None:
        digest = event_digest(hashed_fields(event), event.prev_hash)
        intact = _matches(digest, event.hash)
        chain = LEGACY_CHAIN
    else:
        chain = chain_of(event)
        key = keys.get(event.key_id)
        if key is None:
            result.add(
                KEY_UNKNOWN,
                _(
                    "key unknown: signed with audit key %(key)s, which is neither AUDIT_KEY nor "
                    "in AUDIT_KEY_FALLBACKS: it cannot be verified"
                )
                % {"key": event.key_id},
                event.id,
            )
            return chain, False
        intact = _matches(event_mac(hashed_fields(event), event.prev_hash, key), event.hash)
    if not intact:
        result.add(
            CONTENT_CHANGED,
            _("content changed: its stored hash does not match its content"),
            event.id,
        )
    return chain, intact


def _check_checkpoints_reached(
    result: VerificationResult,
    expected: dict[int, dict[int, list[Checkpoint]]],
    walks: dict[int, _Walk],
) -> None:
    """A checkpoint beyond the end of its chain: the chain lost events since."""
    for chain, by_count in sorted(expected.items()):
        walked = walks[chain].count if chain in walks else 0
        for count, stated in sorted(by_count.items()):
            if count <= walked:
                continue
            for checkpoint in stated:
                result.add(
                    CHECKPOINT_MISMATCH,
                    _(
                        "checkpoint mismatch: the checkpoint of %(at)s (line %(line)s) counted "
                        "%(count)s events in %(chain)s, which now holds %(walked)s; events were "
                        "deleted"
                    )
                    % {
                        "at": checkpoint.at,
                        "line": checkpoint.line,
                        "count": count,
                        "chain": chain_label(chain),
                        "walked": walked,
                    },
                )


def _matches(computed: str, stored: str) -> bool:
    return hmac.compare_digest(computed, stored)


def _check_checkpoint(
    result: VerificationResult, checkpoint: Checkpoint, found: str, event_id: int
) -> None:
    if _matches(checkpoint.last_hash, found):
        result.checkpoints_matched += 1
        return
    result.add(
        CHECKPOINT_MISMATCH,
        _(
            "checkpoint mismatch: the checkpoint of %(at)s (line %(line)s) says event %(count)s "
            "of %(chain)s had hash %(stated)s, it now has %(found)s; the chain was rewritten "
            "up to here"
        )
        % {
            "at": checkpoint.at,
            "line": checkpoint.line,
            "count": checkpoint.count,
            "chain": chain_label(checkpoint.chain),
            "stated": _short(checkpoint.last_hash),
            "found": _short(found),
        },
        event_id,
    )


def _explain_link(result: VerificationResult, event: AuditEvent, walk: _Walk) -> None:
    """The event does not chain onto the one before it in its chain: say why, as precisely as
    the stored hashes allow."""
    if result.break_count >= MAX_REPORTED_BREAKS:
        # Past the report limit, count without paying a lookup per row.
        result.add(LINK_BROKEN, "", event.id)
        return
    follows = (
        _("the start of its chain")
        if walk.previous_id is None
        else _("event #%(id)s") % {"id": walk.previous_id}
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
    elif walk.previous_id is not None and not walk.previous_intact:
        result.add(
            LINK_BROKEN,
            _(
                "link broken: the event it was chained to (hash %(hash)s) is not in the trail; "
                "%(follows)s was replaced or rewritten"
            )
            % {"hash": _short(event.prev_hash), "follows": follows},
            event.id,
        )
    else:
        result.add(
            EVENT_MISSING,
            _(
                "event missing: the event it was chained to (hash %(hash)s) is not in the "
                "trail; an event before it was deleted"
            )
            % {"hash": _short(event.prev_hash)},
            event.id,
        )


def _check_head(
    result: VerificationResult,
    chain: int,
    before: Head | None,
    after: Head | None,
    walk: _Walk,
    keys: dict[str, SigningKey],
) -> None:
    label = chain_label(chain)
    if before is None and after is None:
        result.add(
            HEAD_MISMATCH,
            _(
                "head mismatch: the chain head of %(chain)s is missing, but it holds %(count)s "
                "events"
            )
            % {"chain": label, "count": walk.count},
        )
        return
    for head in [before] if after == before else [before, after]:
        if head is None:
            continue
        last_hash, count, seal = head
        key_id = seal.partition(":")[0]
        if seal and key_id not in keys:
            result.add(
                KEY_UNKNOWN,
                _(
                    "key unknown: the chain head of %(chain)s is sealed with audit key %(key)s, "
                    "which is neither AUDIT_KEY nor in AUDIT_KEY_FALLBACKS: it cannot be verified"
                )
                % {"chain": label, "key": key_id},
            )
        elif not head_seal_valid(chain, count, last_hash, seal, keys):
            result.add(
                HEAD_ALTERED,
                _(
                    "head altered: the seal of the chain head of %(chain)s (%(count)s events, "
                    "hash %(hash)s) does not match; it was written outside the portal"
                )
                % {"chain": label, "count": count, "hash": _short(last_hash)},
            )
    if before is None:
        # The chain began during the walk.
        before = (GENESIS_HASH, 0, "")
    after = after or before
    head_hash, head_count, _seal = before
    if before == after:
        # Nothing was appended during the walk: the head must name exactly what was walked.
        matches = head_count == walk.count and head_hash == walk.last_hash
    else:
        # Events were appended meanwhile: the walk ends somewhere between the two heads, and
        # the first head must be found at the position it counted.
        at_head = GENESIS_HASH if head_count == 0 else walk.hash_at_head
        matches = head_count <= walk.count <= after[1] and at_head == head_hash
    if not matches:
        result.add(
            HEAD_MISMATCH,
            _(
                "head mismatch: the chain head of %(chain)s counts %(head_count)s events ending "
                "with hash %(head_hash)s, but the chain holds %(count)s events ending with hash "
                "%(last_hash)s; the newest events were deleted or the head was altered"
            )
            % {
                "chain": label,
                "head_count": head_count,
                "head_hash": _short(head_hash),
                "count": walk.count,
                "last_hash": _short(walk.last_hash),
            },
        )
