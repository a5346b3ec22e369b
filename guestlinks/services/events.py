"""The audit events of guest links, the sender's and the recipient's alike: about the link, by
its id, in its organization's chain, and about its study for a study link. Never its token, a
password or a code (detail keys also avoid the words the audit trail redacts)."""

from __future__ import annotations

from typing import Any

from accounts.models import User
from audit.models import Outcome
from audit.services import record
from guestlinks.models import GuestLink, TargetKind


def record_link_event(
    action: str,
    *,
    link: GuestLink,
    actor: User | None = None,
    request=None,
    failed: bool = False,
    details: dict[str, Any],
) -> None:
    record(
        action=action,
        actor=actor,
        request=request,
        outcome=Outcome.MINOR_FAILURE if failed else Outcome.SUCCESS,
        organization_id=link.organization_id,
        target_type="guest_link",
        target_id=link.pk,
        study=link.study if link.target_kind == TargetKind.STUDY else None,
        details=details,
    )
