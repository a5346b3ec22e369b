"""A share's audit events: one per study of the share, with the share as target, so that a
study's trail shows who shared it, opened it with a code, was blocked, or ended the share."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import HttpRequest

from accounts.models import User
from audit.models import Outcome
from audit.services import record_many
from sharing.models import Share
from studies.models import Study


def record_share_event(
    share: Share,
    action: str,
    *,
    actor: User | None,
    request: HttpRequest | None,
    details: dict[str, Any],
    studies: Iterable[Study] | None = None,
    failed: bool = False,
) -> None:
    """Record ``action`` for each of ``studies`` (by default all the share's studies)."""
    if studies is None:
        studies = share.studies.select_related("patient").order_by("pk")
    record_many(
        {
            "action": action,
            "actor": actor,
            "request": request,
            "outcome": Outcome.MINOR_FAILURE if failed else Outcome.SUCCESS,
            "organization_id": share.organization_id,
            "target_type": "share",
            "target_id": share.pk,
            "study": study,
            "details": details,
        }
        for study in studies
    )
