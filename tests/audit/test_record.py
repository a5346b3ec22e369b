"""``audit.services.record``: what an event holds, that secrets never reach it, that its hash
can be recomputed from the stored row on either database, and that an action whose event cannot
be written does not happen at all."""

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, transaction
from django.test import RequestFactory

from accounts.models import Location
from audit.codes import codes_for
from audit.models import NO_ORGANIZATION_CHAIN, Action, AuditEvent, ChainHead
from audit.selectors import verify_chain
from audit.services import (
    ANONYMOUS_RECIPIENT,
    event_mac,
    hashed_fields,
    record,
    record_many,
    redact,
)
from audit.signing import current_key

# --- Secrets ---------------------------------------------------------------------------------


def test_redact_masks_secrets_at_any_depth():
    details = {
        "username": "alice",
        "password": "correct-horse-battery",
        "link": {"token": "s3cr3t", "uses_left": 2, "sms": {"code": "123456"}},
        "attempts": [{"otp_token": "654321", "ok": False}, {"PIN": "0000"}],
        "api_secret": "abc",
        "passcode": "1234",
    }
    assert redact(details) == {
        "username": "alice",
        "password": "[redacted]",
        "link": {"token": "[redacted]", "uses_left": 2, "sms": {"code": "[redacted]"}},
        "attempts": [{"otp_token": "[redacted]", "ok": False}, {"PIN": "[redacted]"}],
        "api_secret": "[redacted]",
        "passcode": "[redacted]",
    }


@pytest.mark.django_db
def test_secrets_given_to_record_are_never_stored(alice):
    record(
        action=Action.LOGIN_FAILED,
        actor=alice,
        details={"password": "hunter2-hunter2", "second_factor": {"code": "918273"}},
    )
    stored = AuditEvent.objects.values_list("details", flat=True).get()
    assert "hunter2" not in json.dumps(stored)
    assert "918273" not in json.dumps(stored)
    assert stored == {"password": "[redacted]", "second_factor": {"code": "[redacted]"}}


# --- DICOM codes -----------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(Action))
def test_every_action_has_a_dicom_event_code(action):
    event_id, event_type = codes_for(action)
    assert event_id.startswith("1101") and len(event_id) == 6
    assert event_type == "" or event_type.startswith("1101")


def test_an_action_without_a_code_is_refused():
    with pytest.raises(ValueError, match="no DICOM event code"):
        codes_for("made_up")


# --- What an event holds ---------------------------------------------------------------------


@pytest.mark.django_db
def test_event_names_who_did_what_from_where(alice, org):
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.17")
    request.user = alice
    event = record(action=Action.LOGIN, request=request, organization_id=org.pk)

    event = AuditEvent.objects.get(pk=event.pk)
    assert (event.actor_id, event.actor_label, event.ip) == (alice.pk, "alice", "192.0.2.17")
    assert (event.event_code, event.event_type_code) == ("110114", "110122")
    assert event.organization_id == org.pk


@pytest.mark.django_db
def test_event_without_actor_is_by_an_anonymous_recipient():
    event = record(action=Action.STUDY_VIEWED)
    assert event.actor_id is None
    assert event.actor_label == ANONYMOUS_RECIPIENT


@pytest.mark.django_db
def test_times_never_go_backwards_along_the_chain(alice):
    events = [record(action=Action.FRAMES_RENDERED, actor=alice) for _ in range(20)]
    times = list(AuditEvent.objects.order_by("id").values_list("at", flat=True))
    assert times == sorted(times)
    assert len(times) == len(events)


# --- Hashes that survive the database --------------------------------------------------------


@pytest.mark.django_db
def test_hash_recomputes_from_the_stored_row_whatever_the_details_hold(alice):
    """PostgreSQL's jsonb and inet rewrite values (1e16 comes back as 10000000000000000, -0.0 as
    0.0, 2001:0DB8::0001 as 2001:db8::1); SQLite gives back what it was given. The hash must
    verify on both."""
    request = RequestFactory().get("/", REMOTE_ADDR="2001:0DB8:0000::0001")
    request.user = alice
    details = {
        "large": 1e16,
        "larger": 1.2345e20,
        "tiny": 1.5e-7,
        "negative_zero": -0.0,
        "ratio": 0.1,
        "count": 3,
        "big_int": 12345678901234567890,
        7: "integer key",
        "tuple": (1, "two"),
        "when": datetime(2024, 5, 17, 8, 30, tzinfo=UTC),
        "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "dose": Decimal("1.50"),
        "name": "Zoë Ångström — 患者",
        "nested": {"b": [1.0, {"c": None}], "a": True},
    }
    event = record(action=Action.STUDY_DOWNLOADED, request=request, details=details)

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.ip == "2001:db8::1"
    assert stored.details["7"] == "integer key"
    assert stored.details["when"] == "2024-05-17T08:30:00Z"
    assert stored.key_id == current_key().id
    assert event_mac(hashed_fields(stored), stored.prev_hash, current_key()) == stored.hash
    assert verify_chain().ok


@pytest.mark.django_db
def test_ipv4_mapped_address_is_stored_as_the_ipv4_client():
    request = RequestFactory().get("/", REMOTE_ADDR="::ffff:198.51.100.7")
    request.user = AnonymousUser()
    event = record(action=Action.LOGIN_FAILED, request=request, actor_label="unknown user")
    assert AuditEvent.objects.get(pk=event.pk).ip == "198.51.100.7"
    assert verify_chain().ok


@pytest.mark.django_db
def test_numbers_json_cannot_carry_are_refused_on_every_database():
    with pytest.raises(ValueError):
        record(action=Action.STUDY_VIEWED, details={"ratio": float("nan")})
    assert not AuditEvent.objects.exists()


# --- Fail closed -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_action_whose_event_cannot_be_written_is_rolled_back(org, alice, monkeypatch):
    """An administrator adds a location; the audit write fails (disk full, lost connection): the
    location must not exist without its event."""
    chain = ChainHead.objects.filter(chain=NO_ORGANIZATION_CHAIN)
    before = chain.values_list("last_hash", "count").first()

    def disk_full(self, *args, **kwargs):
        raise DatabaseError("could not extend file: No space left on device")

    monkeypatch.setattr(AuditEvent, "save", disk_full)
    with pytest.raises(DatabaseError), transaction.atomic():
        location = Location.objects.create(organization=org, name="Cardiology")
        record(
            action=Action.REPORT_CHANGED, actor=alice, target_type="location", target_id=location.pk
        )

    assert not Location.objects.filter(name="Cardiology").exists()
    assert chain.values_list("last_hash", "count").first() == before
    monkeypatch.undo()
    assert not AuditEvent.objects.exists()
    assert verify_chain().ok


# --- Several events at once -------------------------------------------------------------------


def test_events_appended_together_chain_as_if_appended_one_by_one(alice, org, other_org):
    record(action=Action.LOGIN, actor=alice)  # the chain of no organization has a head already
    events = record_many(
        [
            {
                "action": Action.STUDY_UPLOADED,
                "actor": alice,
                "organization_id": org.pk,
                "target_type": "study",
                "target_id": f"1.2.3.{n}",
                "details": {"stored": n},
            }
            for n in range(3)
        ]
        + [
            {
                "action": Action.UPLOAD_REJECTED,
                "actor_label": "PACS",
                "organization_id": other_org.pk,
                "details": {"file": "bad.dcm", "password": "hunter2"},
            },
            {"action": Action.LOGIN, "actor": alice},
        ]
    )

    stored = {event.pk: event for event in AuditEvent.objects.all()}
    assert [stored[event.pk].hash for event in events] == [event.hash for event in events]
    ours = [event for event in events if event.organization_id == org.pk]
    assert [event.target_id for event in ours] == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]
    # In the order given, each onto the one before it, later in time and by id.
    assert [e.prev_hash for e in ours[1:]] == [e.hash for e in ours[:-1]]
    assert [e.pk for e in ours] == sorted(e.pk for e in ours)
    assert [e.at for e in ours] == sorted(e.at for e in ours)
    assert stored[events[3].pk].details == {"file": "bad.dcm", "password": "[redacted]"}
    heads = {head.chain: head for head in ChainHead.objects.all()}
    assert (heads[org.pk].last_hash, heads[org.pk].count) == (ours[-1].hash, 3)
    assert (heads[other_org.pk].last_hash, heads[other_org.pk].count) == (events[3].hash, 1)
    assert heads[NO_ORGANIZATION_CHAIN].count == 2
    result = verify_chain()
    assert result.ok, [str(b) for b in result.breaks]
    assert result.count == 6
    assert record_many([]) == []


def test_events_appended_together_are_written_with_the_action_or_not_at_all(alice, org):
    record(action=Action.LOGIN, actor=alice, organization_id=org.pk)
    with pytest.raises(RuntimeError), transaction.atomic():
        record_many(
            [{"action": Action.STUDY_UPLOADED, "actor": alice, "organization_id": org.pk}] * 4
        )
        raise RuntimeError("the batch fails after its events were appended")
    assert AuditEvent.objects.count() == 1
    assert ChainHead.objects.get(chain=org.pk).count == 1
    assert verify_chain().ok
