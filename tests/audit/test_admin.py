"""The audit trail in the Django admin: anyone allowed in may read it, nobody may change it, each
page read is itself audited, and the chain can be verified from there."""

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.urls import reverse

from accounts.models import User
from audit.models import Action, AuditEvent, ChainHead
from tests.audit.helpers import drop_triggers, raw_execute

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:audit_auditevent_changelist"
VERIFY = "admin:audit_auditevent_verify"


def change_url(event) -> str:
    return reverse("admin:audit_auditevent_change", args=[event.pk])


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.org", "correct-horse-battery")


def reads_by(user) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(action=Action.AUDIT_READ, actor_id=user.pk).order_by("id")
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- Reading ---------------------------------------------------------------------------------


def test_organization_admin_reads_their_organizations_trail_and_the_read_is_recorded_once(
    trail, dana, verified_client
):
    client = verified_client(dana)

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    listed = {event.pk for event in response.context["cl"].result_list}
    org_events = {trail[i].pk for i in (0, 1, 2, 5, 6)}
    assert org_events <= listed
    assert trail[3].pk not in listed  # failed login of nobody in particular
    assert trail[4].pk not in listed  # carol, at Riverside
    reads = reads_by(dana)
    assert len(reads) == 1, "one read per page, not one per row"
    assert reads[0].event_code == "110101"
    assert reads[0].details == {"via": "admin", "view": "list", "filters": {}}
    assert reads[0].organization_id == trail[0].organization_id


def test_superuser_reads_the_whole_trail(trail, root, verified_client):
    response = verified_client(root).get(reverse(CHANGELIST))
    listed = {event.pk for event in response.context["cl"].result_list}
    assert {event.pk for event in trail} <= listed


def test_list_shows_the_columns_an_auditor_needs_and_no_bulk_actions(trail, root, verified_client):
    response = verified_client(root).get(reverse(CHANGELIST))
    content = response.content.decode()

    for header in (
        "column-when",
        "column-actor_label",
        "column-action",
        "column-outcome",
        "column-event_code",
        "column-study",
        "column-ip",
    ):
        assert header in content
    assert 'name="action"' not in content  # no actions bar, so no "delete selected"
    assert "action-checkbox" not in content
    assert reverse("admin:audit_auditevent_add") not in content
    assert "Verify chain" in content
    assert response.context["cl"].date_hierarchy == "at"


def test_filters_and_search_narrow_the_list(trail, root, verified_client):
    client = verified_client(root)
    study_uid = trail[1].study_uid

    def listed(**params):
        response = client.get(reverse(CHANGELIST), params)
        assert response.status_code == 200
        return {event.pk for event in response.context["cl"].result_list}

    assert listed(action__exact="login") == {trail[0].pk, trail[4].pk}
    assert listed(outcome__exact="4") == {trail[3].pk}
    assert listed(event_code="110106") == {trail[2].pk}
    assert listed(q=study_uid) == {trail[1].pk, trail[2].pk, trail[5].pk}
    assert listed(q="P-0001") == {trail[1].pk, trail[2].pk, trail[5].pk}
    assert trail[4].pk in listed(q="caro")
    # The search terms are part of the recorded read.
    assert {"q": "caro"} in [read.details["filters"] for read in reads_by(root)]


def test_event_detail_shows_details_pretty_printed_and_is_recorded(trail, root, verified_client):
    client = verified_client(root)
    failed_login = trail[3]

    response = client.get(change_url(failed_login))

    assert response.status_code == 200
    content = response.content.decode()
    assert "<pre>{\n  &quot;password&quot;: &quot;[redacted]&quot;,\n  &quot;username&quot;" in (
        content
    )
    assert "guess123" not in content
    assert 'name="_save"' not in content
    read = reads_by(root)[-1]
    assert read.details == {"via": "admin", "view": "event", "event": str(failed_login.pk)}
    assert read.target_type == "audit_trail"


def test_organization_admin_cannot_open_another_organizations_event(trail, dana, verified_client):
    response = verified_client(dana).get(change_url(trail[4]))
    assert response.status_code == 302  # Django's "does not exist", back to the index
    assert not [read for read in reads_by(dana) if read.details.get("view") == "event"]


# --- Nobody writes ---------------------------------------------------------------------------


def test_not_even_a_superuser_may_add_change_or_delete(trail, root, verified_client):
    client = verified_client(root)
    event = trail[0]

    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert client.post(change_url(event), {"actor_label": "mallory"}).status_code == 403
    delete_url = reverse("admin:audit_auditevent_delete", args=[event.pk])
    assert client.get(delete_url).status_code == 403
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    bulk = client.post(
        reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": [event.pk]}
    )
    assert bulk.status_code in (200, 302)
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "alice"
    assert AuditEvent.objects.filter(pk__in=[e.pk for e in trail]).count() == len(trail)


def test_chain_head_is_not_in_the_admin():
    assert not admin.site.is_registered(ChainHead)


# --- Who gets in -----------------------------------------------------------------------------


def test_clinician_without_staff_status_is_sent_to_log_in(trail, alice, browser):
    client = browser
    client.force_login(alice)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302
    assert not reads_by(alice)


def test_staff_member_who_administers_nothing_is_refused(trail, bob, verified_client):
    bob.is_staff = True
    bob.save(update_fields=["is_staff"])
    response = verified_client(bob).get(reverse(CHANGELIST))
    assert response.status_code == 403
    assert not reads_by(bob)


# --- Verify chain ----------------------------------------------------------------------------


def test_verify_chain_from_the_admin(trail, dana, verified_client):
    client = verified_client(dana)

    assert client.get(reverse(VERIFY)).status_code == 405
    response = client.post(reverse(VERIFY))

    assert response.status_code == 302
    assert response["Location"] == reverse(CHANGELIST)
    assert messages_of(response) == [f"Audit chain intact: {len(trail)} events verified."]
    attestation = AuditEvent.objects.latest("id")
    assert attestation.action == Action.AUDIT_VERIFIED
    assert attestation.actor_id == dana.pk
    assert attestation.details == {"count": len(trail)}


def test_verify_chain_reports_tampering_in_the_admin(trail, root, verified_client):
    drop_triggers()
    raw_execute("DELETE FROM audit_auditevent WHERE id = %s", [trail[2].pk])

    response = verified_client(root).post(reverse(VERIFY))

    shown = messages_of(response)
    assert shown[0].startswith("Audit chain broken: 2 problems found in 6 events.")
    # The next event of the same organization's chain misses its predecessor.
    assert shown[1].startswith(f"event #{trail[5].pk}: event missing")
    assert shown[2].startswith("head mismatch")
    assert not AuditEvent.objects.filter(action=Action.AUDIT_VERIFIED).exists()


def test_verify_chain_needs_staff(trail, alice, browser):
    client = browser
    client.force_login(alice)
    response = client.post(reverse(VERIFY))
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(action=Action.AUDIT_VERIFIED).exists()
