from django.db import transaction

from accounts.models import Group, Location, User
from portal import decisions
from studies.models import Entry, EntryOrigin, Study, Worklist, WorklistKind


def location_worklist(location: Location) -> Worklist:
    """The location's worklist, made the first time it is needed."""
    worklist, _ = Worklist.objects.get_or_create(
        location=location,
        defaults={
            "kind": WorklistKind.LOCATION,
            "organization_id": location.organization_id,
            "name": location.name,
        },
    )
    return worklist


def group_worklist(group: Group) -> Worklist:
    worklist, _ = Worklist.objects.get_or_create(
        group=group,
        defaults={
            "kind": WorklistKind.GROUP,
            "organization_id": group.organization_id,
            "name": group.name,
        },
    )
    return worklist


def personal_worklist(user: User) -> Worklist:
    worklist, _ = Worklist.objects.get_or_create(
        owner=user, defaults={"kind": WorklistKind.PERSONAL, "name": "My worklist"}
    )
    return worklist


def file_received_studies(
    studies: list[Study], *, location: Location | None, added_by=None
) -> list[Entry]:
    """Put studies received just now in the worklist of the location they arrived at: their
    entries, in order. The caller created the studies in its transaction, so none has an entry
    yet, and none is looked for."""
    if location is None or not studies:
        # Before the transaction: most chunks of a series bring no new study.
        return []
    # Part of the caller's transaction, without a savepoint of its own (two round trips): a
    # failure here fails the filing of the studies too.
    with transaction.atomic(savepoint=False):
        worklist = location_worklist(location)
        entries = Entry.objects.bulk_create(
            [
                Entry(
                    worklist=worklist, study=study, origin=EntryOrigin.INGESTION, added_by=added_by
                )
                for study in studies
            ]
        )
        # Rows written in bulk send no signals: forget remembered answers, as a save would.
        decisions.changed()
    return entries
