"""The link page as a recipient (and a prober) sees it: one answer for every link that does not
open, a neutral page before the gates, the token left behind after them, and no trace of the
token in logs or the audit trail."""

from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import Action, AuditEvent
from guestlinks.models import GuestLink, LinkState
from guestlinks.services.opening import unavailable_message
from portal.logging import MaskSecretsFilter, mask_secrets
from studies.services.worklists import location_worklist
from tests.accounts.helpers import HttpsClient, without_random_values
from tests.factories import make_study
from tests.guestlinks.conftest import link_path

pytestmark = pytest.mark.django_db


def random_token() -> str:
    return secrets.token_urlsafe(32)


def open_study(client, token: str, **data):
    return client.post(link_path(token), {"action": "open", **data})


# --- One answer for every link that does not open -------------------------------------------


def test_unknown_expired_revoked_deleted_used_up_and_locked_links_answer_alike(
    guest, study, make_link
):
    _, expired = make_link(study, expires_in=timedelta(hours=-1))
    revoked_link, revoked = make_link(study)
    GuestLink.objects.filter(pk=revoked_link.pk).update(state=LinkState.REVOKED)
    deleted_link, deleted = make_link(study)
    GuestLink.objects.filter(pk=deleted_link.pk).update(state=LinkState.DELETED)
    _, used_up = make_link(study, max_uses=1, uses=1)
    _, locked = make_link(
        study, password="s3cret-pass", max_password_attempts=3, password_failures=3
    )
    _, code_locked = make_link(
        study, sms_code_required=True, mobile="+32470123456", code_failures=5
    )

    answers = []
    for token in (random_token(), expired, revoked, deleted, used_up, locked, code_locked):
        for response in (guest.get(link_path(token)), open_study(guest, token)):
            answers.append((response.status_code, response.content))

    assert {status for status, _ in answers} == {404}
    assert len({body for _, body in answers}) == 1
    body = answers[0][1].decode()
    assert unavailable_message() in body
    assert "CT Chest" not in body and "Doe" not in body


def link_lookups(queries) -> list[str]:
    return [q["sql"] for q in queries if "guestlinks_guestlink" in q["sql"]]


def test_malformed_tokens_get_the_same_answer_without_a_lookup(guest, db):
    reference = guest.get(link_path(random_token()))
    with CaptureQueriesContext(connection) as queries:
        response = guest.get(link_path("short"))
    assert (response.status_code, response.content) == (404, reference.content)
    assert link_lookups(queries.captured_queries) == []


def test_many_unknown_tokens_from_one_address_are_refused_but_valid_links_still_open(
    guest, study, make_link, settings
):
    """Whoever shares the recipient's address (a hospital's NAT, a mobile carrier's) cannot deny
    them their link by sending unknown tokens: only unknown tokens are throttled."""
    settings.GUESTLINK_PROBE_LIMIT = 20
    _, token = make_link(study)
    for _ in range(20):
        assert guest.get(link_path(random_token())).status_code == 404

    refused = guest.get(link_path(random_token()))
    assert refused.status_code == 429
    assert unavailable_message() in refused.content.decode()
    # A valid link still opens from this address, page and gates alike.
    assert guest.get(link_path(token)).status_code == 200
    opened = open_study(guest, token)
    assert (opened.status_code, opened["Location"]) == (
        303,
        reverse("studies:study", args=[study.study_uid]),
    )
    assert guest.get(link_path(random_token())).status_code == 429
    # The alert is audited once per window, without the tokens tried.
    alerts = AuditEvent.objects.filter(action=Action.LINK_REFUSED)
    assert [event.details["reason"] for event in alerts] == ["too_many_unknown_links"]

    # Another address is not affected.
    elsewhere = HttpsClient(REMOTE_ADDR="198.51.100.7")
    assert elsewhere.get(link_path(random_token())).status_code == 404

    # The window ends.
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        assert guest.get(link_path(random_token())).status_code == 404


def test_opening_a_real_link_does_not_use_up_the_address_allowance(
    guest, study, make_link, settings
):
    settings.GUESTLINK_PROBE_LIMIT = 3
    _, token = make_link(study)
    for _ in range(10):
        assert guest.get(link_path(token)).status_code == 200
    assert guest.get(link_path(random_token())).status_code == 404


# --- The neutral page ------------------------------------------------------------------------


def test_the_page_before_the_gates_shows_nothing_of_the_study(guest, org, study, make_link):
    _, token = make_link(
        study, password="open-sesame-42", message="Look at the left lower lobe, Jane Doe."
    )
    response = guest.get(link_path(token))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>Shared study" in html
    assert org.name in html
    shown = without_random_values(html, token)
    for secret in ("Doe", "Jane", "CT Chest", study.study_uid, "P-0001", "left lower lobe"):
        assert secret not in shown
    assert 'name="password"' in html
    assert "Open study" in html
    assert 'method="post"' in html
    # Each stylesheet once (the layout used to link the guest pages' own a second time).
    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert stylesheets and len(stylesheets) == len(set(stylesheets))


def test_the_link_page_is_private_and_self_contained(guest, study, make_link):
    _, token = make_link(study)
    response = guest.get(link_path(token))

    assert response["Referrer-Policy"] == "no-referrer"
    # The page's own referrer meta tag must not relax the header.
    assert '<meta name="referrer" content="no-referrer">' in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert "script-src 'self'" in response["Content-Security-Policy"]
    html = response.content.decode()
    # Nothing is loaded from another host, and nothing inline needs the CSP relaxed.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html and "style=" not in html

    refused = open_study(guest, random_token())
    assert refused["Referrer-Policy"] == "no-referrer"


def test_only_the_fields_the_gates_need_are_shown(guest, study, make_link):
    _, plain = make_link(study)
    html = guest.get(link_path(plain)).content.decode()
    assert 'name="password"' not in html and 'name="code"' not in html

    _, with_code = make_link(study, sms_code_required=True, mobile="+32470123456")
    html = guest.get(link_path(with_code)).content.decode()
    assert 'name="code"' in html and 'value="send_code"' in html
    assert "ending in 56" in html
    assert "+32470123456" not in html

    _, birth_date = make_link(study, password="19700131", password_is_birth_date=True)
    html = guest.get(link_path(birth_date)).content.decode()
    assert "date of birth" in html and "YYYYMMDD" in html


def test_a_get_never_spends_a_use_but_is_counted_and_audited_once(guest, study, make_link):
    link, token = make_link(study, max_uses=1)
    for _ in range(3):
        assert guest.get(link_path(token)).status_code == 200

    link.refresh_from_db()
    # One visit: the reloads count neither as opens nor as events, so the two agree.
    assert (link.uses, link.opens) == (0, 1)
    opened = AuditEvent.objects.filter(action=Action.LINK_OPENED)
    assert opened.count() == 1
    event = opened.get()
    assert event.details == {"link": link.pk}
    assert event.actor_label == "anonymous recipient"
    assert event.ip == "127.0.0.1"
    assert (event.target_type, event.target_id) == ("guest_link", str(link.pk))

    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        guest.get(link_path(token))
    assert AuditEvent.objects.filter(action=Action.LINK_OPENED).count() == 2
    link.refresh_from_db()
    assert link.opens == 2
    # The one use is still there.
    assert open_study(guest, token).status_code == 303


# --- After the gates -------------------------------------------------------------------------


def test_passing_the_gates_moves_the_grant_into_a_new_session_and_leaves_the_token_behind(
    guest, study, make_link
):
    link, token = make_link(study)
    guest.get(link_path(token))
    guest.session.save()  # a session exists before the gates
    before = guest.cookies["sessionid"].value

    response = open_study(guest, token)

    assert response.status_code == 303
    assert response["Location"] == reverse("studies:study", args=[study.study_uid])
    assert token not in response["Location"]
    assert response["Referrer-Policy"] == "no-referrer"
    after = guest.cookies["sessionid"].value
    assert after != before
    grants = guest.session["guestlinks_grants"]
    assert [(g["link"], g["studies"]) for g in grants] == [(link.pk, [study.pk])]

    viewer = guest.get(response["Location"])
    assert viewer.status_code == 200
    assert "Doe" in viewer.content.decode()


def test_a_first_visit_writes_its_session_once_with_the_grant(guest, study, make_link):
    """No session before the gates: none to replace, so the session is stored once (no empty
    session made first and written again)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    link, token = make_link(study)
    assert "sessionid" not in guest.cookies

    with CaptureQueriesContext(connection) as captured:
        response = open_study(guest, token)

    assert response.status_code == 303
    writes = [
        q["sql"].split()[0]
        for q in captured.captured_queries
        if "django_session" in q["sql"] and not q["sql"].startswith("SELECT")
    ]
    assert writes == ["INSERT"]
    assert [g["link"] for g in guest.session["guestlinks_grants"]] == [link.pk]


def test_a_worklist_link_leads_to_a_list_of_its_studies_with_the_message(
    guest, org, location, make_link
):
    first = make_study(org, location=location, description="MR Knee", modality="MR")
    second = make_study(
        org, location=location, patient_id="P-0002", family_name="Janssens", given_name="Piet"
    )
    worklist = location_worklist(location)
    _, token = make_link(worklist, message="Both knees, please.")

    response = open_study(guest, token)
    assert response.status_code == 303
    assert response["Location"] == reverse("guest:studies")

    page = guest.get(response["Location"])
    assert page.status_code == 200
    assert page["Referrer-Policy"] == "no-referrer"
    html = page.content.decode()
    assert "Both knees, please." in html
    assert "MR Knee" in html and "Janssens" in html and "Jane Doe" in html
    assert reverse("studies:study", args=[first.study_uid]) in html
    assert reverse("studies:study", args=[second.study_uid]) in html
    assert guest.get(reverse("studies:study", args=[second.study_uid])).status_code == 200


def test_a_study_link_with_a_message_shows_it_with_the_study_after_the_gates(
    guest, study, make_link, alice
):
    _, token = make_link(study, created_by=alice, message="Compare with the 2021 CT, please.")
    assert "Compare with" not in guest.get(link_path(token)).content.decode()

    response = open_study(guest, token)
    assert response["Location"] == reverse("guest:studies")
    html = guest.get(response["Location"]).content.decode()
    assert "Compare with the 2021 CT, please." in html
    assert "Shared by Alice Tester, St. Elsewhere Hospital" in html
    assert reverse("studies:study", args=[study.study_uid]) in html


def test_the_list_of_studies_without_a_grant_says_what_to_do(guest, db):
    response = guest.get(reverse("guest:studies"))
    assert response.status_code == 404
    assert "Open the link you received again" in response.content.decode()


def test_coming_back_to_an_opened_link_spends_no_second_use(guest, study, make_link):
    link, token = make_link(study, max_uses=1)
    open_study(guest, token)

    again = guest.get(link_path(token))
    assert again.status_code == 303
    assert again["Location"] == reverse("studies:study", args=[study.study_uid])
    link.refresh_from_db()
    assert link.uses == 1


def test_a_recipient_who_has_not_opened_it_cannot_follow_a_used_up_link(guest, study, make_link):
    _, token = make_link(study, max_uses=1)
    assert open_study(guest, token).status_code == 303

    other = HttpsClient()
    assert other.get(link_path(token)).status_code == 404
    assert open_study(other, token).status_code == 404
    refusal = AuditEvent.objects.filter(action=Action.LINK_REFUSED).latest("id")
    assert refusal.details["reason"] == "used_up"


# --- The token stays out of logs and the audit trail ------------------------------------------


def test_the_token_is_masked_in_request_log_lines(guest, study, make_link):
    _, token = make_link(study)
    path = link_path(token)
    assert token not in mask_secrets(f'"GET {path} HTTP/1.1" 200 1234')
    assert token not in mask_secrets(f"Not Found: {path}")
    login_url = f"/accounts/login/?next={path}"
    assert token not in mask_secrets(f'"GET {login_url} HTTP/1.1" 302 0')

    # Django's own request logger: its handler masks before anything is written.
    logger = logging.getLogger("django.request")
    handlers = [
        handler
        for handler in logger.handlers
        if any(isinstance(f, MaskSecretsFilter) for f in handler.filters)
    ]
    assert handlers, "django.request must log through the mask_secrets filter"
    written: list[str] = []
    handler = handlers[0]
    original_emit = handler.emit
    handler.emit = lambda record: written.append(handler.format(record))
    try:
        guest.get(link_path(random_token()))  # a 404: Django logs "Not Found: /l/..."
        guest.post(link_path(token), {"action": "open", "password": "x"})
    finally:
        handler.emit = original_emit
    assert written, "the 404 was not logged"
    assert all("/l/[masked]" in line for line in written if "/l/" in line)
    assert not any(token in line for line in written)


def test_audit_events_never_carry_the_token(guest, study, make_link, alice):
    _, token = make_link(
        study,
        created_by=alice,
        password="open-sesame-42",
        max_password_attempts=5,
        sms_code_required=False,
    )
    guest.get(link_path(token))
    open_study(guest, token, password="wrong-guess")
    open_study(guest, token, password="open-sesame-42")
    _, expired = make_link(study, expires_in=timedelta(hours=-1))
    guest.get(link_path(expired))
    open_study(guest, expired)

    events = list(AuditEvent.objects.all())
    assert {e.action for e in events} >= {
        Action.LINK_OPENED,
        Action.LINK_WRONG_PASSWORD,
        Action.LINK_USED,
        Action.LINK_REFUSED,
    }
    for event in events:
        dumped = json.dumps(
            {"details": event.details, "target": event.target_id, "label": event.actor_label}
        )
        assert token not in dumped and expired not in dumped
        assert "open-sesame-42" not in dumped and "wrong-guess" not in dumped
