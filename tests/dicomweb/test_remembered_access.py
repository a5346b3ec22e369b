"""One access decision per viewing (portal.decisions): after a viewer's first frame, the next
frames of the same instance run no SQL at all, and every change the decision rests on stops
them at the very next request: a share removed, a guest link revoked, a token revoked, a
membership ended, a share's validity reached."""

import threading
import time
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.authentication import token_decision_key
from accounts.models import ApiToken
from guestlinks.models import GuestLink
from guestlinks.services.ending import revoke_link
from portal import decisions
from sharing.services.shares import remove_share
from studies.models import Study
from tests.accounts.helpers import HttpsClient
from tests.dicomweb.conftest import CT_STUDY_UID, api_token, token_client
from tests.dicomweb.test_qido import open_guest_link
from tests.dicomweb.test_wado import RAW_FRAMES, instance_url, parts_of
from tests.factories import share_entry
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db


def frame(client, instance, number: int = 1):
    return client.get(instance_url(instance, "frames", str(number)), HTTP_ACCEPT=RAW_FRAMES)


def statements(client, instance) -> int:
    url = instance_url(instance, "frames", "1")  # built first: it reads the instance's series
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, HTTP_ACCEPT=RAW_FRAMES).status_code == 200
    return len(captured)


def test_a_viewers_next_frames_run_no_sql(ct_study, alice):
    client = token_client(alice)
    first, second, third, other_series = ct_study.instances[:4]
    assert {first.series_id, second.series_id, third.series_id} == {first.series_id}
    assert other_series.series_id != first.series_id

    assert statements(client, first) > 0
    assert statements(client, first) == 0
    # The series' other instances were decided with the first one.
    assert statements(client, third) == 0
    assert statements(client, second) == 0
    # Another series is another decision (the study's access is remembered already).
    assert statements(client, other_series) == 1
    assert statements(client, other_series) == 0


def test_a_viewings_audit_event_reads_the_study_with_its_patient(ct_study, alice):
    """The first frame records the viewing (``note_render_session``): the study it names is
    read with its patient in one statement, not the patient after it."""
    from audit.models import Action, AuditEvent

    client = token_client(alice)
    ct = ct_study.instances[0]
    url = instance_url(ct, "frames", "1", "rendered")
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, HTTP_ACCEPT="image/jpeg").status_code == 200

    event = AuditEvent.objects.get(action=Action.FRAMES_RENDERED)
    assert event.patient_id == ct_study.study.patient.patient_id
    read = [query["sql"] for query in captured.captured_queries]
    assert not [sql for sql in read if 'FROM "studies_patient"' in sql], read


def test_a_viewings_audit_event_reads_its_study_by_a_query_built_once(
    ct_study, alice, built_queries
):
    """The request recording a viewing is the first frame, which the viewer's other first
    frames wait for: its read of the study is built once (``portal.prepared_queries``)."""
    from audit.models import Action, AuditEvent

    client = token_client(alice)
    ct = ct_study.instances[0]
    rendered = instance_url(ct, "frames", "1", "rendered")
    assert client.get(rendered, HTTP_ACCEPT="image/jpeg").status_code == 200
    built_queries.clear()

    # The same study's raw frames are another action, recorded once too.
    assert frame(client, ct).status_code == 200

    retrieved = AuditEvent.objects.get(action=Action.INSTANCES_RETRIEVED)
    assert retrieved.study_uid == CT_STUDY_UID
    assert retrieved.patient_id == ct_study.study.patient.patient_id
    assert Study not in built_queries


def test_a_removed_share_stops_the_series_remembered_with_its_first_frame(ct_study, alice, carol):
    made = share(alice, ct_study.study, ("user", carol.pk))
    client = token_client(carol)
    first, second = ct_study.instances[:2]
    assert statements(client, first) > 0
    assert statements(client, second) == 0

    assert remove_share(user=alice, share=made) is True

    assert frame(client, second).status_code == 404


def test_removing_a_share_stops_remembered_frames_at_once(ct_study, alice, carol):
    made = share(alice, ct_study.study, ("user", carol.pk))
    client = token_client(carol)
    ct = ct_study.instances[0]
    assert frame(client, ct).status_code == 200
    assert statements(client, ct) == 0

    assert remove_share(user=alice, share=made) is True

    assert frame(client, ct).status_code == 404


def test_revoking_a_guest_link_stops_remembered_frames_at_once(ct_study, dana):
    guest = open_guest_link(Study.objects.get(study_uid=CT_STUDY_UID))
    ct = ct_study.instances[0]
    assert frame(guest, ct).status_code == 200
    assert frame(guest, ct).status_code == 200

    assert revoke_link(user=dana, link=GuestLink.objects.get(), reason="Sent to the wrong GP")

    # The session's only grant has ended: the guest is nobody again.
    assert frame(guest, ct).status_code == 401


def test_a_revoked_token_stops_at_once(ct_study, alice):
    client = token_client(alice)
    ct = ct_study.instances[0]
    assert statements(client, ct) > 0
    assert statements(client, ct) == 0

    ApiToken.objects.filter(user=alice).delete()

    assert frame(client, ct).status_code == 401


def test_an_ended_membership_stops_at_once(ct_study, alice):
    client = token_client(alice)
    ct = ct_study.instances[0]
    assert frame(client, ct).status_code == 200

    membership = alice.memberships.get()
    membership.is_active = False
    membership.save(update_fields=["is_active"])

    assert frame(client, ct).status_code == 404


def test_a_remembered_decision_ends_with_the_share_it_rests_on(ct_study, carol):
    until = timezone.now() + timedelta(seconds=30)
    share_entry(carol, ct_study.study, valid_until=until)
    client = token_client(carol)
    ct = ct_study.instances[0]
    assert frame(client, ct).status_code == 200
    assert statements(client, ct) == 0

    with time_machine.travel(until + timedelta(seconds=1)):
        assert frame(client, ct).status_code == 404


def test_a_change_moves_the_generation_on_now_and_again_when_it_commits(
    django_capture_on_commit_callbacks,
):
    """A request that read the rows while the change was being made remembered its answer
    under the generation of the change's start: the commit moves the generation on once more."""
    start = decisions.current_generation()
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        decisions.changed()
        during = decisions.current_generation()

    assert len(callbacks) == 1
    assert len({start, during, decisions.current_generation()}) == 3


def test_answers_about_accounts_alone_outlive_other_changes_but_not_their_own():
    computed = []

    def compute():
        computed.append(1)
        return len(computed), None

    accounts = decisions.ACCOUNTS
    assert decisions.remember("accounts-test", compute, scope=accounts) == 1
    assert decisions.remember("everything-test", compute) == 2

    decisions.changed()  # a study arrived
    assert decisions.remember("accounts-test", compute, scope=accounts) == 1
    assert decisions.remember("everything-test", compute) == 3
    with decisions.kept_for_request():
        decisions.prefetch("accounts-test", "everything-test")
        assert decisions.remember("accounts-test", compute, scope=accounts) == 1
        assert decisions.remember("everything-test", compute) == 3

    decisions.changed(scope=accounts)  # a membership ended
    assert decisions.remember("accounts-test", compute, scope=accounts) == 4
    assert decisions.remember("everything-test", compute) == 5
    # An answer is held only by the generation of its own scope.
    assert decisions.remember("accounts-test", compute) == 6
    assert decisions.remember("everything-test", compute, scope=accounts) == 7


def test_a_study_arriving_leaves_who_a_token_is_standing(ct_study, alice, org, location):
    """Ingestion moves every answer's generation on but the accounts' and the stored objects':
    the next frame decides the access to the study again, without reading the token, the
    memberships, the devices, the user's worklists or the instance again."""
    from tests.factories import make_study

    client = token_client(alice)
    ct = ct_study.instances[0]
    assert frame(client, ct).status_code == 200

    make_study(org, location=location)

    with CaptureQueriesContext(connection) as captured:
        assert frame(client, ct).status_code == 200
    read = [query["sql"] for query in captured.captured_queries]
    assert any('FROM "studies_study"' in sql for sql in read), read
    for table in (
        "studies_instance",
        "accounts_apitoken",
        "accounts_membership",
        "otp_totp_totpdevice",
        "studies_worklist",
    ):
        assert not [sql for sql in read if f'FROM "{table}"' in sql], (table, read)


def test_a_worklist_made_for_a_users_group_is_seen_at_once(alice, org, group):
    """The worklists a user sees outlive studies arriving, not a worklist of theirs made."""
    from accounts.models import Membership
    from studies.access import visible_worklist_ids
    from studies.services.worklists import group_worklist
    from tests.factories import make_study

    Membership.objects.get(user=alice, organization=org).groups.add(group)
    before = visible_worklist_ids(alice)
    make_study(org)
    with CaptureQueriesContext(connection) as captured:
        assert visible_worklist_ids(alice) == before
    assert not captured.captured_queries

    worklist = group_worklist(group)

    assert visible_worklist_ids(alice) == sorted([*before, worklist.pk])
    worklist.delete()
    assert visible_worklist_ids(alice) == before


def test_a_device_added_ends_a_tokens_remembered_verdict(ct_study, alice):
    """A token issued without a code stops once its user sets up an authenticator app."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client = token_client(alice)
    ct = ct_study.instances[0]
    assert frame(client, ct).status_code == 200

    TOTPDevice.objects.create(user=alice, name="phone", confirmed=True)

    assert frame(client, ct).status_code == 401


def test_refused_tokens_are_not_remembered(ct_study, monkeypatch):
    cache = caches["default"]
    written = []
    original = cache.set

    def recording_set(key, *args, **kwargs):
        written.append(key)
        return original(key, *args, **kwargs)

    monkeypatch.setattr(cache, "set", recording_set)

    for attempt in range(3):
        stranger = HttpsClient(HTTP_AUTHORIZATION=f"Bearer not-a-token-{attempt}")
        assert frame(stranger, ct_study.instances[0]).status_code == 401

    assert not [key for key in written if key.startswith("decisions:api-token")]


def test_production_refuses_remembered_decisions_without_a_shared_cache(settings):
    settings.DEBUG = False
    settings.CACHE_URL = ""
    settings.ACCESS_DECISION_SECONDS = 120
    settings.SILENCED_SYSTEM_CHECKS = []

    with pytest.raises(SystemCheckError, match=r"portal\.E001"):
        call_command("check")

    settings.ACCESS_DECISION_SECONDS = 0
    call_command("check")


def test_a_viewers_next_frames_are_read_straight_from_the_file(ct_study, alice, monkeypatch):
    from dicomweb import wado

    client = token_client(alice)
    ct = ct_study.instances[0]
    first = frame(client, ct)

    def no_parsing(fp):
        raise AssertionError("the header was parsed again")

    monkeypatch.setattr(wado, "open_stored", no_parsing)
    again = frame(client, ct)

    assert again.status_code == 200
    ((_type, pixels),) = parts_of(again)
    assert parts_of(first) == [(_type, pixels)]
    assert len(pixels) == 64 * 48 * 2


# --- Remembered search answers (QIDO-RS) ----------------------------------------------------------


def studies_found(client, **params) -> list[str]:
    response = client.get("/dicomweb/studies", params, HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200
    return [item["0020000D"]["Value"][0] for item in response.json()]


def search_statements(client, **params) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        studies_found(client, **params)
    return [query["sql"] for query in captured.captured_queries]


def test_a_repeated_search_is_answered_from_memory_and_still_audited(ct_study, alice):
    from audit.models import Action, AuditEvent

    client = token_client(alice)
    assert studies_found(client, PatientName="*") == [CT_STUDY_UID]
    queried = AuditEvent.objects.filter(action=Action.STUDIES_QUERIED).count()

    again = search_statements(client, PatientName="*")

    # Only the audit event's statements: no search, no access rule read again.
    assert again and all("audit_" in sql or "SAVEPOINT" in sql for sql in again), again
    assert AuditEvent.objects.filter(action=Action.STUDIES_QUERIED).count() == queried + 1
    # Other parameters are another search.
    assert any("studies_study" in sql for sql in search_statements(client, PatientName="Z*"))


def test_a_remembered_search_sees_a_new_study_at_once(ct_study, alice, org, location):
    from tests.factories import make_study

    client = token_client(alice)
    assert studies_found(client) == [CT_STUDY_UID]
    added = make_study(org, location=location)
    assert set(studies_found(client)) == {CT_STUDY_UID, added.study_uid}


def test_a_remembered_search_forgets_a_removed_share_and_one_that_ended(ct_study, alice, carol):
    made = share(alice, ct_study.study, ("user", carol.pk))
    client = token_client(carol)
    assert studies_found(client) == [CT_STUDY_UID]
    assert studies_found(client) == [CT_STUDY_UID]
    assert remove_share(user=alice, share=made) is True
    assert studies_found(client) == []

    until = timezone.now() + timedelta(seconds=30)
    share_entry(carol, ct_study.study, valid_until=until)
    assert studies_found(client) == [CT_STUDY_UID]
    assert studies_found(client) == [CT_STUDY_UID]
    with time_machine.travel(until + timedelta(seconds=1)):
        assert studies_found(client) == []


def test_principals_never_share_a_remembered_search(ct_study, alice, carol):
    assert studies_found(token_client(alice)) == [CT_STUDY_UID]
    assert studies_found(token_client(carol)) == []
    # A guest's session holds its link's grant: its own answer.
    guest = open_guest_link(Study.objects.get(study_uid=CT_STUDY_UID))
    assert studies_found(guest) == [CT_STUDY_UID]
    assert studies_found(token_client(carol)) == []


# --- Within one request ----------------------------------------------------------------------


def test_a_request_asks_the_cache_for_an_answer_once(counting_cache):
    computed = []

    def compute():
        computed.append(1)
        return ["the answer"], None

    with decisions.kept_for_request():
        first = decisions.remember("request-test", compute)
        again = decisions.remember("request-test", compute)

    assert first == again == ["the answer"]
    assert (counting_cache.asked, len(computed)) == (1, 1)
    # Outside a request, the cache is asked each time (and remembers the answer for all).
    decisions.remember("request-test", compute)
    assert (counting_cache.asked, len(computed)) == (2, 1)


def test_a_change_within_the_request_is_seen_by_the_rest_of_it(counting_cache):
    answers = iter(["before", "after"])

    def compute():
        return next(answers), None

    with decisions.kept_for_request():
        assert decisions.remember("request-change", compute) == "before"
        decisions.changed()
        assert decisions.remember("request-change", compute) == "after"
        assert decisions.remember("request-change", compute) == "after"


def test_an_answer_for_one_request_is_computed_once_and_again_after_a_change():
    computed = []

    def compute():
        computed.append(1)
        return len(computed)

    with decisions.kept_for_request():
        assert decisions.once_per_request("page-test", compute) == 1
        assert decisions.once_per_request("page-test", compute) == 1
        decisions.changed()
        assert decisions.once_per_request("page-test", compute) == 2
    with decisions.kept_for_request():  # the next request works it out again
        assert decisions.once_per_request("page-test", compute) == 3
    # Outside a request nothing is kept.
    assert decisions.once_per_request("page-test", compute) == 4
    assert decisions.once_per_request("page-test", compute) == 5


def test_the_directory_asks_for_the_users_memberships_once_a_page(alice, counting_cache, settings):
    from tests.accounts.helpers import plain_static_storage, sign_in

    plain_static_storage(settings)
    client = HttpsClient()
    sign_in(client, alice)
    assert client.get("/studies/").status_code == 200
    counting_cache.answers_asked.clear()

    assert client.get("/studies/").status_code == 200

    # The memberships and the worklists among them, each once, however many parts ask.
    asked = counting_cache.answers_asked
    assert {f"decisions:memberships:{alice.pk}", f"decisions:worklists:{alice.pk}"} <= set(asked)
    assert len(asked) == len(set(asked)), asked


def test_a_users_next_page_asks_the_cache_once(alice, carol, counting_cache, settings, monkeypatch):
    """A logged-in user's next page asks for every answer the last one asked (two-factor,
    memberships, worklists, the tree...) in one round trip, but for the page itself, which this
    process keeps; another user's request never takes them."""
    from tests.accounts.helpers import plain_static_storage, sign_in

    plain_static_storage(settings)
    client = HttpsClient()
    sign_in(client, alice)
    assert client.get("/studies/").status_code == 200
    first = set(counting_cache.answers_asked)
    counting_cache.asked = 0
    counting_cache.answers_asked.clear()

    assert client.get("/studies/").status_code == 200

    assert counting_cache.asked == 1
    assert {f"decisions:memberships:{alice.pk}", f"decisions:worklists:{alice.pk}"} <= first
    pages = {key for key in first if key.startswith("decisions:directory-page:")}
    assert len(pages) == 1
    assert set(counting_cache.answers_asked) == first - pages

    other = HttpsClient()
    sign_in(other, carol)
    counting_cache.answers_asked.clear()
    assert other.get("/studies/").status_code == 200
    assert f"decisions:memberships:{carol.pk}" in counting_cache.answers_asked
    assert f"decisions:memberships:{alice.pk}" not in counting_cache.answers_asked


def test_an_answer_asked_ahead_answers_only_its_own_question(counting_cache):
    computed = []

    def compute():
        computed.append(1)
        return "computed", None

    with decisions.kept_for_request():
        decisions.remember("ahead:user:1", compute)
        decisions.remember("ahead-too:user:1", compute)
        decisions.note_asked("user:1", decisions.asked_in_request())
        # One answer is not worth asking ahead for (nor is none).
        decisions.note_asked("user:3", ["ahead:user:3"])
    assert computed == [1, 1]
    with decisions.kept_for_request():
        counting_cache.asked = 0
        decisions.ask_as_last_time("user:1")
        assert counting_cache.asked == 1
        # The question asked last time comes from the prefetch; another is asked and computed.
        assert decisions.remember("ahead:user:1", compute) == "computed"
        assert decisions.remember("ahead-too:user:1", compute) == "computed"
        assert decisions.remember("ahead:user:2", compute) == "computed"
        assert (counting_cache.asked, computed) == (2, [1, 1, 1])
        # Nor for one whose last request asked for a single answer.
        decisions.ask_as_last_time("user:3")
        assert counting_cache.asked == 2


def test_a_tokens_next_frames_ask_the_cache_once(ct_study, alice, counting_cache):
    """Who the token is and whether its user reaches the instance come back in one round trip:
    the token's earlier request told this process whom it stands for."""
    client = token_client(alice)
    first, second = ct_study.instances[:2]
    assert frame(client, first).status_code == 200
    rendered = instance_url(second, "frames", "1", "rendered")

    for url, accept in ((instance_url(second, "frames", "1"), RAW_FRAMES), (rendered, "image/png")):
        counting_cache.asked = 0
        assert client.get(url, HTTP_ACCEPT=accept).status_code == 200
        assert counting_cache.asked == 1


def test_a_viewer_tokens_next_frames_ask_the_cache_once(ct_study, alice, counting_cache):
    """OHIF's token: its verdict, whether its principal still reaches its studies, and the
    instance decision, in one round trip."""
    from tests.dicomweb.test_viewer_tokens import open_viewer, signed_in

    viewer = open_viewer(signed_in(alice), CT_STUDY_UID)
    first, second = ct_study.instances[:2]
    assert frame(viewer, first).status_code == 200
    counting_cache.asked = 0

    assert frame(viewer, second).status_code == 200
    assert counting_cache.asked == 1


def test_a_tokens_next_search_asks_the_cache_once(ct_study, alice, counting_cache):
    """QIDO-RS: the token's verdict and the remembered answer in one round trip, for each search
    the token made before."""
    client = token_client(alice)
    assert studies_found(client, PatientName="*") == [CT_STUDY_UID]
    assert studies_found(client, ModalitiesInStudy="CT") == [CT_STUDY_UID]

    for params in ({"PatientName": "*"}, {"ModalitiesInStudy": "CT"}):
        counting_cache.asked = 0
        assert studies_found(client, **params) == [CT_STUDY_UID]
        assert counting_cache.asked == 1, params


def test_a_wrong_guess_at_whom_a_token_stands_for_decides_nothing(ct_study, alice, carol):
    """A token's request asks ahead for the decisions of whom the token stood for last; should
    that guess be wrong, the answer asked ahead is another principal's and is not used."""
    ct = ct_study.instances[0]
    assert frame(token_client(alice), ct).status_code == 200  # alice's access, remembered
    secret = api_token(carol)  # carol reaches nothing of the study
    key = token_decision_key(secret)
    decisions.note_stood_for(key, f"user:{alice.pk}")

    carols = HttpsClient(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert frame(carols, ct).status_code == 404
    assert decisions.stood_for(key) == decisions.StoodFor(f"user:{carol.pk}")


def test_answers_asked_ahead_are_kept_for_the_request_only_while_true(counting_cache):
    computed = []

    def compute():
        computed.append(1)
        return "the answer", None

    decisions.remember("ahead-test", compute)
    with decisions.kept_for_request():
        decisions.prefetch("ahead-test", "ahead-unknown")
        assert decisions.remember("ahead-test", compute) == "the answer"
        assert (counting_cache.asked, len(computed)) == (2, 1)

    decisions.changed()
    with decisions.kept_for_request():
        decisions.prefetch("ahead-test")
        # Of an older generation: asked (and computed) again.
        assert decisions.remember("ahead-test", compute) == "the answer"
        assert (counting_cache.asked, len(computed)) == (4, 2)
    # Outside a request nothing would be kept, so nothing is asked.
    decisions.prefetch("ahead-test")
    assert counting_cache.asked == 4


# --- A series' first frames, asked at once -----------------------------------------------------


def _series_decided_elsewhere(answers: dict[str, str], *, together: str, seconds: float):
    """Another request (a thread, as another worker would be) deciding a series: it takes
    ``seconds`` and answers ``answers``. Started once it holds the series' mark."""
    started = threading.Event()

    def compute():
        started.set()
        time.sleep(seconds)
        return answers, None

    first_key = next(iter(answers))
    other = threading.Thread(
        target=decisions.remember_with_neighbours,
        args=(first_key, compute),
        kwargs={"together": together},
    )
    other.start()
    started.wait()
    return other


def test_a_frame_asked_while_another_decides_its_series_waits_for_that_answer():
    series = f"series-{uuid.uuid4()}"
    other = _series_decided_elsewhere(
        {f"{series}-1": "first", f"{series}-2": "second"}, together=series, seconds=0.05
    )
    computed = []

    def compute():
        computed.append(1)
        return {f"{series}-2": "computed again"}, None

    answer = decisions.remember_with_neighbours(f"{series}-2", compute, together=series)
    other.join()
    assert (answer, computed) == ("second", [])


def test_a_frame_the_other_request_did_not_decide_is_decided_once_that_one_is_done():
    """A refusal is not remembered, and a long series' far instances are not neighbours: the
    waiting request decides for itself as soon as the other is done, not after the longest
    wait."""
    series = f"series-{uuid.uuid4()}"
    started = time.monotonic()
    other = _series_decided_elsewhere({f"{series}-1": "first"}, together=series, seconds=0.03)

    def compute():
        return {f"{series}-400": "decided here"}, None

    answer = decisions.remember_with_neighbours(f"{series}-400", compute, together=series)
    other.join()
    assert answer == "decided here"
    assert time.monotonic() - started < decisions._WAIT_SECONDS


def test_a_series_whose_deciding_failed_is_decided_by_the_next_request_at_once():
    series = f"series-{uuid.uuid4()}"

    def failing():
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        decisions.remember_with_neighbours(f"{series}-1", failing, together=series)
    started = time.monotonic()
    answer = decisions.remember_with_neighbours(
        f"{series}-1", lambda: ({f"{series}-1": "decided"}, None), together=series
    )
    assert answer == "decided"
    assert time.monotonic() - started < decisions._WAIT_STEP_SECONDS * 4


def test_an_answer_asked_ahead_and_not_asked_for_is_not_asked_ahead_again(counting_cache):
    """What a request asks ahead is what the last one asked for: an answer the next page did not
    need (the worklist tree, under a remembered directory page) is not fetched for ever after."""

    def compute():
        return "computed", None

    with decisions.kept_for_request():
        decisions.remember("first:user:1", compute)
        decisions.remember("second:user:1", compute)
        decisions.note_asked("user:1", decisions.asked_in_request())
    with decisions.kept_for_request():
        decisions.ask_as_last_time("user:1")
        decisions.remember("first:user:1", compute)
        decisions.remember("third:user:1", compute)
        asked = decisions.asked_in_request()

    assert asked == ["first:user:1", "third:user:1"]


@pytest.mark.django_db(transaction=True)
def test_emptying_the_tables_ends_every_remembered_answer():
    """``manage.py flush`` deletes without signals: even the answers only a deletion ends (the
    stored instances' facts) must not outlive it."""
    scopes = (None, decisions.ACCOUNTS, decisions.STORED)
    for scope in scopes:
        decisions.remember(f"flush-test:{scope}", lambda: ("before", None), scope=scope)

    call_command("flush", interactive=False, verbosity=0)

    answers = [
        decisions.remember(f"flush-test:{scope}", lambda: ("after", None), scope=scope)
        for scope in scopes
    ]
    assert answers == ["after", "after", "after"]
