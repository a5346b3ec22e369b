"""The context menu of the Patient Study Directory, as a registry other apps add items to.

Right-clicking (or touching and holding) a study, a worklist or a folder opens a menu built from
the items registered here for that kind of target, filtered by the user's permissions. This app
registers **Open** and **Copy Link**; sharing and guest links add theirs from their
``AppConfig.ready()``::

    from accounts.permissions import Perm
    from studies.menu import MenuItem, register_menu_item

    register_menu_item(MenuItem(
        key="send_link", label=_("Send Link"), applies_to={"study", "worklist", "folder"},
        url_name="guestlinks:dialog", permission=Perm.CREATE_LINKS, kind="dialog", order=30,
    ))

Kinds of item:

- ``"link"``: the browser goes to the item's URL.
- ``"dialog"``: the menu fetches the item's URL (GET) and shows the returned HTML fragment in a
  ``<dialog>``. Forms in the fragment are submitted by ``static/js/dialog.js`` with ``fetch``
  and the response fragment replaces the dialog's content, so a view re-renders its form with
  errors or shows its confirmation just as a page would. A response with the header
  ``X-Dialog-Redirect: <url>`` makes the browser go there; an element with
  ``data-dialog-close`` closes the dialog; ``data-copy-from="#input-id"`` buttons copy a text
  box (``static/js/clipboard.js``). Fragments carry no scripts (CSP): behaviour is delegated.
- ``"copy"``: the Copy Link dialog shows the target's own absolute URL with a Copy button.

The target reaches the item's view in the query string: ``?study=<study_uid>`` (repeated when
the item has ``multiple=True`` and several studies are selected), ``?worklist=<id>`` or
``?folder=<id>``. The view must check access itself (``studies.access``); the menu only hides
items a user's role can never use. Items with ``url_name=None`` act on the target's own page
(the viewer for a study, the directory filtered to a worklist or folder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from accounts.http import AuthenticatedRequest
from accounts.memberships import has_perm
from accounts.models import User
from accounts.permissions import Perm
from studies.access import entries_reaching, organizable_worklist_ids

TARGET_KINDS = frozenset({"study", "worklist", "folder"})
TargetCheck = Callable[[AuthenticatedRequest, str, list[Any]], set[int]]
ITEM_KINDS = frozenset({"link", "dialog", "copy"})


@dataclass(frozen=True)
class MenuItem:
    key: str
    label: Any
    applies_to: frozenset[str] | set[str]
    url_name: str | None = None
    permission: Perm | None = None
    kind: str = "link"
    order: int = 100
    # Whether a dialog or link item accepts several selected studies at once.
    multiple: bool = False
    # For rights that depend on the target (its organization, the share it is held through, its
    # worklist), which a permission of the user's cannot tell: given the request, the kind and
    # the page's targets of that kind (Study, Worklist or Folder objects), the keys of those the
    # item is offered on. The page lists them in each target's ``data-allows``.
    allowed_on: TargetCheck | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "applies_to", frozenset(self.applies_to))
        unknown = self.applies_to - TARGET_KINDS
        if not self.applies_to or unknown:
            raise ValueError(f"Menu item {self.key!r}: applies_to must be within {TARGET_KINDS}")
        if self.kind not in ITEM_KINDS:
            raise ValueError(f"Menu item {self.key!r}: kind must be one of {ITEM_KINDS}")
        if self.kind == "dialog" and not self.url_name:
            raise ValueError(
                f"Menu item {self.key!r}: a dialog item needs the url_name of its view"
            )

    def allowed(self, user: User) -> bool:
        return self.permission is None or has_perm(user, self.permission)

    def as_client(self) -> dict[str, Any]:
        """What ``static/js/contextmenu.js`` needs: the URL is the view's own path, the target
        is added as query parameters by the browser."""
        return {
            "key": self.key,
            "label": str(self.label),
            "kind": self.kind,
            "url": reverse(self.url_name) if self.url_name else None,
            "multiple": self.multiple,
            "checked": self.allowed_on is not None,
        }


_registry: dict[str, MenuItem] = {}


def register_menu_item(item: MenuItem) -> None:
    """Add (or replace, by key) an item. Call it from ``AppConfig.ready()``."""
    _registry[item.key] = item


def unregister_menu_item(key: str) -> None:
    _registry.pop(key, None)


def items_for(user: User, target_kind: str) -> list[MenuItem]:
    """The items a user's menu shows for a kind of target, in order."""
    if target_kind not in TARGET_KINDS:
        raise ValueError(f"Unknown menu target kind {target_kind!r}")
    return sorted(
        (
            item
            for item in _registry.values()
            if target_kind in item.applies_to and item.allowed(user)
        ),
        key=lambda item: (item.order, item.key),
    )


def allowed_items(request: AuthenticatedRequest, kind: str, targets: list[Any]) -> dict[int, str]:
    """For each target of a page (by key), the space-separated keys of the checked items offered
    on it: what ``data-allows`` carries for ``static/js/contextmenu.js``."""
    allowed: dict[int, list[str]] = {target.pk: [] for target in targets}
    if targets:
        for item in items_for(request.user, kind):
            if item.allowed_on is not None:
                for pk in item.allowed_on(request, kind, targets):
                    allowed[pk].append(item.key)
    return {pk: " ".join(keys) for pk, keys in allowed.items()}


@dataclass(frozen=True)
class PageLink:
    """A menu item that is a page of its own ("link" or "dialog"), with what its link on every
    target of a page shares: the label in the page's language and the address without the
    target (``item.url_name``; None for an item that acts on the target's own page)."""

    item: MenuItem
    label: str
    address: str | None


def page_links(items: list[MenuItem]) -> list[PageLink]:
    """The items of ``items`` (:func:`items_for`) that answer a GET with a page of their own (a
    dialog's view renders it whole when not fetched by the dialog script), translated and
    reversed once for all the targets of a page."""
    return [
        PageLink(item, str(item.label), reverse(item.url_name) if item.url_name else None)
        for item in items
        if item.kind in ("link", "dialog")
    ]


def target_links(
    links: list[PageLink], kind: str, target_id: Any, allows: str, *, own_url: str
) -> list[dict[str, str]]:
    """One target's page links (:func:`page_links`) as the real links a page gives it for
    browsers without scripts, at the URLs ``static/js/contextmenu.js`` opens. ``allows`` are the
    target's checked items (:func:`allowed_items`)."""
    offered = set(allows.split())
    query = urlencode({kind: target_id})
    return [
        {
            "key": link.item.key,
            "label": link.label,
            "href": f"{link.address}?{query}" if link.address else own_url,
        }
        for link in links
        if link.item.allowed_on is None or link.item.key in offered
    ]


def menu_for_client(user: User) -> dict[str, list[dict[str, Any]]]:
    """Every kind's items for the page's JSON data island."""
    return {
        kind: [item.as_client() for item in items_for(user, kind)] for kind in sorted(TARGET_KINDS)
    }


OPEN = MenuItem(
    key="open",
    label=_("Open"),
    applies_to={"study", "worklist", "folder"},
    kind="link",
    order=0,
)
COPY_LINK = MenuItem(
    key="copy_link",
    label=_("Copy Link"),
    applies_to={"study", "worklist", "folder"},
    kind="copy",
    order=50,
)


def organizable_targets(request: AuthenticatedRequest, kind: str, targets: list[Any]) -> set[int]:
    """The worklists and folders whose folders the user may organize, and the studies held in
    such a worklist (``studies.access.organizable_worklist_ids``) by an entry that reaches them:
    where the directory lets the row be dragged to a folder too."""
    ids = organizable_worklist_ids(request.user)
    if kind == "worklist":
        return {worklist.pk for worklist in targets if worklist.pk in ids}
    if kind == "folder":
        return {folder.pk for folder in targets if folder.worklist_id in ids}
    return {
        study_id
        for study_id, entries in entries_reaching(request.user, targets).items()
        if any(entry.worklist_id in ids for entry in entries)
    }


# Folders: offered where the user may organize them; the views ask again.
FOLDER_ITEMS = [
    MenuItem(
        key="new_folder",
        label=_("New folder…"),
        applies_to={"worklist", "folder"},
        url_name="studies:folder_new",
        kind="dialog",
        order=60,
        allowed_on=organizable_targets,
    ),
    MenuItem(
        key="rename_folder",
        label=_("Rename folder…"),
        applies_to={"folder"},
        url_name="studies:folder_rename",
        kind="dialog",
        order=61,
        allowed_on=organizable_targets,
    ),
    MenuItem(
        key="move_folder",
        label=_("Move folder…"),
        applies_to={"folder"},
        url_name="studies:folder_move",
        kind="dialog",
        order=62,
        allowed_on=organizable_targets,
    ),
    MenuItem(
        key="delete_folder",
        label=_("Delete folder…"),
        applies_to={"folder"},
        url_name="studies:folder_delete",
        kind="dialog",
        order=63,
        allowed_on=organizable_targets,
    ),
    MenuItem(
        key="file_studies",
        label=_("Move to folder…"),
        applies_to={"study"},
        url_name="studies:folder_file",
        kind="dialog",
        order=60,
        multiple=True,
        allowed_on=organizable_targets,
    ),
]

register_menu_item(OPEN)
register_menu_item(COPY_LINK)
for _item in FOLDER_ITEMS:
    register_menu_item(_item)
