"""Folders in a worklist: made, renamed, nested and deleted by those whose role allows it, studies
filed in them by "Move to folder..." and the REST API, each change audited, and no change giving
or taking access to a study."""

import pytest
from django.urls import reverse

from accounts.models import Membership, Role
from accounts.permissions import CLINICIAN, Perm
from audit.models import Action, AuditEvent
from studies.access import (
    may_organize_folders,
    organizable_worklist_ids,
    visible_studies,
    visible_worklists,
)
from studies.models import Entry, Folder
from studies.services import folders as folder_services
from studies.services.folders import FolderError, FolderPermissionDenied
from studies.services.worklists import location_worklist, personal_worklist
from tests.accounts.helpers import api_token, sign_in
from tests.factories import make_study, share_entry

pytestmark = pytest.mark.django_db

FRAGMENT = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}


@pytest.fixture
def radiology(location):
    return location_worklist(location)


@pytest.fixture
def studies(org, location):
    return [
        make_study(org, location=location, patient_id=f"P-{n}", description=f"CT {n}")
        for n in range(3)
    ]


@pytest.fixture
def viewer_only(org, location):
    """A member who may view the location's studies but not organize its folders."""
    from tests.conftest import make_user

    role = Role.objects.create(
        name="Reader", permissions=[p.value for p in CLINICIAN if p != Perm.ORGANIZE_FOLDERS]
    )
    user = make_user("rita")
    membership = Membership.objects.create(user=user, organization=org, role=role)
    membership.locations.add(location)
    return user


def make(user, worklist, name, parent=None):
    return folder_services.create_folder(user=user, worklist=worklist, name=name, parent=parent)


# --- The rule ----------------------------------------------------------------------------------


def test_clinicians_organize_their_locations_folders_and_owners_their_own(
    alice, carol, viewer_only, radiology
):
    assert may_organize_folders(alice, radiology)
    # Another organization's member does not even see the worklist.
    assert not may_organize_folders(carol, radiology)
    # Seeing the worklist is not enough: the role must include the permission.
    assert radiology in visible_worklists(viewer_only)
    assert not may_organize_folders(viewer_only, radiology)
    # A personal worklist is its owner's to arrange, whatever the role.
    own = personal_worklist(viewer_only)
    assert may_organize_folders(viewer_only, own)
    assert not may_organize_folders(alice, own)
    assert organizable_worklist_ids(viewer_only) == {own.pk}


# --- Services ----------------------------------------------------------------------------------


def test_create_rename_nest_and_audit(alice, radiology):
    teaching = make(alice, radiology, "  Teaching   file ")
    assert teaching.name == "Teaching file"
    chest = make(alice, radiology, "Chest", parent=teaching)
    folder_services.rename_folder(user=alice, folder=chest, name="Thorax")
    board = make(alice, radiology, "Tumour board")
    folder_services.move_folder(user=alice, folder=chest, parent=board)
    chest.refresh_from_db()
    assert chest.parent_id == board.pk and chest.name == "Thorax"
    folder_services.move_folder(user=alice, folder=chest, parent=None)
    chest.refresh_from_db()
    assert chest.parent_id is None

    events = AuditEvent.objects.filter(target_type="folder").order_by("pk")
    assert [e.action for e in events] == [
        Action.FOLDER_CREATED,
        Action.FOLDER_CREATED,
        Action.FOLDER_RENAMED,
        Action.FOLDER_CREATED,
        Action.FOLDER_MOVED,
        Action.FOLDER_MOVED,
    ]
    assert all(e.actor_id == alice.pk for e in events)
    assert events[2].details["previous"] == "Chest"
    assert events[0].organization_id == radiology.organization_id


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_names_must_be_given_and_fit(alice, radiology, name):
    with pytest.raises(FolderError):
        make(alice, radiology, name)
    assert not Folder.objects.exists()


def test_sibling_names_are_unique_whatever_the_case(alice, radiology):
    teaching = make(alice, radiology, "Teaching file")
    with pytest.raises(FolderError, match="already exists"):
        make(alice, radiology, "teaching FILE")
    # The same name elsewhere in the tree is fine.
    make(alice, radiology, "Teaching file", parent=teaching)
    other = make(alice, radiology, "Other")
    with pytest.raises(FolderError, match="already exists"):
        folder_services.rename_folder(user=alice, folder=other, name="TEACHING FILE")


def test_a_folder_cannot_go_inside_itself(alice, radiology):
    top = make(alice, radiology, "Top")
    middle = make(alice, radiology, "Middle", parent=top)
    bottom = make(alice, radiology, "Bottom", parent=middle)
    for parent in (top, bottom):
        with pytest.raises(FolderError, match="inside itself"):
            folder_services.move_folder(user=alice, folder=top, parent=parent)
    top.refresh_from_db()
    assert top.parent_id is None


def test_nesting_has_a_limit(alice, radiology):
    parent = None
    for depth in range(folder_services.MAX_DEPTH):
        parent = make(alice, radiology, f"Level {depth}", parent=parent)
    with pytest.raises(FolderError, match="nest at most"):
        make(alice, radiology, "Too deep", parent=parent)
    # Moving a two-level branch under the deepest folder would exceed it too.
    branch = make(alice, radiology, "Branch")
    make(alice, radiology, "Leaf", parent=branch)
    deep = Folder.objects.get(name=f"Level {folder_services.MAX_DEPTH - 2}")
    with pytest.raises(FolderError, match="nest at most"):
        folder_services.move_folder(user=alice, folder=branch, parent=deep)


def test_folders_of_another_worklist_are_refused(alice, org, radiology):
    from accounts.models import Location

    emergency = Location.objects.create(organization=org, name="Emergency")
    Membership.objects.get(user=alice).locations.add(emergency)
    elsewhere = make(alice, location_worklist(emergency), "Elsewhere")
    with pytest.raises(FolderError, match="another worklist"):
        make(alice, radiology, "Child", parent=elsewhere)


def test_filing_moves_only_the_worklists_entries_and_changes_no_access(
    alice, bob, radiology, studies
):
    folder = make(alice, radiology, "Tumour board")
    outside = make_study(radiology.organization, patient_id="P-X")  # not in Radiology
    share_entry(bob, studies[0])
    seen_before = set(visible_studies(bob).values_list("pk", flat=True))

    moved = folder_services.file_studies(
        user=alice, worklist=radiology, studies=[studies[0], studies[1], outside], folder=folder
    )
    assert moved == 2
    in_folder = Entry.objects.filter(folder=folder)
    assert {e.study_id for e in in_folder} == {studies[0].pk, studies[1].pk}
    assert all(e.worklist_id == radiology.pk for e in in_folder)
    # bob's shortcut in his own worklist stayed where it was, and so did his access.
    assert Entry.objects.get(worklist__owner=bob).folder_id is None
    assert set(visible_studies(bob).values_list("pk", flat=True)) == seen_before

    filed = AuditEvent.objects.filter(action=Action.STUDIES_FILED).order_by("pk")
    assert [e.study_uid for e in filed] == [studies[0].study_uid, studies[1].study_uid]
    assert filed[0].details["folder"] == "Tumour board"

    # Filing again changes nothing and records nothing; out of the folder takes them out.
    assert (
        folder_services.file_studies(
            user=alice, worklist=radiology, studies=studies[:2], folder=folder
        )
        == 0
    )
    assert (
        folder_services.file_studies(user=alice, worklist=radiology, studies=studies, folder=None)
        == 2
    )
    assert not Entry.objects.filter(folder__isnull=False).exists()


def test_deleting_a_folder_keeps_every_study(alice, radiology, studies):
    board = make(alice, radiology, "Tumour board")
    sub = make(alice, radiology, "March", parent=board)
    folder_services.file_studies(user=alice, worklist=radiology, studies=studies[:1], folder=board)
    folder_services.file_studies(user=alice, worklist=radiology, studies=studies[1:], folder=sub)
    entries = Entry.objects.filter(worklist=radiology).count()

    summary = folder_services.deletion_summary(board)
    assert (summary.subfolders, summary.studies_unfiled) == (1, 3)
    folder_services.delete_folder(user=alice, folder=board)

    assert not Folder.objects.exists()
    assert Entry.objects.filter(worklist=radiology, folder__isnull=True).count() == entries == 3
    event = AuditEvent.objects.get(action=Action.FOLDER_DELETED)
    assert event.details == {
        "worklist": radiology.pk,
        "folder": "Tumour board",
        "subfolders": 1,
        "studies_unfiled": 3,
    }


def test_without_the_permission_every_change_is_refused_naming_it(
    alice, viewer_only, radiology, studies
):
    folder = make(alice, radiology, "Teaching file")
    attempts = [
        lambda: make(viewer_only, radiology, "Mine"),
        lambda: folder_services.rename_folder(user=viewer_only, folder=folder, name="Mine"),
        lambda: folder_services.move_folder(user=viewer_only, folder=folder, parent=None),
        lambda: folder_services.delete_folder(user=viewer_only, folder=folder),
        lambda: folder_services.file_studies(
            user=viewer_only, worklist=radiology, studies=studies, folder=folder
        ),
    ]
    for attempt in attempts:
        with pytest.raises(FolderPermissionDenied) as refused:
            attempt()
        assert str(Perm.ORGANIZE_FOLDERS.label) in str(refused.value)
    folder.refresh_from_db()
    assert folder.name == "Teaching file"
    assert not Entry.objects.filter(folder=folder).exists()


# --- The directory's dialogs ---------------------------------------------------------------------


def test_new_folder_dialog_creates_and_shows_the_folder(client, alice, radiology):
    sign_in(client, alice)
    url = reverse("studies:folder_new")
    form = client.get(url, {"worklist": radiology.pk}, **FRAGMENT)
    assert form.status_code == 200
    assert 'name="name"' in form.content.decode() and "<html" not in form.content.decode()

    created = client.post(url, {"worklist": radiology.pk, "name": "Teaching file"}, **FRAGMENT)
    folder = Folder.objects.get()
    assert created.status_code == 204
    assert created["X-Dialog-Redirect"] == f"{reverse('studies:directory')}?folder={folder.pk}"

    # A subfolder, from a browser without scripts: the page, then a redirect.
    page = client.get(url, {"folder": folder.pk})
    assert page.status_code == 200 and "<html" in page.content.decode()
    response = client.post(url, {"folder": folder.pk, "name": "Chest"})
    assert response.status_code == 303  # see other: the directory, by GET
    assert Folder.objects.get(name="Chest").parent_id == folder.pk


def test_new_folder_dialog_says_what_is_wrong(client, alice, radiology):
    sign_in(client, alice)
    make(alice, radiology, "Teaching file")
    response = client.post(
        reverse("studies:folder_new"),
        {"worklist": radiology.pk, "name": "teaching file"},
        **FRAGMENT,
    )
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert Folder.objects.count() == 1


def test_dialogs_answer_404_for_what_the_user_cannot_see(client, alice, carol, radiology):
    folder = make(alice, radiology, "Teaching file")
    sign_in(client, carol)
    for name, params in [
        ("studies:folder_new", {"worklist": radiology.pk}),
        ("studies:folder_new", {"folder": folder.pk}),
        ("studies:folder_rename", {"folder": folder.pk}),
        ("studies:folder_move", {"folder": folder.pk}),
        ("studies:folder_delete", {"folder": folder.pk}),
    ]:
        assert client.get(reverse(name), params).status_code == 404
        assert client.post(reverse(name), {**params, "name": "x"}).status_code == 404
    folder.refresh_from_db()
    assert folder.name == "Teaching file"


def test_dialogs_refuse_a_role_without_the_permission_and_name_it(
    client, alice, viewer_only, radiology
):
    folder = make(alice, radiology, "Teaching file")
    sign_in(client, viewer_only)
    for name, params in [
        ("studies:folder_new", {"worklist": radiology.pk}),
        ("studies:folder_rename", {"folder": folder.pk}),
        ("studies:folder_delete", {"folder": folder.pk}),
    ]:
        response = client.get(reverse(name), params, **FRAGMENT)
        assert response.status_code == 403
        assert str(Perm.ORGANIZE_FOLDERS.label) in response.content.decode()
    response = client.post(
        reverse("studies:folder_rename"), {"folder": folder.pk, "name": "Mine"}, **FRAGMENT
    )
    assert response.status_code == 403
    folder.refresh_from_db()
    assert folder.name == "Teaching file"


def test_delete_dialog_asks_first_and_says_the_studies_stay(client, alice, radiology, studies):
    folder = make(alice, radiology, "Tumour board")
    folder_services.file_studies(user=alice, worklist=radiology, studies=studies, folder=folder)
    sign_in(client, alice)
    url = reverse("studies:folder_delete")
    confirm = client.get(url, {"folder": folder.pk}, **FRAGMENT)
    text = confirm.content.decode()
    assert confirm.status_code == 200
    assert "Its 3 studies stay in the worklist" in text
    assert Folder.objects.exists()  # asking deleted nothing

    done = client.post(url, {"folder": folder.pk}, **FRAGMENT)
    assert done.status_code == 204
    assert done["X-Dialog-Redirect"].endswith(f"?worklist={radiology.pk}")
    assert not Folder.objects.exists()
    assert Entry.objects.filter(worklist=radiology).count() == 3


def test_move_folder_dialog_offers_no_place_inside_the_folder(client, alice, radiology):
    top = make(alice, radiology, "Top")
    child = make(alice, radiology, "Child", parent=top)
    other = make(alice, radiology, "Other")
    sign_in(client, alice)
    url = reverse("studies:folder_move")
    text = client.get(url, {"folder": top.pk}, **FRAGMENT).content.decode()
    assert f'value="folder:{other.pk}"' in text
    assert f'value="folder:{child.pk}"' not in text and f'value="folder:{top.pk}"' not in text
    refused = client.post(url, {"folder": top.pk, "target": f"folder:{child.pk}"}, **FRAGMENT)
    assert refused.status_code == 400
    moved = client.post(url, {"folder": top.pk, "target": f"folder:{other.pk}"}, **FRAGMENT)
    assert moved.status_code == 204
    top.refresh_from_db()
    assert top.parent_id == other.pk


def test_move_to_folder_dialog_files_the_selected_studies(client, alice, radiology, studies):
    folder = make(alice, radiology, "Tumour board")
    sign_in(client, alice)
    url = reverse("studies:folder_file")
    selected = [s.study_uid for s in studies[:2]]
    form = client.get(url, {"study": selected}, **FRAGMENT)
    text = form.content.decode()
    assert f'value="folder:{folder.pk}"' in text and f'value="worklist:{radiology.pk}"' in text

    done = client.post(url, {"study": selected, "target": f"folder:{folder.pk}"}, **FRAGMENT)
    assert done.status_code == 204
    assert set(
        Entry.objects.filter(folder=folder).values_list("study__study_uid", flat=True)
    ) == set(selected)
    # Out of the folder again: the worklist's top level.
    out = client.post(
        url, {"study": selected[:1], "target": f"worklist:{radiology.pk}"}, **FRAGMENT
    )
    assert out.status_code == 204
    assert Entry.objects.filter(folder=folder).count() == 1


def test_move_to_folder_refuses_unseen_studies_and_unknown_places(
    client, alice, carol, radiology, studies
):
    folder = make(alice, radiology, "Tumour board")
    url = reverse("studies:folder_file")
    sign_in(client, carol)
    assert client.get(url, {"study": studies[0].study_uid}).status_code == 404
    response = client.post(
        url, {"study": studies[0].study_uid, "target": f"folder:{folder.pk}"}, **FRAGMENT
    )
    assert response.status_code == 404
    sign_in(client, alice)
    response = client.post(
        url, {"study": studies[0].study_uid, "target": "folder:999999"}, **FRAGMENT
    )
    assert response.status_code == 400
    assert not Entry.objects.filter(folder__isnull=False).exists()


def test_directory_marks_what_the_user_may_organize(client, alice, viewer_only, radiology, studies):
    folder = make(alice, radiology, "Teaching file")
    sign_in(client, alice)
    page = client.get(reverse("studies:directory")).content.decode()
    assert f'data-drop-target="worklist:{radiology.pk}"' in page
    assert f'data-drop-target="folder:{folder.pk}"' in page
    assert 'draggable="true"' in page
    assert "data-file-studies-form" in page

    client.logout()
    sign_in(client, viewer_only)
    page = client.get(reverse("studies:directory")).content.decode()
    assert "Teaching file" in page  # seen, not organizable
    assert "data-drop-target" not in page and 'draggable="true"' not in page
    assert "data-file-studies-form" not in page
    assert "new_folder" not in page.split('id="menu-data"')[0]


def test_menu_folder_items_are_checked_per_target():
    from studies import menu

    items = {item.key: item for item in menu.FOLDER_ITEMS}
    assert set(items) == {
        "new_folder",
        "rename_folder",
        "move_folder",
        "delete_folder",
        "file_studies",
    }
    assert all(item.as_client()["checked"] for item in items.values())
    assert items["file_studies"].multiple


def test_folder_filter_shows_the_filed_studies_and_those_of_subfolders(
    client, alice, radiology, studies
):
    board = make(alice, radiology, "Tumour board")
    march = make(alice, radiology, "March", parent=board)
    folder_services.file_studies(user=alice, worklist=radiology, studies=studies[:1], folder=board)
    folder_services.file_studies(user=alice, worklist=radiology, studies=studies[1:2], folder=march)
    sign_in(client, alice)
    page = client.get(reverse("studies:directory"), {"folder": board.pk}).content.decode()
    assert "CT 0" in page and "CT 1" in page and "CT 2" not in page


def test_remembered_folder_lists_follow_every_folder_change(client, alice, radiology, studies):
    """The directory and the API remember a search's page (``portal.decisions``); filing
    studies, moving a folder and deleting one must show at the very next request."""
    board = make(alice, radiology, "Tumour board")
    march = make(alice, radiology, "March")
    board_id, march_id = board.pk, march.pk
    sign_in(client, alice)

    def listed(folder_id):
        page = client.get(reverse("studies:directory"), {"folder": folder_id}).content.decode()
        return {f"CT {n}" for n in range(3) if f"CT {n}" in page}

    def api_listed(folder_id):
        response = client.get(
            "/api/v1/studies/",
            {"folder": folder_id},
            HTTP_AUTHORIZATION=f"Token {token}",
        )
        return {row["description"] for row in response.json()["results"]}

    token = api_token(alice)
    assert listed(board_id) == set() == api_listed(board_id)
    folder_services.file_studies(user=alice, worklist=radiology, studies=studies[:1], folder=board)
    folder_services.file_studies(user=alice, worklist=radiology, studies=studies[1:2], folder=march)
    assert listed(board_id) == {"CT 0"} == api_listed(board_id)
    assert listed(march_id) == {"CT 1"} == api_listed(march_id)

    folder_services.move_folder(user=alice, folder=march, parent=board)
    assert listed(board_id) == {"CT 0", "CT 1"} == api_listed(board_id)

    folder_services.delete_folder(user=alice, folder=board)
    assert listed(board_id) == set() == api_listed(board_id)


# --- REST API ------------------------------------------------------------------------------------


@pytest.fixture
def api(client):
    def as_user(user):
        client.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
        return client

    return as_user


def test_api_lists_creates_renames_nests_and_deletes(api, alice, radiology):
    client = api(alice)
    base = f"/api/v1/worklists/{radiology.pk}/folders/"
    created = client.post(base, {"name": "Teaching file"}, content_type="application/json")
    assert created.status_code == 201
    teaching = created.json()
    assert teaching["name"] == "Teaching file" and teaching["parent"] is None
    child = client.post(
        base, {"name": "Chest", "parent": teaching["id"]}, content_type="application/json"
    ).json()
    assert client.get(base).json() == [child, teaching]

    renamed = client.patch(
        f"/api/v1/folders/{child['id']}/",
        {"name": "Thorax", "parent": None},
        content_type="application/json",
    )
    assert renamed.status_code == 200
    assert renamed.json() == {"id": child["id"], "name": "Thorax", "parent": None}

    deleted = client.delete(f"/api/v1/folders/{teaching['id']}/")
    assert deleted.json() == {"name": "Teaching file", "subfolders": 0, "studies_unfiled": 0}
    assert [f["name"] for f in client.get(base).json()] == ["Thorax"]


def test_api_files_studies_and_takes_them_out(api, alice, radiology, studies):
    client = api(alice)
    folder = make(alice, radiology, "Tumour board")
    url = f"/api/v1/worklists/{radiology.pk}/file/"
    uids = [s.study_uid for s in studies]
    response = client.post(
        url, {"studies": uids, "folder": folder.pk}, content_type="application/json"
    )
    assert response.json() == {"moved": 3}
    assert Entry.objects.filter(folder=folder).count() == 3
    response = client.post(
        url, {"studies": uids[:1], "folder": None}, content_type="application/json"
    )
    assert response.json() == {"moved": 1}
    listed = client.get("/api/v1/studies/", {"folder": folder.pk}).json()["results"]
    assert {row["study_uid"] for row in listed} == set(uids[1:])


def test_api_errors(api, alice, carol, viewer_only, radiology, studies):
    folder = make(alice, radiology, "Teaching file")
    client = api(carol)
    assert client.get(f"/api/v1/worklists/{radiology.pk}/folders/").status_code == 404
    assert client.delete(f"/api/v1/folders/{folder.pk}/").status_code == 404

    client = api(viewer_only)
    refused = client.post(
        f"/api/v1/worklists/{radiology.pk}/folders/",
        {"name": "Mine"},
        content_type="application/json",
    )
    assert refused.status_code == 403
    assert str(Perm.ORGANIZE_FOLDERS.label) in refused.json()["detail"]

    client = api(alice)
    duplicate = client.post(
        f"/api/v1/worklists/{radiology.pk}/folders/",
        {"name": "TEACHING FILE"},
        content_type="application/json",
    )
    assert duplicate.status_code == 400 and "already exists" in duplicate.json()["detail"]
    unknown = client.post(
        f"/api/v1/worklists/{radiology.pk}/file/",
        {"studies": ["1.2.3.999"], "folder": folder.pk},
        content_type="application/json",
    )
    assert unknown.status_code == 404
    # A name refused after a move leaves the move undone too.
    make(alice, radiology, "Taken", parent=folder)
    other = make(alice, radiology, "Other")
    both = client.patch(
        f"/api/v1/folders/{other.pk}/",
        {"parent": folder.pk, "name": "taken"},
        content_type="application/json",
    )
    assert both.status_code == 400
    other.refresh_from_db()
    assert other.parent_id is None and other.name == "Other"
