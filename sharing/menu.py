"""The Share entry of the Patient Study Directory's context menu.

``SharingConfig.ready()`` calls :func:`register`: right-clicking one or several selected studies
(or a selected row's Actions button) then offers **Share** on the studies the user may share
(``shareable_study_ids``). The item opens the Share dialog (``sharing:dialog``) for every
selected study; the dialog checks the user's access to each study again.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

from accounts.http import AuthenticatedRequest
from accounts.permissions import Perm
from sharing.services.shares import shareable_study_ids
from studies.menu import MenuItem, register_menu_item


def _shareable(request: AuthenticatedRequest, kind: str, studies: list[Any]) -> set[int]:
    return shareable_study_ids(request.user, studies, request)


SHARE = MenuItem(
    key="share",
    label=_("Share"),
    applies_to={"study"},
    url_name="sharing:dialog",
    permission=Perm.SHARE_STUDY,
    kind="dialog",
    # After Open, before Copy Link (50) and Send Link (60).
    order=40,
    multiple=True,
    allowed_on=_shareable,
)


def register() -> None:
    """Add the Share item to the context menu (idempotent: items are keyed)."""
    register_menu_item(SHARE)
