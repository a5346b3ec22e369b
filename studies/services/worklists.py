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
    """Put newly received studies in the worklist of the location they arrived at (once each):
    their entries, in order."""
    if location is None or not studies:
        # Before the transaction: most chunks of a series bring no new study, and an empty
        # savepoint still costs two round trips.
        return []
    with transaction.atomic():
        worklist = location_worklist(location)
        entries = {
            entry.study_id: entry
            for entry in Entry.objects.filter(
                worklist=worklist, study__in=studies, origin=EntryOrigin.INGESTION
            )
        }
        new = [
            Entry(worklist=worklist, study=study, origin=EntryOrigin.INGESTION, added_by=added_by)
            for study in studies
            if study.pk not in entries
        ]
        if new:
            Entry.objects.bulk_create(new)
            # Rows written in bulk send no signals: forget remembered answers, as a save would.
            decisions.changed()
    entries.update((entry.study_id, entry) for entry in new)
    return [entries[study.pk] for study in studies]
