from django.db import transaction

from accounts.models import Group, Location, User
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


@transaction.atomic
def file_received_study(*, study: Study, location: Location | None, added_by=None) -> Entry | None:
    """Put a newly received study in the worklist of the location it arrived at (once)."""
    if location is None:
        return None
    worklist = location_worklist(location)
    entry = Entry.objects.filter(
        worklist=worklist, study=study, origin=EntryOrigin.INGESTION
    ).first()
    if entry is None:
        entry = Entry.objects.create(
            worklist=worklist, study=study, origin=EntryOrigin.INGESTION, added_by=added_by
        )
    return entry
