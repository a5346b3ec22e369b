"""The guest-link entries of the Patient Study Directory's context menu.

``GuestLinksConfig.ready()`` calls :func:`register`: right-clicking a study, a worklist or a
folder then offers **Send Link** where the user may send one (``linkable_target_ids``: the role's
permission in the target's organization, and a study held in full). The item opens the Send Link
dialog (``guestlinks:dialog``), which checks again.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

from accounts.http import AuthenticatedRequest
from accounts.permissions import Perm
from guestlinks.selectors import linkable_target_ids
from studies.menu import MenuItem, register_menu_item


def _linkable(request: AuthenticatedRequest, kind: str, targets: list[Any]) -> set[int]:
    return linkable_target_ids(request.user, kind, targets)


SEND_LINK = MenuItem(
    key="send_link",
    label=_("Send Link"),
    applies_to={"study", "worklist", "folder"},
    url_name="guestlinks:dialog",
    permission=Perm.CREATE_LINKS,
    kind="dialog",
    order=60,
    allowed_on=_linkable,
)


def register() -> None:
    """Add the Send Link item to the context menu (idempotent: items are keyed)."""
    register_menu_item(SEND_LINK)
