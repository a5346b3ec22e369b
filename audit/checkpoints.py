"""Audit checkpoints: each chain's count and last hash, signed with the audit key and published
outside the database.

The keyed chain stops anyone who can write the database but lacks ``AUDIT_KEY``. Checkpoints stop
the one who has both, and whoever cuts a chain or deletes it with its head: a rewritten history
no longer ends in the published hash at the published count, and a shortened one no longer
reaches it. ``write_checkpoints`` (Celery beat, ``audit.write_checkpoints``) appends one JSON line
per chain that grew since the last run to ``AUDIT_CHECKPOINT_FILE`` (opened with O_APPEND) and
logs the same line through the ``audit.checkpoint`` logger (syslog, a log collector, mail to the
security officer: wherever LOGGING sends it). ``manage.py verify_audit --checkpoints`` reads them
back. The file is only as write-once as the place it is kept: ship the logger's lines to a host
the database's administrators do not control, or make the file append-only (``chattr +a``).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TypedDict

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from audit.models import ChainHead
from audit.signing import SigningKey, current_key, verification_keys

logger = logging.getLogger("audit.checkpoint")

SIGNED_FIELDS = ("chain", "count", "last_hash", "at", "key_id")


def _message(fields: Mapping[str, object]) -> bytes:
    return json.dumps(
        {name: fields[name] for name in SIGNED_FIELDS}, sort_keys=True, separators=(",", ":")
    ).encode()


class SignedCheckpoint(TypedDict):
    chain: int
    count: int
    last_hash: str
    at: str
    key_id: str
    mac: str


def sign(*, chain: int, count: int, last_hash: str, at: str, key: SigningKey) -> SignedCheckpoint:
    fields = {"chain": chain, "count": count, "last_hash": last_hash, "at": at, "key_id": key.id}
    return SignedCheckpoint(
        chain=chain,
        count=count,
        last_hash=last_hash,
        at=at,
        key_id=key.id,
        mac=key.mac(_message(fields)),
    )


@dataclass(frozen=True)
class Checkpoint:
    chain: int
    count: int
    last_hash: str
    at: str
    line: int


class InvalidCheckpoint(ValueError):
    pass


def parse(text: str, *, line: int, keys: dict[str, SigningKey]) -> Checkpoint:
    """One line of the checkpoint file, its signature checked."""
    try:
        fields = json.loads(text)
        chain, count, last_hash = fields["chain"], fields["count"], fields["last_hash"]
        at, key_id, mac = fields["at"], fields["key_id"], fields["mac"]
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidCheckpoint("unreadable") from exc
    if not (
        type(chain) is int
        and type(count) is int
        and count >= 0
        and all(isinstance(value, str) for value in (last_hash, at, key_id, mac))
    ):
        raise InvalidCheckpoint("unreadable")
    key = keys.get(key_id)
    if key is None:
        raise InvalidCheckpoint(
            f"signed with key {key_id}, which is neither AUDIT_KEY nor in AUDIT_KEY_FALLBACKS"
        )
    if not hmac.compare_digest(mac, key.mac(_message(fields))):
        raise InvalidCheckpoint("its signature does not match: forged or altered")
    return Checkpoint(chain=chain, count=count, last_hash=last_hash, at=at, line=line)


def read(path: Path | str) -> tuple[list[Checkpoint], list[tuple[int, str]]]:
    """Every checkpoint of the file, and the lines that are not valid ones (number, reason).
    Raises OSError when the file cannot be read."""
    keys = verification_keys()
    checkpoints, invalid = [], []
    with open(path, encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                checkpoints.append(parse(text, line=number, keys=keys))
            except InvalidCheckpoint as exc:
                invalid.append((number, str(exc)))
    return checkpoints, invalid


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_APPEND: every write lands at the end, whatever else writes to the file; never truncated.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoints(*, path: Path | str | None = None) -> list[SignedCheckpoint]:
    """Publish a signed checkpoint of every chain whose count changed since its last one.
    Returns what was written."""
    key = current_key()
    at = timezone.now().astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    heads = list(
        ChainHead.objects.exclude(count=F("checkpointed_count"))
        .order_by("chain")
        .values_list("chain", "count", "last_hash")
    )
    checkpoints = [
        sign(chain=chain, count=count, last_hash=last_hash, at=at, key=key)
        for chain, count, last_hash in heads
        if count > 0
    ]
    if not checkpoints:
        return []
    lines = [
        json.dumps(checkpoint, sort_keys=True, separators=(",", ":")) for checkpoint in checkpoints
    ]
    # The file first: a checkpoint counts as published only once it is on disk.
    data = "".join(f"{line}\n" for line in lines).encode()
    _append(Path(path or settings.AUDIT_CHECKPOINT_FILE), data)
    for line in lines:
        logger.info("%s", line)
    for checkpoint in checkpoints:
        ChainHead.objects.filter(chain=checkpoint["chain"]).update(
            checkpointed_count=checkpoint["count"]
        )
    return checkpoints
