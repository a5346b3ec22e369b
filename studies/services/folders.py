"""Folders in a worklist (OptosAdvance's folders): made, renamed, nested and deleted by those
whose role allows it (:func:`studies.access.may_organize_folders`), and studies filed in them.

A folder only arranges shortcuts: filing a study moves the worklist's entry for it, deleting a
folder puts its studies back at the worklist's top level (and deletes its subfolders the same
way), and no change here gives or takes access to a study. Each change is one transaction with
its audit event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.permissions import Perm
from audit.models import Action
from audit.services import record, record_many
from portal import decisions
from studies.access import may_organize_folders
from studies.models import Entry, Folder, Study, Worklist
from studies.selectors import folder_ancestry, folder_and_descendants, folder_children

# A CharField, whose max_length is always set.
NAME_MAX_LENGTH = cast(int, Folder._meta.get_field("name").max_length)
# Deeper trees stop being a help in a side panel; ten levels is more than any manual shows.
MAX_DEPTH = 10


class FolderError(ValueError):
    """A change the user can correct; the message says how."""


class FolderPermissionDenied(PermissionDenied):
    """The user's role does not allow organizing folders in this worklist. The message names
    the permission as the role editor shows it, so an administrator knows what to grant."""

    def __init__(self, worklist: Worklist):
        super().__init__(
            _(
                "Your role does not include “%(permission)s” for the worklist “%(worklist)s”. "
                "Ask your organization's administrator to grant it."
            )
            % {"permission": Perm.ORGANIZE_FOLDERS.label, "worklist": worklist.name}
        )


@dataclass(frozen=True)
class DeletedFolder:
    name: str
    subfolders: int
    studies_unfiled: int


def _require_organizer(user: User, worklist: Worklist) -> None:
    if not may_organize_folders(user, worklist):
        raise FolderPermissionDenied(worklist)


def clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise FolderError(_("Give the folder a name."))
    if len(name) > NAME_MAX_LENGTH:
        raise FolderError(
            _("A folder name has at most %(max)d characters.") % {"max": NAME_MAX_LENGTH}
        )
    return name


def _check_unique(worklist: Worklist, parent: Folder | None, name: str, *, exclude=None) -> None:
    siblings = Folder.objects.filter(worklist=worklist, parent=parent, name__iexact=name)
    if exclude is not None:
        siblings = siblings.exclude(pk=exclude.pk)
    if siblings.exists():
        raise FolderError(
            _("“%(name)s” already exists here: choose another name.") % {"name": name}
        )


def _subtree_height(folder: Folder) -> int:
    """Levels from the folder down to its deepest subfolder (1 for a folder without any)."""
    children = folder_children(folder.worklist_id)

    def height(pk: int) -> int:
        return 1 + max((height(child) for child in children[pk]), default=0)

    return height(folder.pk)


def _check_parent(worklist: Worklist, parent: Folder | None, *, levels: int = 1) -> None:
    if parent is None:
        return
    if parent.worklist_id != worklist.pk:
        raise FolderError(_("That folder belongs to another worklist."))
    if len(folder_ancestry(parent)) + levels > MAX_DEPTH:
        raise FolderError(_("Folders nest at most %(max)d levels deep.") % {"max": MAX_DEPTH})


def _audit(action: str, *, user: User, folder: Folder, request, **details) -> None:
    record(
        action=action,
        actor=user,
        request=request,
        organization_id=folder.worklist.organization_id,
        target_type="folder",
        target_id=folder.pk,
        details={"worklist": folder.worklist_id, "folder": folder.name, **details},
    )


@transaction.atomic(durable=True)
def create_folder(
    *,
    user: User,
    worklist: Worklist,
    name: str,
    parent: Folder | None = None,
    request: HttpRequest | None = None,
) -> Folder:
    _require_organizer(user, worklist)
    name = clean_name(name)
    _check_parent(worklist, parent)
    _check_unique(worklist, parent, name)
    folder = Folder.objects.create(worklist=worklist, parent=parent, name=name)
    _audit(
        Action.FOLDER_CREATED,
        user=user,
        folder=folder,
        request=request,
        parent=parent.pk if parent else None,
    )
    return folder


@transaction.atomic(durable=True)
def rename_folder(
    *, user: User, folder: Folder, name: str, request: HttpRequest | None = None
) -> Folder:
    return _rename(user=user, folder=folder, name=name, request=request)


@transaction.atomic(durable=True)
def move_folder(
    *,
    user: User,
    folder: Folder,
    parent: Folder | None,
    request: HttpRequest | None = None,
) -> Folder:
    """Nest a folder in another of the same worklist, or bring it to the top level."""
    return _move(user=user, folder=folder, parent=parent, request=request)


class _Unchanged:
    """The folder keeps its parent (None means the top level)."""


UNCHANGED = _Unchanged()


@transaction.atomic(durable=True)
def change_folder(
    *,
    user: User,
    folder: Folder,
    name: str | None = None,
    parent: Folder | _Unchanged | None = UNCHANGED,
    request: HttpRequest | None = None,
) -> Folder:
    """Move and rename a folder as one action: both or neither, so a name refused after a move
    does not leave the move done."""
    if not isinstance(parent, _Unchanged):
        _move(user=user, folder=folder, parent=parent, request=request)
    if name is not None:
        _rename(user=user, folder=folder, name=name, request=request)
    return folder


def _rename(*, user: User, folder: Folder, name: str, request: HttpRequest | None) -> Folder:
    _require_organizer(user, folder.worklist)
    name = clean_name(name)
    if name == folder.name:
        return folder
    _check_unique(folder.worklist, folder.parent, name, exclude=folder)
    previous = folder.name
    folder.name = name
    folder.save(update_fields=["name"])
    _audit(Action.FOLDER_RENAMED, user=user, folder=folder, request=request, previous=previous)
    return folder


def _move(
    *, user: User, folder: Folder, parent: Folder | None, request: HttpRequest | None
) -> Folder:
    _require_organizer(user, folder.worklist)
    if parent is not None and parent.pk in set(folder_and_descendants(folder)):
        raise FolderError(_("A folder cannot go inside itself or one of its own subfolders."))
    if (parent.pk if parent else None) == folder.parent_id:
        return folder
    _check_parent(folder.worklist, parent, levels=_subtree_height(folder))
    _check_unique(folder.worklist, parent, folder.name, exclude=folder)
    previous = folder.parent_id
    folder.parent = parent
    folder.save(update_fields=["parent"])
    _audit(
        Action.FOLDER_MOVED,
        user=user,
        folder=folder,
        request=request,
        parent=parent.pk if parent else None,
        previous_parent=previous,
    )
    return folder


def deletion_summary(folder: Folder) -> DeletedFolder:
    """What deleting the folder would do: shown before the user confirms."""
    ids = set(folder_and_descendants(folder))
    return DeletedFolder(
        name=folder.name,
        subfolders=len(ids) - 1,
        studies_unfiled=Entry.objects.filter(folder_id__in=ids).count(),
    )


@transaction.atomic(durable=True)
def delete_folder(
    *, user: User, folder: Folder, request: HttpRequest | None = None
) -> DeletedFolder:
    """Delete the folder and its subfolders; their studies stay in the worklist, unfiled."""
    _require_organizer(user, folder.worklist)
    summary = deletion_summary(folder)
    ids = set(folder_and_descendants(folder))
    Entry.objects.filter(folder_id__in=ids).update(folder=None)
    decisions.changed()  # an update sends no post_save: remembered folder lists must go
    _audit(
        Action.FOLDER_DELETED,
        user=user,
        folder=folder,
        request=request,
        subfolders=summary.subfolders,
        studies_unfiled=summary.studies_unfiled,
    )
    folder.delete()
    return summary


@transaction.atomic(durable=True)
def file_studies(
    *,
    user: User,
    worklist: Worklist,
    studies: list[Study],
    folder: Folder | None,
    request: HttpRequest | None = None,
) -> int:
    """File the worklist's entries for these studies in ``folder`` (``None``: take them out of
    any folder, back to the worklist's top level). Answers how many studies moved; studies the
    worklist does not hold are left alone."""
    _require_organizer(user, worklist)
    if folder is not None and folder.worklist_id != worklist.pk:
        raise FolderError(_("That folder belongs to another worklist."))
    target = folder.pk if folder else None
    entries = (
        Entry.objects.select_related("study__patient")
        .filter(worklist=worklist, study__in=studies, removed_at__isnull=True)
        .exclude(folder=folder)
        .order_by("pk")
    )
    moved = list(entries)
    if not moved:
        return 0
    Entry.objects.filter(pk__in=[e.pk for e in moved]).update(folder_id=target)
    decisions.changed()  # an update sends no post_save: remembered folder lists must go
    record_many(
        {
            "action": Action.STUDIES_FILED,
            "actor": user,
            "request": request,
            "organization_id": worklist.organization_id,
            "study": entry.study,
            "details": {
                "worklist": worklist.pk,
                "folder": folder.name if folder else None,
                "previous_folder": entry.folder_id,
            },
        }
        for entry in moved
    )
    return len({entry.study_id for entry in moved})
