"""Whether a link still opens, derived from its row at the moment of asking.

The same rule exists twice on purpose, in one place: as Python (:func:`link_status`, for pages
and lists) and as a query condition (:func:`openable`, for the conditional UPDATE that counts a
use atomically). Keep them in step; tests compare them.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from guestlinks.models import GuestLink, LinkState

STATUS_LABELS = {
    "active": _("Active"),
    "expired": _("Expired"),
    "used_up": _("No uses left"),
    "locked": _("Locked after wrong passwords or codes"),
    "deleted": _("Deleted"),
    "revoked": _("Revoked"),
}


@dataclass(frozen=True)
class LinkStatus:
    state: str
    uses_left: int | None

    @property
    def is_open(self) -> bool:
        return self.state == "active"

    @property
    def label(self) -> str:
        return str(STATUS_LABELS[self.state])


def max_code_failures() -> int:
    return settings.GUESTLINK_MAX_CODE_FAILURES


def link_status(link: GuestLink, *, now: datetime | None = None) -> LinkStatus:
    now = now or timezone.now()
    uses_left = None if link.max_uses is None else max(0, link.max_uses - link.uses)
    if link.state == LinkState.DELETED:
        state = "deleted"
    elif link.state == LinkState.REVOKED:
        state = "revoked"
    elif link.expires_at is not None and now >= link.expires_at:
        state = "expired"
    elif (
        link.max_password_attempts is not None
        and link.password_failures >= link.max_password_attempts
    ) or link.code_failures >= max_code_failures():
        # The manual: reaching the maximum expires the link whatever uses are left.
        state = "locked"
    elif uses_left == 0:
        state = "used_up"
    else:
        state = "active"
    return LinkStatus(state=state, uses_left=uses_left)


def openable(*, now: datetime | None = None) -> Q:
    """The rows :func:`link_status` calls active, as a filter for conditional UPDATEs."""
    now = now or timezone.now()
    return (
        Q(state=LinkState.ACTIVE)
        & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        & (
            Q(max_password_attempts__isnull=True)
            | Q(password_failures__lt=F("max_password_attempts"))
        )
        & Q(code_failures__lt=max_code_failures())
        & (Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
    )
