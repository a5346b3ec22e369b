"""The sender's favorite recipients (PACSonWEB: the star in the Share dialog).

A favorite is a user, group or location the owner could share with: the same reachability and
permissions as a share's recipient (``sharing.selectors``). In the dialog a star takes effect
only once the share is done: ``share_studies`` calls :func:`star_targets` in its transaction
with recipients it has already checked. The REST API adds and removes favorites directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from accounts.models import Group, Location, User
from sharing.models import Favorite, FavoriteKind
from sharing.selectors import recipient_by_id, searchable_kinds

# Keyed by the kinds' values: the API names a kind as text.
_FIELD_OF_KIND: dict[str, str] = {
    FavoriteKind.USER: "user",
    FavoriteKind.GROUP: "group",
    FavoriteKind.LOCATION: "location",
}


def _kind_of(target: User | Group | Location) -> str:
    if isinstance(target, User):
        return FavoriteKind.USER
    if isinstance(target, Group):
        return FavoriteKind.GROUP
    return FavoriteKind.LOCATION


def star_targets(*, owner: User, targets: Sequence[User | Group | Location]) -> None:
    """Make already-checked recipients the owner's favorites (kept if they already are).
    Called inside the caller's transaction."""
    rows = [
        Favorite(owner=owner, kind=_kind_of(target), **{_FIELD_OF_KIND[_kind_of(target)]: target})
        for target in targets
    ]
    if rows:
        # A favorite starred twice (or by two shares at once) stays one row.
        Favorite.objects.bulk_create(rows, ignore_conflicts=True)


def add_favorite(*, owner: User, kind: str, target_id: int) -> tuple[Favorite, bool]:
    """Star a user, group or location the owner could share with. Returns the favorite and
    whether it is new. Raises PermissionDenied when the owner may not share with that kind at
    all, ValidationError when there is no such recipient for them (unknown or unreachable
    alike)."""
    if kind not in _FIELD_OF_KIND:
        raise ValidationError({"kind": [_("Choose a user, a group or a location.")]})
    if kind not in searchable_kinds(owner):
        raise PermissionDenied(
            _("Your role does not allow sharing with: %(kind)s.")
            % {"kind": FavoriteKind(kind).label}
        )
    if recipient_by_id(owner, kind, target_id) is None:
        raise ValidationError({kind: [_("No such recipient.")]})
    field = _FIELD_OF_KIND[kind]
    existing = Favorite.objects.filter(owner=owner, kind=kind, **{f"{field}_id": target_id}).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic(durable=True):
            favorite = Favorite.objects.create(owner=owner, kind=kind, **{f"{field}_id": target_id})
    except IntegrityError:
        # Starred at the same moment elsewhere: the other request made it.
        return Favorite.objects.get(owner=owner, kind=kind, **{f"{field}_id": target_id}), False
    return favorite, True


def remove_favorite(*, owner: User, favorite: Favorite) -> None:
    if favorite.owner_id != owner.pk:
        raise PermissionDenied(_("This is not one of your favorites."))
    favorite.delete()
