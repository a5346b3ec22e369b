"""Ending guest links: the sender's trash can (delete) and the administrator's revocation.

Either ends the link at once, in one transaction with its audit event; a link ends once, however
many deletes and revocations race for it, and stops opening at the recipient's next request.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from audit.models import Action
from guestlinks.models import GuestLink, LinkState
from guestlinks.selectors import may_delete_link, may_revoke_link
from guestlinks.services.events import record_link_event
from guestlinks.services.state import link_status

MAX_REASON_LENGTH = 1_000


def _end(*, user: User, link: GuestLink, state: str, reason: str, action: str, request) -> bool:
    with transaction.atomic():
        # Locked so that a concurrent delete and revoke end the link once, with one event.
        current = GuestLink.objects.select_for_update().get(pk=link.pk)
        if current.state != LinkState.ACTIVE:
            link.state, link.ended_at = current.state, current.ended_at
            link.ended_by_id, link.end_reason = current.ended_by_id, current.end_reason
            return False
        now = timezone.now()
        status_before = link_status(current, now=now).state
        current.state = state
        current.ended_at = now
        current.ended_by = user
        current.end_reason = reason
        current.save(update_fields=["state", "ended_at", "ended_by", "end_reason"])
        details: dict[str, Any] = {
            "target_kind": current.target_kind,
            "status_before": status_before,
            "uses": current.uses,
        }
        if reason:
            details["reason"] = reason
        record_link_event(action, actor=user, link=current, request=request, details=details)
    link.state, link.ended_at, link.ended_by, link.end_reason = state, now, user, reason
    return True


def delete_link(*, user: User, link: GuestLink, request=None) -> bool:
    """End a link at once (the trash can). Needs "delete guest links" in the link's organization
    and access to its target. Returns whether this call ended it (False: it had already ended)."""
    if not may_delete_link(user, link):
        raise PermissionDenied(_("You may not delete this link."))
    return _end(
        user=user,
        link=link,
        state=LinkState.DELETED,
        reason="",
        action=Action.LINK_DELETED,
        request=request,
    )


def revoke_link(*, user: User, link: GuestLink, reason: str, request=None) -> bool:
    """An administrator ends a link (the manual: "the administrator is able to revoke a study
    link"); it stops opening at the recipient's next request. Returns whether this call ended it."""
    if not may_revoke_link(user, link):
        raise PermissionDenied(_("You may not revoke this link."))
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": [_("Say why the link is revoked.")]})
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError(
            {
                "reason": [
                    _("Keep the reason under %(count)s characters.") % {"count": MAX_REASON_LENGTH}
                ]
            }
        )
    return _end(
        user=user,
        link=link,
        state=LinkState.REVOKED,
        reason=reason,
        action=Action.LINK_REVOKED,
        request=request,
    )
