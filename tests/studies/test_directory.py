"""The Patient Study Directory: search, sorting, keyset pagination, the worklist tree, and the
search flow that keeps patient names out of URLs."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Role
from accounts.permissions import Perm
from studies.dicom_header import normalize_name
from studies.models import AccessLevel, Entry, EntryOrigin, Folder, Patient, Study
from studies.pagination import InvalidCursor, Sort
from studies.selectors import SearchCriteria, search_page, search_studies
from studies.services.ingestion import ingest_files
from studies.services.worklists import location_worklist, personal_worklist
from studies.synthetic import make_series, to_bytes
from tests.accounts.helpers import HttpsClient
from tests.conftest import make_user
from tests.factories import make_study, share_entry

pytestmark = pytest.mark.django_db


def named_study(org, location, *, family, given, patient_id, **extra) -> Study:
    """A study whose patient's search name is stored the way ingestion stores it."""
    study = make_study(
        org,
        location=location,
        family_name=family,
        given_name=given,
        patient_id=patient_id,
        **extra,
    )
    Patient.objects.filter(pk=study.patient_id).update(
        name_search=normalize_name(f"{given} {family}")
    )
    return study


def uids(page_or_studies) -> list[str]:
    studies = getattr(page_or_studies, "studies", page_or_studies)
    return [s.study_uid for s in studies]


def listed_uids(response) -> list[str]:
    return re.findall(r'data-menu-target="study" data-id="([^"]+)"', response.content.decode())


@pytest.fixture
def muller(org, location):
    return named_study(
        org,
        location,
        family="Müller",
        given="Hans",
        patient_id="PID-4711",
        accession="ACC-MUL-1",
        study_date=date(2024, 3, 1),
        modality="CT SR",
        description="CT Thorax",
    )


@pytest.fixture
def smith(org, location):
    return named_study(
        org,
        location,
        family="Smith",
        given="Anna",
        patient_id="PID-9001",
        accession="ACC-SMI-1",
        study_date=date(2023, 11, 20),
        modality="MR",
        description="MR Brain",
    )


# --- Search ------------------------------------------------------------------------------------


def test_name_search_is_accent_and_case_insensitive(alice, muller, smith):
    for query in ("muller", "MÜLLER", "Muller hans", "hans müller", "MüLL", "müller, hans"):
        assert uids(search_studies(alice, SearchCriteria(q=query))) == [muller.study_uid], query
    assert uids(search_studies(alice, SearchCriteria(q="muller anna"))) == []
    assert uids(search_studies(alice, SearchCriteria(q="schmidt"))) == []


def test_name_search_finds_an_ingested_patient(alice, org, location):
    datasets = make_series(
        patient_name="Ñúñez^José María",
        patient_id="ING-1",
        birth_date="19620704",
        sex="M",
        study_uid="1.2.826.0.1.3680043.10.999.1",
        study_date="20240105",
        study_description="CT Abdomen",
        accession="ING-ACC",
        modality="CT",
        series_number=1,
        series_description="Axial",
        slices=2,
        rows=32,
        columns=32,
    )
    ingest_files(
        files=[(f"{i}.dcm", io.BytesIO(to_bytes(ds))) for i, ds in enumerate(datasets)],
        organization=org,
        location=location,
    )
    found = search_studies(alice, SearchCriteria(q="nunez jose"))
    assert uids(found) == ["1.2.826.0.1.3680043.10.999.1"]


def test_patient_id_matches_exactly_or_by_prefix(alice, muller, smith):
    assert uids(search_studies(alice, SearchCriteria(patient_id="PID-4711"))) == [muller.study_uid]
    assert uids(search_studies(alice, SearchCriteria(patient_id="PID-47"))) == [muller.study_uid]
    assert set(uids(search_studies(alice, SearchCriteria(patient_id="PID-")))) == {
        muller.study_uid,
        smith.study_uid,
    }
    assert uids(search_studies(alice, SearchCriteria(patient_id="4711"))) == []


def test_accession_matches_exactly(alice, muller, smith):
    assert uids(search_studies(alice, SearchCriteria(accession="ACC-SMI-1"))) == [smith.study_uid]
    assert uids(search_studies(alice, SearchCriteria(accession="ACC-SMI"))) == []


def test_date_range_is_inclusive(alice, muller, smith):
    def found(**dates):
        return set(uids(search_studies(alice, SearchCriteria(**dates))))

    assert found(date_from=date(2024, 3, 1)) == {muller.study_uid}
    assert found(date_to=date(2023, 11, 20)) == {smith.study_uid}
    assert found(date_from=date(2023, 11, 20), date_to=date(2024, 3, 1)) == {
        muller.study_uid,
        smith.study_uid,
    }
    assert found(date_from=date(2023, 11, 21), date_to=date(2024, 2, 29)) == set()


def test_modality_matches_whole_codes_within_the_list(alice, org, location, muller, smith):
    ophthalmic = make_study(org, location=location, modality="OPT", patient_id="EYE-1")
    assert uids(search_studies(alice, SearchCriteria(modality="CT"))) == [muller.study_uid]
    assert uids(search_studies(alice, SearchCriteria(modality="SR"))) == [muller.study_uid]
    assert uids(search_studies(alice, SearchCriteria(modality="mr"))) == [smith.study_uid]
    assert uids(search_studies(alice, SearchCriteria(modality="OT"))) == []
    assert uids(search_studies(alice, SearchCriteria(modality="OPT"))) == [ophthalmic.study_uid]


def test_search_never_leaves_what_the_user_may_see(alice, bob, muller):
    assert uids(search_studies(bob, SearchCriteria(q="muller"))) == []
    assert uids(search_studies(bob, SearchCriteria())) == []
    assert uids(search_studies(alice, SearchCriteria())) == [muller.study_uid]


def test_name_search_does_not_find_a_study_seen_only_anonymized(carol, muller):
    # Finding it by the real name would reveal who the anonymized patient is.
    share_entry(
        carol,
        muller,
        level=AccessLevel.REPORT_READ,
        anonymized=True,
    )
    assert uids(search_studies(carol, SearchCriteria())) == [muller.study_uid]
    assert uids(search_studies(carol, SearchCriteria(q="muller"))) == []
    assert uids(search_studies(carol, SearchCriteria(patient_id="PID-4711"))) == []
    assert uids(search_studies(carol, SearchCriteria(accession="ACC-MUL-1"))) == []


# --- Sorting -----------------------------------------------------------------------------------


def test_sorting_by_each_column(alice, org, location):
    a = named_study(
        org,
        location,
        family="Adams",
        given="Zoe",
        patient_id="S1",
        study_date=date(2024, 1, 1),
        modality="US",
        description="Abdomen",
    )
    b = named_study(
        org,
        location,
        family="Zimmer",
        given="Al",
        patient_id="S2",
        study_date=date(2024, 6, 1),
        modality="CT",
        description="Chest",
    )
    c = named_study(
        org,
        location,
        family="Lopez",
        given="Bo",
        patient_id="S3",
        study_date=date(2023, 6, 1),
        modality="MR",
        description="Brain",
    )

    def order(sort):
        return uids(search_studies(alice, SearchCriteria(), sort=sort))

    assert order("-date") == [b.study_uid, a.study_uid, c.study_uid]
    assert order("date") == [c.study_uid, a.study_uid, b.study_uid]
    # By family name first, as directories are read.
    assert order("name") == [a.study_uid, c.study_uid, b.study_uid]
    assert order("-name") == [b.study_uid, c.study_uid, a.study_uid]
    assert order("modality") == [b.study_uid, c.study_uid, a.study_uid]
    assert order("description") == [a.study_uid, c.study_uid, b.study_uid]
    assert order("nonsense") == order("-date")


def test_ties_are_broken_by_id_in_a_stable_order(alice, org, location):
    same_day = [make_study(org, location=location, patient_id=f"T{i}") for i in range(4)]
    newest_first = uids(search_studies(alice, SearchCriteria(), sort="-date"))
    assert newest_first == [s.study_uid for s in reversed(same_day)]
    assert uids(search_studies(alice, SearchCriteria(), sort="date")) == [
        s.study_uid for s in same_day
    ]


def test_studies_without_a_date_sort_after_dated_ones_oldest_first(alice, org, location):
    dated = make_study(org, location=location, patient_id="D1")
    undated = make_study(org, location=location, patient_id="D2")
    Study.objects.filter(pk=undated.pk).update(study_date=None)
    assert uids(search_studies(alice, SearchCriteria(), sort="date")) == [
        dated.study_uid,
        undated.study_uid,
    ]
    assert uids(search_studies(alice, SearchCriteria(), sort="-date")) == [
        undated.study_uid,
        dated.study_uid,
    ]


# --- Keyset pagination -------------------------------------------------------------------------


@pytest.fixture
def many_studies(org, location):
    studies = []
    families = ["Berg", "Adler", "Cohen", "Dubois", "Evers"]
    for i in range(37):
        # Repeated dates, names, modalities and descriptions: the id must break every tie.
        study = named_study(
            org,
            location,
            family=families[i % 5],
            given=f"Kim{i % 3}",
            patient_id=f"PG-{i}",
            study_date=date(2024, 1, 1) + timedelta(days=i % 6),
            modality=["CT", "MR", "US"][i % 3],
            description=["Chest", "Head"][i % 2],
        )
        studies.append(study)
    Study.objects.filter(pk__in=[studies[3].pk, studies[10].pk]).update(study_date=None)
    return studies


@pytest.mark.parametrize(
    "sort",
    ["-date", "date", "name", "-name", "modality", "-modality", "description", "-description"],
)
def test_cursor_pages_cover_everything_once_both_ways(alice, many_studies, sort):
    sort = Sort.parse(sort)
    expected = uids(search_studies(alice, SearchCriteria(), sort=sort))
    assert len(expected) == len(many_studies)

    pages, cursor = [], None
    while True:
        page = search_page(alice, SearchCriteria(), sort=sort, cursor=cursor, page_size=5)
        pages.append(page)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    walked = [uid for page in pages for uid in uids(page)]
    assert walked == expected
    assert len(pages) == 8
    assert pages[0].previous_cursor is None

    # Back from the last page with "previous": the same pages in reverse.
    back, cursor = [uids(pages[-1])], pages[-1].previous_cursor
    while cursor:
        page = search_page(alice, SearchCriteria(), sort=sort, cursor=cursor, page_size=5)
        back.append(uids(page))
        cursor = page.previous_cursor
    assert back == [uids(page) for page in reversed(pages)]


def test_cursor_holds_no_patient_data(alice, many_studies):
    page = search_page(alice, SearchCriteria(), sort=Sort.parse("name"), page_size=5)
    import base64

    raw = base64.urlsafe_b64decode(page.next_cursor + "==").decode()
    assert "berg" not in raw.lower() and "adler" not in raw.lower()


def test_foreign_or_malformed_cursor_is_rejected(alice, carol, many_studies, other_org):
    page = search_page(alice, SearchCriteria(), sort=Sort(), page_size=5)
    with pytest.raises(InvalidCursor):
        # Carol may not continue from a row she cannot see.
        search_page(carol, SearchCriteria(), sort=Sort(), cursor=page.next_cursor, page_size=5)
    with pytest.raises(InvalidCursor):
        search_page(alice, SearchCriteria(), sort=Sort(), cursor="not-a-cursor", page_size=5)
    with pytest.raises(InvalidCursor):
        search_page(
            alice, SearchCriteria(), sort=Sort.parse("name"), cursor=page.next_cursor, page_size=5
        )


def test_directory_pages_through_html_without_counting(client, alice, many_studies, settings):
    settings.DIRECTORY_PAGE_SIZE = 10
    client.force_login(alice)
    seen, url = [], reverse("studies:directory") + "?sort=name"
    with CaptureQueriesContext(connection) as queries:
        while url:
            response = client.get(url)
            assert response.status_code == 200
            seen.extend(listed_uids(response))
            url = response.context["next_url"]
    assert len(seen) == len(set(seen)) == len(many_studies)
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]


def test_directory_query_count_does_not_grow_with_rows(
    client, alice, org, location, settings, django_assert_max_num_queries
):
    settings.DIRECTORY_PAGE_SIZE = 50
    for i in range(3):
        make_study(org, location=location, patient_id=f"Q{i}")
    client.force_login(alice)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("studies:directory"))
    for i in range(3, 40):
        make_study(org, location=location, patient_id=f"Q{i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse("studies:directory"))


def test_invalid_cursor_in_url_goes_back_to_the_first_page(client, alice, muller):
    client.force_login(alice)
    response = client.get(reverse("studies:directory") + "?cursor=garbage&sort=name")
    assert response.status_code == 302
    assert response.url == reverse("studies:directory") + "?sort=name"


# --- The search flow: criteria in the session, never in the URL --------------------------------


def test_search_posts_then_redirects_without_the_name_in_the_url(client, alice, muller, smith):
    client.force_login(alice)
    response = client.post(
        reverse("studies:search"),
        {
            "q": "Müller",
            "patient_id": "PID-4711",
            "accession": "",
            "modality": "",
            "date_from": "",
            "date_to": "",
            "sort": "-date",
        },
    )
    assert response.status_code == 302
    location = response.url
    for secret in ("ller", "uller", "PID", "4711"):
        assert secret not in location
    key = parse_qs(urlsplit(location).query)["s"][0]
    assert 6 <= len(key) <= 16
    assert client.session["directory_searches"][key]["q"] == "Müller"

    page = client.get(location)
    assert listed_uids(page) == [muller.study_uid]
    html = page.content.decode()
    assert 'value="Müller"' in html  # the form shows the search again
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    assert "Müller" not in title and "Hans" not in title
    # Every link on the page (sort headers, pager, tree) carries the key, never the name.
    for href in re.findall(r'href="([^"]+)"', html):
        assert "ller" not in href and "4711" not in href


def test_search_keeps_the_worklist_and_sort(client, alice, location, muller):
    worklist = location_worklist(location)
    client.force_login(alice)
    response = client.post(
        reverse("studies:search"), {"q": "muller", "worklist": worklist.pk, "sort": "name"}
    )
    query = parse_qs(urlsplit(response.url).query)
    assert query["worklist"] == [str(worklist.pk)]
    assert query["sort"] == ["name"]
    assert listed_uids(client.get(response.url)) == [muller.study_uid]


def test_empty_search_redirects_to_the_plain_directory(client, alice, muller):
    client.force_login(alice)
    response = client.post(reverse("studies:search"), {"q": "  "})
    assert response.status_code == 302
    assert response.url == reverse("studies:directory")


def test_invalid_search_re_renders_with_errors(client, alice, muller):
    client.force_login(alice)
    response = client.post(
        reverse("studies:search"), {"date_from": "2024-05-01", "date_to": "2024-04-01"}
    )
    assert response.status_code == 400
    assert "The end date is before the start date." in response.content.decode()


def test_search_of_another_session_is_not_usable(client, alice, bob, muller):
    client.force_login(alice)
    location = client.post(reverse("studies:search"), {"q": "muller"}).url
    other = HttpsClient()
    other.force_login(bob)
    response = other.get(location, follow=True)
    assert response.status_code == 200
    assert "That search has expired" in response.content.decode()
    assert listed_uids(response) == []


def test_sessions_keep_a_bounded_number_of_searches(client, alice, muller):
    client.force_login(alice)
    for i in range(25):
        client.post(reverse("studies:search"), {"q": f"name{i}"})
    assert len(client.session["directory_searches"]) == 20


def test_search_requires_post_and_login(client, alice):
    assert client.get(reverse("studies:search")).status_code in (302, 405)
    response = client.post(reverse("studies:search"), {"q": "x"})
    assert response.status_code == 302 and "/accounts/login" in response.url
    client.force_login(alice)
    assert client.get(reverse("studies:search")).status_code == 405


# --- Worklists and folders ---------------------------------------------------------------------


def test_tree_lists_the_users_worklists_and_folders(client, alice, location, muller):
    worklist = location_worklist(location)
    parent = Folder.objects.create(worklist=worklist, name="Tumour board")
    Folder.objects.create(worklist=worklist, parent=parent, name="March")
    client.force_login(alice)
    html = client.get(reverse("studies:directory")).content.decode()
    assert "Radiology" in html
    assert "Tumour board" in html and "March" in html
    assert f'data-menu-target="worklist" data-id="{worklist.pk}"' in html
    assert f'data-menu-target="folder" data-id="{parent.pk}"' in html


def test_worklist_and_folder_filters(client, alice, org, location, muller, smith):
    worklist = location_worklist(location)
    folder = Folder.objects.create(worklist=worklist, name="Teaching")
    child = Folder.objects.create(worklist=worklist, parent=folder, name="Chest")
    Entry.objects.filter(worklist=worklist, study=smith).update(folder=child)
    elsewhere = make_study(org, patient_id="NOWHERE")  # in no worklist of alice's
    client.force_login(alice)

    def listed(**params):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return set(listed_uids(client.get(reverse("studies:directory") + "?" + query)))

    assert listed(worklist=worklist.pk) == {muller.study_uid, smith.study_uid}
    # A folder shows its own entries and those of its subfolders.
    assert listed(folder=folder.pk) == {smith.study_uid}
    assert listed(folder=child.pk) == {smith.study_uid}
    assert elsewhere.study_uid not in listed()


def test_filter_by_a_worklist_the_user_may_not_see_is_empty(client, alice, bob, group, muller):
    from studies.services.worklists import group_worklist

    foreign = group_worklist(group)
    client.force_login(alice)
    response = client.get(reverse("studies:directory") + f"?worklist={foreign.pk}")
    assert response.status_code == 200
    assert listed_uids(response) == []
    assert "Neuroradiology" not in response.content.decode()


# --- Rows, permissions -------------------------------------------------------------------------


def test_rows_show_the_study_and_shared_badges(client, carol, muller):
    share_entry(
        carol,
        muller,
        level=AccessLevel.REPORT_READ,
        message="Please review",
        label="Second opinion",
    )
    client.force_login(carol)
    html = client.get(reverse("studies:directory")).content.decode()
    assert "Hans Müller" in html
    assert "PID-4711" in html and "ACC-MUL-1" in html
    assert 'class="badge unread"' in html
    assert "Second opinion" in html


def test_read_message_badge_turns_green_after_opening(client, carol, muller):
    share_entry(
        carol,
        muller,
        level=AccessLevel.REPORT_READ,
        message="Please review",
        opened_at=timezone.now(),
    )
    client.force_login(carol)
    html = client.get(reverse("studies:directory")).content.decode()
    assert 'class="badge read"' in html and 'class="badge unread"' not in html


def test_anonymized_rows_show_the_pseudonym_only(client, carol, muller):
    share_entry(
        carol,
        muller,
        level=AccessLevel.REPORT_READ,
        anonymized=True,
    )
    client.force_login(carol)
    html = client.get(reverse("studies:directory") + "?sort=name").content.decode()
    assert muller.study_uid in html
    assert "Anonymous" in html
    for secret in ("Müller", "Hans", "PID-4711", "ACC-MUL-1", "1970"):
        assert secret not in html


def test_directory_requires_a_role_that_may_view_studies(client, org, muller):
    role = Role.objects.create(name="Uploader", permissions=[Perm.UPLOAD_STUDIES.value])
    uploader = make_user("uploader")
    Membership.objects.create(user=uploader, organization=org, role=role)
    client.force_login(uploader)
    assert client.get(reverse("studies:directory")).status_code == 403


def test_user_outside_any_organization_with_a_shared_study_may_use_it(client, muller):
    guest = make_user("external")
    share_entry(
        guest,
        muller,
        level=AccessLevel.REPORT_READ,
    )
    client.force_login(guest)
    response = client.get(reverse("studies:directory"))
    assert response.status_code == 200
    assert listed_uids(response) == [muller.study_uid]


def test_directory_requires_login(client):
    response = client.get(reverse("studies:directory"))
    assert response.status_code == 302 and "/accounts/login" in response.url


def test_context_menu_items_come_from_the_registry(client, alice, muller, studies_menu_only):
    client.force_login(alice)
    response = client.get(reverse("studies:directory"))
    html = response.content.decode()
    data = re.search(r'<script id="menu-data" type="application/json">(.*?)</script>', html, re.S)
    assert data is not None
    import json

    items = json.loads(data.group(1))["items"]
    assert [i["key"] for i in items["study"]][:2] == ["open", "copy_link"]
    assert {i["kind"] for i in items["worklist"]} == {"link", "copy"}
    # Each row carries its authenticated deep link for Copy Link.
    link = f"https://testserver{reverse('studies:study', args=[muller.study_uid])}"
    assert f'data-link="{link}"' in html


def test_page_has_no_inline_script_or_style(client, alice, muller):
    client.force_login(alice)
    html = client.get(reverse("studies:directory")).content.decode()
    assert "style=" not in html and "<style" not in html
    assert not re.search(r"\son[a-z]+=", html)
    # Scripts come from files (modules, the text catalog); inline, only data a script reads.
    for script in re.findall(r"<script\b[^>]*>", html):
        assert ' src="' in script or 'type="application/json"' in script


def test_absurd_ids_and_cursors_do_not_break_the_page(client, alice, muller):
    client.force_login(alice)
    huge = "9" * 30
    for query in (f"worklist={huge}", f"folder={huge}", "worklist=-3", "folder=abc"):
        assert client.get(reverse("studies:directory") + "?" + query).status_code == 200, query
    import base64

    cursor = base64.urlsafe_b64encode(b'{"i":99999999999999999999999,"b":0,"s":"-date"}').decode()
    response = client.get(reverse("studies:directory") + "?cursor=" + cursor)
    assert response.status_code == 302


# --- The context menu registry -----------------------------------------------------------------


@pytest.fixture
def studies_menu_only():
    """The registry as the studies app alone fills it: these tests are about the mechanism,
    not about which other apps (guest links, shares) plug items in."""
    from studies import menu

    saved = dict(menu._registry)
    menu._registry.clear()
    menu._registry.update({key: saved[key] for key in ("open", "copy_link")})
    yield
    menu._registry.clear()
    menu._registry.update(saved)


@pytest.fixture
def send_link_item(studies_menu_only):
    from studies.menu import MenuItem, register_menu_item, unregister_menu_item

    item = MenuItem(
        key="test_send_link",
        label="Send Link",
        applies_to={"study", "folder"},
        url_name="studies:search",  # any routable view stands in for the dialog's own
        permission=Perm.CREATE_LINKS,
        kind="dialog",
        order=30,
        multiple=True,
    )
    register_menu_item(item)
    yield item
    unregister_menu_item(item.key)


def test_registered_dialog_item_reaches_users_with_the_permission(
    client, alice, org, muller, send_link_item
):
    from studies.menu import items_for

    assert [i.key for i in items_for(alice, "study")] == ["open", "test_send_link", "copy_link"]
    assert [i.key for i in items_for(alice, "worklist")] == ["open", "copy_link"]
    viewer_role = Role.objects.create(name="Viewer", permissions=[Perm.VIEW_STUDIES.value])
    reader = make_user("reader")
    Membership.objects.create(user=reader, organization=org, role=viewer_role)
    assert "test_send_link" not in [i.key for i in items_for(reader, "study")]

    client.force_login(alice)
    html = client.get(reverse("studies:directory")).content.decode()
    assert '"key": "test_send_link"' in html
    assert f'"url": "{reverse("studies:search")}"' in html
    assert '"multiple": true' in html


def test_menu_items_validate_their_definition():
    from studies.menu import MenuItem

    with pytest.raises(ValueError):
        MenuItem(key="x", label="X", applies_to={"patient"})
    with pytest.raises(ValueError):
        MenuItem(key="x", label="X", applies_to={"study"}, kind="dialog")
    with pytest.raises(ValueError):
        MenuItem(key="x", label="X", applies_to={"study"}, kind="popup")


def test_a_clear_share_beside_an_anonymized_one_shows_the_name(client, carol, muller):
    mine = personal_worklist(carol)
    for anonymized in (True, False):
        Entry.objects.create(
            worklist=mine,
            study=muller,
            origin=EntryOrigin.SHARE,
            level=AccessLevel.IMAGES,
            anonymized=anonymized,
        )
    client.force_login(carol)
    html = client.get(reverse("studies:directory")).content.decode()
    assert "Hans Müller" in html and "Anonymous" not in html
    assert uids(search_studies(carol, SearchCriteria(q="muller"))) == [muller.study_uid]
