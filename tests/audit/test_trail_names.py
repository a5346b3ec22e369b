"""The audit trail in the admin names a study by its patient, description and date to a reader
the access authority lets see it (the pseudonym where that access is anonymized), keeps the UID
for everyone else, and shows every time with its zone."""

import re

import pytest
from django.urls import reverse

from audit.models import Action, AuditEvent
from audit.services import record
from tests.factories import make_study, share_entry

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:audit_auditevent_changelist"


@pytest.fixture
def root(db):
    from accounts.models import User

    return User.objects.create_superuser("root", "root@example.org", "correct-horse-battery")


@pytest.fixture
def viewed(org, location, alice):
    study = make_study(
        org, location=location, family_name="Peeters", given_name="Anna", description="CT Thorax"
    )
    record(action=Action.STUDY_VIEWED, actor=alice, study=study)
    return study


def test_an_administrator_reads_who_and_what_not_a_cut_off_uid(viewed, dana, verified_client):
    page = verified_client(dana).get(reverse(CHANGELIST)).content.decode()
    assert "Peeters" in page
    assert "CT Thorax" in page and "17 May 2024" in page
    assert viewed.study_uid in page  # still there, under the name

    event = AuditEvent.objects.get(action=Action.STUDY_VIEWED)
    detail = (
        verified_client(dana)
        .get(reverse("admin:audit_auditevent_change", args=[event.pk]))
        .content.decode()
    )
    assert "CT Thorax" in detail


def test_a_reader_who_may_not_see_the_study_gets_the_uid_only(viewed, root, verified_client):
    """An installation's superuser reads the whole trail, but holds no access to the patient:
    the trail does not become a way round the access authority."""
    page = verified_client(root).get(reverse(CHANGELIST)).content.decode()
    assert viewed.study_uid in page
    assert "Peeters" not in page and "CT Thorax" not in page


def test_an_anonymized_share_names_the_pseudonym(viewed, carol, dana):
    from audit.selectors import study_labels
    from studies.anonymize import pseudonym

    share_entry(carol, viewed, anonymized=True)
    label = study_labels(carol, [viewed.study_uid])[viewed.study_uid]
    assert pseudonym(viewed).display_name in label
    assert "Peeters" not in label
    assert "Peeters" in study_labels(dana, [viewed.study_uid])[viewed.study_uid]


def test_times_carry_their_zone(viewed, dana, verified_client, settings):
    page = verified_client(dana).get(reverse(CHANGELIST)).content.decode()
    # "2026-12-04 09:15:02 CET (+0100)": the zone's name and its offset from UTC.
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]{2,5} \([+-]\d{4}\)", page)
