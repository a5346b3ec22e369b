"""What a share gives each recipient: entries in the recipient's worklist that carry the share's
terms and end with the share's last day, so access ends with the share and needs no job.

``shares`` grants them when a share is made, ``invitations`` when an email recipient registers;
both import from here, never from each other for this.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time

from django.utils import timezone

from portal import decisions
from sharing.models import ShareRecipient
from studies.models import Entry, EntryOrigin, Study


def end_of_day(day: date) -> datetime:
    """Access lasts through the whole of the "valid till" day, in the portal's time zone."""
    return timezone.make_aware(datetime.combine(day, time.max))


def grant_entries(
    recipient: ShareRecipient, studies: Sequence[Study], *, seen: set[tuple[int, int]] | None = None
) -> list[Entry]:
    """Put the studies in the recipient's worklist as entries carrying the share's terms, and
    link them to the recipient (so removing the share ends exactly these). ``seen`` skips a
    study already granted to the same worklist by another recipient of the same share."""
    worklist_id = recipient.worklist_id
    if worklist_id is None:
        raise ValueError(f"Share recipient {recipient.pk} has no worklist yet (pending).")
    share = recipient.share
    seen = set() if seen is None else seen
    until = end_of_day(share.valid_until) if share.valid_until is not None else None
    entries = []
    for study in studies:
        if (study.pk, worklist_id) in seen:
            continue
        seen.add((study.pk, worklist_id))
        entries.append(
            Entry(
                worklist_id=worklist_id,
                study=study,
                origin=EntryOrigin.SHARE,
                added_by_id=share.sender_id,
                level=share.level,
                anonymized=share.anonymize,
                can_share=share.allow_further_sharing,
                two_factor_required=share.two_factor,
                valid_until=until,
                label=share.label,
                label_scope=share.label_scope,
                message=share.message,
            )
        )
    created = Entry.objects.bulk_create(entries)
    decisions.changed()  # bulk_create sends no post_save
    recipient.entries.add(*created)
    return created
