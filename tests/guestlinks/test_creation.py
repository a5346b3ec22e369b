"""The sender's services: alice sends links to Jane Doe's CT with every option of the Send Link
dialog; the organization's policy, the acknowledgement and the bounds are enforced by the service
itself; dana (an administrator) revokes; the trash can deletes; the study's list shows each link
with its address again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from accounts.models import Membership, Role
from accounts.permissions import Perm
from audit.models import Action, AuditEvent
from guestlinks.forms import SendLinkForm
from guestlinks.models import GuestLink, LinkState, TargetKind
from guestlinks.passwords import check_link_password
from guestlinks.selectors import LinkTarget, links_for_study
from guestlinks.services.creation import OPTION_POLICIES, LinkOptions, create_link
from guestlinks.services.ending import delete_link, revoke_link
from guestlinks.tokens import digest_for
from notifications.models import Channel, Message
from studies.models import Folder
from studies.services.worklists import group_worklist, location_worklist
from tests.conftest import make_user
from tests.factories import make_study

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


def send(sender, study, *, acknowledged=True, **options):
    return create_link(
        sender=sender,
        target=LinkTarget(study=study),
        options=LinkOptions(**options),
        acknowledged=acknowledged,
    )


def errors_of(excinfo) -> dict[str, list[str]]:
    return excinfo.value.message_dict


def audit_text() -> str:
    return json.dumps(list(AuditEvent.objects.values("details", "target_id", "study_uid")))


def messages_text() -> str:
    return json.dumps(
        list(Message.objects.values("subject", "body_text", "body_html", "context")),
        default=str,
    )


# --- A plain link --------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_alice_creates_a_link_that_expires_after_the_default_week(alice, study):
    created = send(alice, study)

    link = created.link
    assert created.url == f"http://127.0.0.1:8000{reverse('guest:link', args=[created.token])}"
    assert created.url.startswith("http://127.0.0.1:8000/l/")
    assert len(created.token) >= 43  # 256 bits, base64
    # Only the keyed digest is stored, never the token.
    assert link.token_digest == digest_for(created.token)
    assert created.token not in json.dumps(list(GuestLink.objects.values()), default=str)
    assert link.target_kind == TargetKind.STUDY and link.study == study
    assert link.organization == study.organization and link.created_by == alice
    assert link.expires_at == NOW + timedelta(hours=7 * 24)
    assert link.max_uses is None and link.password_hash == ""
    assert link.language == "en"
    assert Message.objects.count() == 0

    event = AuditEvent.objects.get(action=Action.LINK_CREATED)
    assert event.actor == alice
    assert event.target_type == "guest_link" and event.target_id == str(link.pk)
    assert event.study_uid == study.study_uid
    assert event.details["target_kind"] == "study"
    assert event.details["target_id"] == study.study_uid
    assert event.details["protected"] == "none"
    assert event.details["messages"] == {"email": 0, "sms": 0, "confirmation": 0}
    assert created.token not in audit_text()
    assert not AuditEvent.objects.filter(action=Action.LINK_EMAILED).exists()


def test_acknowledgement_is_required_by_the_service(alice, study):
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, acknowledged=False, email="gp@example.org")
    assert list(errors_of(excinfo)) == ["acknowledged"]
    assert "authorization cannot be removed" in errors_of(excinfo)["acknowledged"][0]
    assert not GuestLink.objects.exists()
    assert not Message.objects.exists()
    assert not AuditEvent.objects.filter(action=Action.LINK_CREATED).exists()


def test_all_errors_are_reported_at_once(alice, study):
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, acknowledged=False, email="not-an-address", max_uses=0)
    assert set(errors_of(excinfo)) == {"acknowledged", "email", "max_uses"}


# --- The organization's policy -------------------------------------------------------------------

POLICY_CASES = [
    ("allow_link_email", {"email": "gp@example.org"}, "email"),
    ("allow_link_sms", {"mobile": "+32470123456"}, "mobile"),
    ("allow_link_sms", {"sms_code": True}, "sms_code"),
    ("allow_link_max_uses", {"max_uses": 3}, "max_uses"),
    ("allow_link_expiry", {"expires_in_days": 2}, "expires_in_days"),
    ("allow_link_expiry", {"expires_in_hours": 5}, "expires_in_hours"),
    ("allow_link_login_required", {"login_required": True}, "login_required"),
    ("allow_link_password", {"password": "s3cret-pass"}, "password"),
    (
        "allow_link_password",
        {"max_password_attempts": 3, "password_is_birth_date": True},
        "max_password_attempts",
    ),
    ("allow_link_birth_date_password", {"password_is_birth_date": True}, "password_is_birth_date"),
    (
        "allow_link_email_confirmation",
        {"email": "gp@example.org", "require_email_confirmation": True},
        "require_email_confirmation",
    ),
    ("allow_link_priors", {"include_priors": True}, "include_priors"),
]


@pytest.mark.parametrize(("flag", "options", "field"), POLICY_CASES)
def test_an_option_the_policy_disables_is_refused_naming_its_field(
    alice, study, org, flag, options, field
):
    setattr(org, flag, False)
    org.save()
    study.organization.refresh_from_db()
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, **options)
    assert field in errors_of(excinfo)
    assert "policy does not allow" in errors_of(excinfo)[field][0]
    assert not GuestLink.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize(("flag", "options", "field"), POLICY_CASES)
def test_the_dialog_hides_each_option_the_service_refuses(alice, study, org, flag, options, field):
    # One table says which flag offers which option: the form hides what the service refuses.
    setattr(org, flag, False)
    org.save()
    form = SendLinkForm(organization=org, target=LinkTarget(study=study))
    hidden = {name for name, offered in form.allowed.items() if not offered}
    refused = {name for name, (offered_by, _words) in OPTION_POLICIES.items() if offered_by == flag}
    assert field in hidden
    assert refused <= hidden


def test_zero_uses_is_refused_where_the_policy_disables_limiting_uses(alice, study, org):
    # A chosen zero is not "no limit": it is refused, by the policy first.
    org.allow_link_max_uses = False
    org.save()
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, max_uses=0)
    assert "policy does not allow" in errors_of(excinfo)["max_uses"][0]


def test_without_the_expiry_option_links_still_expire_after_the_default(alice, study, org):
    org.allow_link_expiry = False
    org.default_link_validity_hours = 36
    org.save()
    with time_machine.travel(NOW, tick=False):
        link = send(alice, study).link
    assert link.expires_at == NOW + timedelta(hours=36)


def test_the_default_validity_never_exceeds_the_maximum(alice, study, org):
    org.default_link_validity_hours = 24 * 30
    org.max_link_validity_days = 10
    org.save()
    with time_machine.travel(NOW, tick=False):
        link = send(alice, study).link
    assert link.expires_at == NOW + timedelta(days=10)


# --- Addresses -----------------------------------------------------------------------------------


def test_an_invalid_email_is_refused_with_a_clear_message(alice, study):
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, email="gp@@example")
    assert errors_of(excinfo) == {"email": ["“gp@@example” is not a valid email address."]}


@pytest.mark.parametrize("mobile", ["12", "+32 12", "call me"])
def test_an_invalid_mobile_number_is_refused(alice, study, mobile):
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, mobile=mobile)
    assert list(errors_of(excinfo)) == ["mobile"]
    assert "phone number" in errors_of(excinfo)["mobile"][0]


def test_a_local_mobile_number_is_stored_in_international_form(alice, study):
    link = send(alice, study, mobile="0470 12 34 56").link
    assert link.mobile == "+32470123456"


# --- Uses and expiry -----------------------------------------------------------------------------


@pytest.mark.parametrize("max_uses", [0, -1])
def test_a_link_allows_at_least_one_use(alice, study, max_uses):
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, max_uses=max_uses)
    assert list(errors_of(excinfo)) == ["max_uses"]


def test_max_uses_is_stored(alice, study):
    assert send(alice, study, max_uses=2).link.max_uses == 2


@pytest.mark.parametrize(
    ("days", "hours", "expected"),
    [
        (2, None, timedelta(days=2)),
        (None, 5, timedelta(hours=5)),
        (1, 12, timedelta(hours=36)),
        (0, 1, timedelta(hours=1)),
        (90, None, timedelta(days=90)),
        (None, 90 * 24, timedelta(days=90)),
    ],
)
def test_expiry_in_days_and_or_hours(alice, study, days, hours, expected):
    with time_machine.travel(NOW, tick=False):
        link = send(alice, study, expires_in_days=days, expires_in_hours=hours).link
    assert link.expires_at == NOW + expected


@pytest.mark.parametrize(
    ("days", "hours", "field", "words"),
    [
        (91, None, "expires_in_days", "at most 90 days"),
        (90, 1, "expires_in_hours", "at most 90 days"),
        (0, 0, "expires_in_days", "at least one hour"),
        (-1, None, "expires_in_days", "zero or more"),
        (None, -3, "expires_in_hours", "zero or more"),
    ],
)
def test_expiry_bounds(alice, study, days, hours, field, words):
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, expires_in_days=days, expires_in_hours=hours)
    assert list(errors_of(excinfo)) == [field]
    assert words in errors_of(excinfo)[field][0]


def test_the_maximum_validity_follows_the_organization(alice, study, org):
    org.max_link_validity_days = 3
    org.save()
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, expires_in_days=4)
    assert "at most 3 days" in errors_of(excinfo)["expires_in_days"][0]


# --- Passwords -----------------------------------------------------------------------------------


def test_the_password_is_stored_hashed_only(alice, study):
    link = send(alice, study, password="Tulip-4711", max_password_attempts=3).link
    assert link.password_hash.startswith("$argon2id$")
    assert "Tulip-4711" not in link.password_hash
    assert check_link_password("Tulip-4711", link.password_hash)
    assert not check_link_password("tulip-4711", link.password_hash)
    assert link.max_password_attempts == 3
    assert link.password_is_birth_date is False


def test_the_date_of_birth_is_the_password_as_yyyymmdd(alice, study):
    link = send(alice, study, password_is_birth_date=True).link
    assert link.password_is_birth_date is True
    assert check_link_password("19700131", link.password_hash)
    assert not check_link_password("31/01/1970", link.password_hash)
    event = AuditEvent.objects.get(action=Action.LINK_CREATED)
    assert event.details["protected"] == "birth_date"


def test_a_typed_password_overrides_the_date_of_birth(alice, study):
    link = send(alice, study, password="Tulip-4711", password_is_birth_date=True).link
    assert check_link_password("Tulip-4711", link.password_hash)
    assert not check_link_password("19700131", link.password_hash)
    assert link.password_is_birth_date is False


def test_a_study_without_a_date_of_birth_needs_a_typed_password(alice, org, location):
    study = make_study(org, location=location, patient_id="P-NODOB", birth_date=None)
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, password_is_birth_date=True)
    assert errors_of(excinfo) == {
        "password_is_birth_date": [
            "This study has no date of birth in its DICOM data. Enter a password instead."
        ]
    }
    # With a typed password the option is simply overridden.
    assert send(alice, study, password="Tulip-4711", password_is_birth_date=True).link


def test_max_password_attempts_need_a_password(alice, study):
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, max_password_attempts=3)
    assert list(errors_of(excinfo)) == ["max_password_attempts"]


@pytest.mark.parametrize("password", ["short", "x" * 129])
def test_password_length_bounds(alice, study, password):
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, password=password)
    assert list(errors_of(excinfo)) == ["password"]


def test_the_password_never_reaches_a_message_or_the_audit_trail(alice, study):
    send(
        alice,
        study,
        email="gp@example.org",
        mobile="+32470123456",
        password="Tulip-4711",
        max_password_attempts=2,
        message="Please look at the left lung.",
    )
    send(alice, study, email="gp@example.org", password_is_birth_date=True)
    assert Message.objects.count() == 3
    assert "Tulip-4711" not in messages_text()
    assert "19700131" not in messages_text()
    assert "Tulip-4711" not in audit_text()
    assert "19700131" not in audit_text()
    email = Message.objects.filter(channel=Channel.EMAIL).first()
    assert "the sender will give it to you separately" in email.body_text


# --- Messages ------------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_an_email_with_the_link_is_queued_in_the_chosen_language(alice, study):
    created = send(
        alice,
        study,
        email="gp@example.org",
        max_uses=2,
        message="Please look at the left lung.",
        language="fr",
    )
    message = Message.objects.get()
    assert message.channel == Channel.EMAIL
    assert message.template == "guest_link"
    assert message.recipient == "gp@example.org"
    assert message.language == "fr"
    assert message.concerning_type == "guest_link"
    assert message.concerning_id == str(created.link.pk)
    assert created.url in message.body_text
    assert created.url in message.body_html
    assert "Please look at the left lung." in message.body_text
    assert "Alice Tester" in message.body_text
    # No patient data in the subject; the stored context keeps no link.
    assert "Doe" not in message.subject and "Jane" not in message.subject
    assert created.token not in json.dumps(message.context)
    emailed = AuditEvent.objects.get(action=Action.LINK_EMAILED)
    assert emailed.details == {"channel": "email", "language": "fr"}
    created_event = AuditEvent.objects.get(action=Action.LINK_CREATED)
    assert created_event.details["by_email"] is True
    assert created_event.details["messages"]["email"] == 1
    assert "gp@example.org" not in audit_text()
    assert "left lung" not in audit_text()


def test_the_link_is_written_in_the_senders_language_by_default(alice, study):
    alice.language = "nl"
    alice.save()
    send(alice, study, email="gp@example.org")
    assert Message.objects.get().language == "nl"


def test_an_unknown_language_is_refused(alice, study):
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, email="gp@example.org", language="xx")
    assert list(errors_of(excinfo)) == ["language"]


def test_an_sms_with_the_link_is_queued_for_a_mobile_number(alice, study):
    created = send(alice, study, mobile="+32470123456", sms_code=True)
    message = Message.objects.get()
    assert message.channel == Channel.SMS
    assert message.recipient == "+32470123456"
    assert message.template == "guest_link"
    assert created.url in message.body_text
    assert created.link.sms_code_required is True
    assert AuditEvent.objects.get(action=Action.LINK_CREATED).details["by_sms"] is True


def test_an_sms_code_needs_a_mobile_number(alice, study):
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, sms_code=True)
    assert list(errors_of(excinfo)) == ["sms_code"]


def test_confirmation_via_email_sends_the_confirmation_first(alice, study):
    created = send(
        alice,
        study,
        email="gp@example.org",
        mobile="+32470123456",
        require_email_confirmation=True,
    )
    message = Message.objects.get()
    assert message.template == "email_confirmation"
    assert message.recipient == "gp@example.org"
    # The link itself goes out only after the confirmation, by the recipient side.
    assert created.url not in messages_text()
    assert created.link.require_email_confirmation is True
    assert created.link.confirmations.count() == 1
    emailed = AuditEvent.objects.get(action=Action.LINK_EMAILED)
    assert emailed.details["step"] == "confirmation"


def test_confirmation_via_email_needs_an_email_address(alice, study):
    with pytest.raises(ValidationError) as excinfo:
        send(alice, study, require_email_confirmation=True)
    assert list(errors_of(excinfo)) == ["require_email_confirmation"]


def test_other_options_are_stored(alice, study):
    link = send(alice, study, login_required=True, include_priors=True, message="  Hi  ").link
    assert link.login_required is True
    assert link.include_priors is True
    assert link.message == "Hi"


# --- Who may send --------------------------------------------------------------------------------


def test_outsiders_and_members_who_cannot_see_the_study_may_not_send(bob, carol, study):
    for user in (bob, carol):
        with pytest.raises(PermissionDenied):
            send(user, study)
    assert not GuestLink.objects.exists()


def test_a_role_without_create_links_may_not_send(viewer_only, study):
    with pytest.raises(PermissionDenied):
        send(viewer_only, study)


def test_a_worklist_link_belongs_to_the_worklists_organization(alice, study, location):
    worklist = location_worklist(location)
    link = create_link(
        sender=alice,
        target=LinkTarget(worklist=worklist),
        options=LinkOptions(max_uses=1),
        acknowledged=True,
    ).link
    assert link.target_kind == TargetKind.WORKLIST
    assert link.worklist == worklist and link.study is None
    assert link.organization_id == worklist.organization_id
    event = AuditEvent.objects.get(action=Action.LINK_CREATED)
    assert event.details["target_id"] == str(worklist.pk)
    assert event.study_uid == ""


def test_a_folder_link_and_the_date_of_birth(alice, location):
    worklist = location_worklist(location)
    folder = Folder.objects.create(worklist=worklist, name="Tumour board")
    target = LinkTarget(folder=folder)
    with pytest.raises(ValidationError) as excinfo:
        create_link(
            sender=alice,
            target=target,
            options=LinkOptions(password_is_birth_date=True),
            acknowledged=True,
        )
    assert (
        "worklist or folder has no single date of birth"
        in (errors_of(excinfo)["password_is_birth_date"][0])
    )
    link = create_link(
        sender=alice, target=target, options=LinkOptions(password="Tulip-4711"), acknowledged=True
    ).link
    assert link.target_kind == TargetKind.FOLDER and link.folder == folder


def test_a_worklist_alice_cannot_see_is_refused(alice, bob, group):
    worklist = group_worklist(group)
    with pytest.raises(PermissionDenied):
        create_link(
            sender=alice,
            target=LinkTarget(worklist=worklist),
            options=LinkOptions(),
            acknowledged=True,
        )


def test_a_target_is_exactly_one_thing(study, location):
    with pytest.raises(ValueError):
        LinkTarget()
    with pytest.raises(ValueError):
        LinkTarget(study=study, worklist=location_worklist(location))


# --- Deleting ------------------------------------------------------------------------------------


def test_deleting_ends_the_link_at_once(alice, study, guest):
    created = send(alice, study, max_uses=5)
    assert guest.get(reverse("guest:link", args=[created.token])).status_code == 200

    assert delete_link(user=alice, link=created.link) is True

    link = GuestLink.objects.get(pk=created.link.pk)
    assert link.state == LinkState.DELETED
    assert link.ended_by == alice and link.ended_at is not None
    event = AuditEvent.objects.get(action=Action.LINK_DELETED)
    assert event.actor == alice and event.target_id == str(link.pk)
    assert event.details["status_before"] == "active"
    # The recipient's page answers the one generic refusal.
    response = guest.get(reverse("guest:link", args=[created.token]))
    assert response.status_code == 404
    assert "This link is not valid" in response.content.decode()
    # Deleting again changes nothing and records nothing.
    assert delete_link(user=alice, link=link) is False
    assert AuditEvent.objects.filter(action=Action.LINK_DELETED).count() == 1


def test_deleting_needs_the_delete_permission_and_access(alice, bob, viewer_only, study):
    link = send(alice, study).link
    for user in (viewer_only, bob):
        with pytest.raises(PermissionDenied):
            delete_link(user=user, link=link)
    assert GuestLink.objects.get(pk=link.pk).state == LinkState.ACTIVE


# --- Revoking ------------------------------------------------------------------------------------


def test_an_administrator_revokes_a_link_with_a_reason(alice, dana, study, guest):
    created = send(alice, study)
    assert revoke_link(user=dana, link=created.link, reason="Sent to the wrong GP") is True
    link = GuestLink.objects.get(pk=created.link.pk)
    assert link.state == LinkState.REVOKED
    assert link.end_reason == "Sent to the wrong GP"
    assert link.ended_by == dana
    event = AuditEvent.objects.get(action=Action.LINK_REVOKED)
    assert event.actor == dana
    assert event.details["reason"] == "Sent to the wrong GP"
    assert guest.get(reverse("guest:link", args=[created.token])).status_code == 404


def test_revoking_needs_a_reason_and_an_administrator(alice, dana, study):
    link = send(alice, study).link
    with pytest.raises(ValidationError) as excinfo:
        revoke_link(user=dana, link=link, reason="   ")
    assert list(errors_of(excinfo)) == ["reason"]
    with pytest.raises(PermissionDenied):
        revoke_link(user=alice, link=link, reason="Mine")
    assert GuestLink.objects.get(pk=link.pk).state == LinkState.ACTIVE


def test_a_superuser_may_revoke_any_link(alice, study):
    root = make_user("root", is_staff=True, is_superuser=True)
    link = send(alice, study).link
    assert revoke_link(user=root, link=link, reason="Security incident") is True


def test_an_administrator_of_another_organization_may_not_revoke(alice, study, other_org):
    admin_role = Role.objects.create(name="Other admin", permissions=[Perm.REVOKE_ANY_LINK.value])
    other_admin = make_user("oscar", is_staff=True)
    Membership.objects.create(user=other_admin, organization=other_org, role=admin_role)
    link = send(alice, study).link
    with pytest.raises(PermissionDenied):
        revoke_link(user=other_admin, link=link, reason="Not mine")


# --- The study's list ----------------------------------------------------------------------------


def test_the_list_shows_each_link_newest_first_with_its_address_while_it_opens(
    alice, viewer_only, study
):
    first = send(alice, study, max_uses=2)
    second = send(alice, study, password="Tulip-4711")
    delete_link(user=alice, link=first.link)

    rows = links_for_study(viewer_only, study)
    assert [row.link.pk for row in rows] == [second.link.pk, first.link.pk]
    assert rows[0].status.state == "active" and rows[0].url == second.url
    assert rows[1].status.state == "deleted" and rows[1].url is None
    assert rows[1].uses_left == 2
    assert [row.can_delete for row in rows] == [False, False]
    assert links_for_study(alice, study)[0].can_delete is True


def test_the_list_needs_the_view_permission_and_access(alice, bob, no_links, study):
    send(alice, study)
    for user in (bob, no_links):
        with pytest.raises(PermissionDenied):
            links_for_study(user, study)


def test_the_list_marks_used_up_and_expired_links(alice, study):
    used_up = send(alice, study, max_uses=1).link
    GuestLink.objects.filter(pk=used_up.pk).update(uses=1)
    with time_machine.travel(NOW, tick=False):
        expiring = send(alice, study, expires_in_hours=1).link
    states = {row.link.pk: row.status.state for row in links_for_study(alice, study)}
    assert states[used_up.pk] == "used_up"
    assert states[expiring.pk] == "expired"
