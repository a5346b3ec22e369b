"""The directory's context menu item "Open in OHIF", where OHIF is installed: on the studies
selected, for whoever may open them (the dialog checks again, and so does the token)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from studies.menu import MenuItem, register_menu_item
from viewers.services import ohif_available

OPEN_IN_OHIF = MenuItem(
    key="open_in_ohif",
    label=_("Open in OHIF"),
    applies_to={"study"},
    url_name="viewers:open_in_ohif",
    kind="dialog",
    order=15,
    multiple=True,
    # Every study the directory lists is one its user may open; without OHIF, none.
    allowed_on=lambda request, kind, targets: (
        {target.pk for target in targets} if ohif_available() else set()
    ),
)


def register() -> None:
    register_menu_item(OPEN_IN_OHIF)
