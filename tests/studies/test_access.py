"""Who may see what: every door to a study (directory, viewer, REST API, rendered frames,
thumbnails, download, worklist and folder filters) asks ``studies.access`` and answers an
outsider exactly like a study that does not exist: 404 or an empty list, never 403.

The world (tests/conftest.py): alice works from org's Radiology location, bob from its
Neuroradiology group, dana administers org (sees all of it), carol belongs to another
organization.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from studies.access import get_study_for, user_study_access, visible_studies
from studies.models import AccessLevel, Entry, EntryOrigin, Folder, Report, Study
from studies.selectors import SearchCriteria, search_studies
from studies.services.ingestion import ingest_files
from studies.services.worklists import group_worklist, location_worklist, personal_worklist
from studies.synthetic import make_series, to_bytes
from tests.accounts.helpers import HttpsAPIClient, sign_in, without_random_values
from tests.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return HttpsAPIClient()


def ingest(org, location, *, study_uid, patient_name="Müller^Hans", patient_id="PID-4711"):
    datasets = make_series(
        patient_name=patient_name,
        patient_id=patient_id,
        birth_date="19580412",
        sex="M",
        study_uid=study_uid,
        study_date="20240517",
        study_description="CT Thorax",
        accession=f"ACC-{study_uid[-3:]}",
        modality="CT",
        series_number=1,
        series_description="Axial",
        slices=2,
        rows=32,
        columns=32,
    )
    result = ingest_files(
        files=[(f"{i}.dcm", io.BytesIO(to_bytes(ds))) for i, ds in enumerate(datasets)],
        organization=org,
        location=location,
    )
    assert not result.rejected
    return Study.objects.get(study_uid=study_uid)


@pytest.fixture
def radiology_study(org, location):
    """A real study with pixels, received at alice's location."""
    return ingest(org, location, study_uid="1.2.826.0.1.3680043.10.555.1")


@pytest.fixture
def carols_study(other_org, carol):
    imaging = other_org.locations.get(name="Imaging")
    return ingest(
        other_org,
        imaging,
        study_uid="1.2.826.0.1.3680043.10.555.2",
        patient_name="Outsider^Olga",
        patient_id="RIV-1",
    )


def doors(study) -> dict[str, tuple[str, str]]:
    """Every URL that opens something of a study, with the method to use."""
    series = study.series.first()
    instance = series.instances.first()
    return {
        "viewer": ("get", reverse("studies:study", args=[study.study_uid])),
        "report": ("post", reverse("studies:report", args=[study.study_uid])),
        "download": ("post", reverse("studies:download", args=[study.study_uid])),
        "frame": (
            "get",
            reverse(
                "dicomweb:rendered_frame",
                kwargs={
                    "study_uid": study.study_uid,
                    "series_uid": series.series_uid,
                    "instance_uid": instance.sop_instance_uid,
                    "frame": 1,
                },
            ),
        ),
        "thumbnail": (
            "get",
            reverse(
                "dicomweb:series_thumbnail",
                kwargs={"study_uid": study.study_uid, "series_uid": series.series_uid},
            ),
        ),
        "api": ("get", f"/api/v1/studies/{study.study_uid}/"),
    }


def knock(client, method, url):
    return client.post(url, {"text": "guess"}) if method == "post" else client.get(url)


def listed(client, **params) -> list[str]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    html = client.get(reverse("studies:directory") + ("?" + query if query else "")).content
    return re.findall(r'data-menu-target="study" data-id="([^"]+)"', html.decode())


def api_listed(api, **params) -> list[str]:
    response = api.get("/api/v1/studies/", params)
    assert response.status_code == 200
    return [row["study_uid"] for row in response.json()["results"]]


def share(study, worklist, **terms) -> Entry:
    terms.setdefault("level", AccessLevel.REPORT_READ)
    return Entry.objects.create(worklist=worklist, study=study, origin=EntryOrigin.SHARE, **terms)


# --- The owner's side: positive controls -------------------------------------------------------


def test_alice_opens_every_door_of_her_locations_study(client, alice, radiology_study):
    client.force_login(alice)
    for name, (method, url) in doors(radiology_study).items():
        if name == "report":
            continue  # a write; tested in test_reports
        response = knock(client, method, url)
        assert response.status_code == 200, name
    assert listed(client) == [radiology_study.study_uid]


# --- Outsiders ---------------------------------------------------------------------------------


def test_outsider_gets_404_at_every_door(client, api, carol, radiology_study):
    client.force_login(carol)
    for name, (method, url) in doors(radiology_study).items():
        assert knock(client, method, url).status_code == 404, name
    api.force_authenticate(carol)
    assert api.get(f"/api/v1/studies/{radiology_study.study_uid}/").status_code == 404
    assert not Report.objects.filter(study=radiology_study).exists()


def test_outsider_lists_nothing_of_the_other_organization(
    client, api, carol, radiology_study, carols_study
):
    client.force_login(carol)
    api.force_authenticate(carol)
    assert listed(client) == [carols_study.study_uid]
    assert api_listed(api) == [carols_study.study_uid]
    assert api_listed(api, q="muller") == []
    assert api_listed(api, patient_id="PID-4711") == []
    assert api_listed(api, accession=radiology_study.accession) == []


def test_guessing_a_study_answers_like_a_missing_one(client, carol, radiology_study):
    client.force_login(carol)
    real = client.get(reverse("studies:study", args=[radiology_study.study_uid]))
    made_up = client.get(reverse("studies:study", args=["1.2.826.0.1.3680043.10.555.999"]))
    assert real.status_code == made_up.status_code == 404
    # The same page, apart from the per-response CSRF mask of the log-out form.
    unmasked = [without_random_values(r.content.decode()) for r in (real, made_up)]
    assert unmasked[0] == unmasked[1]


def test_mixing_own_study_with_foreign_series_or_instance_gets_404(
    client, alice, radiology_study, carols_study
):
    client.force_login(alice)
    own, foreign = radiology_study, carols_study
    foreign_series = foreign.series.first()
    foreign_instance = foreign_series.instances.first()
    own_series = own.series.first()
    urls = [
        reverse(
            "dicomweb:rendered_frame",
            kwargs={
                "study_uid": own.study_uid,
                "series_uid": foreign_series.series_uid,
                "instance_uid": foreign_instance.sop_instance_uid,
                "frame": 1,
            },
        ),
        reverse(
            "dicomweb:rendered_frame",
            kwargs={
                "study_uid": own.study_uid,
                "series_uid": own_series.series_uid,
                "instance_uid": foreign_instance.sop_instance_uid,
                "frame": 1,
            },
        ),
        reverse(
            "dicomweb:series_thumbnail",
            kwargs={"study_uid": own.study_uid, "series_uid": foreign_series.series_uid},
        ),
    ]
    for url in urls:
        assert client.get(url).status_code == 404, url


def test_worklist_and_folder_ids_of_others_give_empty_lists(
    client, api, carol, location, radiology_study
):
    worklist = location_worklist(location)
    folder = Folder.objects.create(worklist=worklist, name="Board")
    Entry.objects.filter(study=radiology_study).update(folder=folder)
    client.force_login(carol)
    api.force_authenticate(carol)
    for params in ({"worklist": worklist.pk}, {"folder": folder.pk}):
        assert listed(client, **params) == []
        assert api_listed(api, **params) == []
    page = client.get(reverse("studies:directory") + f"?folder={folder.pk}").content.decode()
    assert "Board" not in page and "Radiology" not in page


def test_logged_out_visitor_gets_no_data(client, api, radiology_study):
    for name, (method, url) in doors(radiology_study).items():
        response = knock(client, method, url)
        assert response.status_code in (302, 401, 403, 404), name
        assert b"Hans" not in response.content and b"4711" not in response.content
    assert api.get("/api/v1/studies/").status_code in (401, 403)


# --- Inside the organization -------------------------------------------------------------------


def test_dana_sees_every_study_of_her_organization(client, dana, org, location, carols_study):
    received = make_study(org, location=location, patient_id="D-1")
    in_no_worklist = make_study(org, patient_id="D-2")
    sign_in(client, dana)
    assert set(listed(client)) == {received.study_uid, in_no_worklist.study_uid}
    assert set(visible_studies(dana)) == {received, in_no_worklist}
    assert client.get(reverse("studies:study", args=[in_no_worklist.study_uid])).status_code == 200
    assert client.get(reverse("studies:study", args=[carols_study.study_uid])).status_code == 404


def test_bob_sees_only_his_groups_worklist(client, api, bob, org, location, group):
    in_radiology = make_study(org, location=location, patient_id="B-1")
    for_the_group = make_study(org, patient_id="B-2")
    Entry.objects.create(
        worklist=group_worklist(group), study=for_the_group, origin=EntryOrigin.MANUAL
    )
    client.force_login(bob)
    api.force_authenticate(bob)
    assert listed(client) == [for_the_group.study_uid]
    assert api_listed(api) == [for_the_group.study_uid]
    assert client.get(reverse("studies:study", args=[in_radiology.study_uid])).status_code == 404
    assert api.get(f"/api/v1/studies/{in_radiology.study_uid}/").status_code == 404
    assert listed(client, worklist=location_worklist(location).pk) == []
    assert api_listed(api, worklist=location_worklist(location).pk) == []


def test_alice_does_not_see_the_groups_studies(client, alice, org, group):
    for_the_group = make_study(org, patient_id="G-1")
    Entry.objects.create(
        worklist=group_worklist(group), study=for_the_group, origin=EntryOrigin.MANUAL
    )
    client.force_login(alice)
    assert listed(client) == []
    assert listed(client, worklist=group_worklist(group).pk) == []
    assert client.get(reverse("studies:study", args=[for_the_group.study_uid])).status_code == 404


def test_removed_entry_of_a_received_study_ends_access(client, alice, radiology_study):
    Entry.objects.filter(study=radiology_study).update(removed_at=timezone.now())
    client.force_login(alice)
    assert listed(client) == []
    for name, (method, url) in doors(radiology_study).items():
        assert knock(client, method, url).status_code == 404, name


# --- Shares ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "terms",
    [
        {"valid_until": timezone.now() - timedelta(seconds=1)},
        {"removed_at": timezone.now()},
        {"blocked_at": timezone.now()},
    ],
    ids=["expired", "removed", "blocked"],
)
def test_inactive_share_gives_no_access(client, api, carol, radiology_study, terms):
    share(radiology_study, personal_worklist(carol), **terms)
    client.force_login(carol)
    api.force_authenticate(carol)
    assert radiology_study.study_uid not in listed(client)
    assert api_listed(api) == []
    for name, (method, url) in doors(radiology_study).items():
        assert knock(client, method, url).status_code == 404, name
    assert user_study_access(carol, radiology_study) is None


def test_share_expiring_later_gives_access_with_its_terms(client, api, carol, radiology_study):
    until = timezone.now() + timedelta(days=3)
    share(
        radiology_study,
        personal_worklist(carol),
        level=AccessLevel.IMAGES,
        valid_until=until,
        can_share=False,
    )
    client.force_login(carol)
    api.force_authenticate(carol)
    assert listed(client) == [radiology_study.study_uid]
    for name, (method, url) in doors(radiology_study).items():
        if name == "report":
            assert knock(client, method, url).status_code == 403  # may see, may not write
            continue
        assert knock(client, method, url).status_code == 200, name
    access = api.get(f"/api/v1/studies/{radiology_study.study_uid}/").json()["access"]
    assert access["level"] == "images"
    assert access["can_share"] is False
    assert access["until"] is not None


def test_share_to_a_group_reaches_its_members_only(client, bob, alice, radiology_study, group):
    share(radiology_study, group_worklist(group))
    Entry.objects.filter(study=radiology_study, origin=EntryOrigin.INGESTION).update(
        removed_at=timezone.now()
    )
    client.force_login(bob)
    assert listed(client) == [radiology_study.study_uid]
    client.force_login(alice)
    assert listed(client) == []


def test_share_in_a_worklist_the_user_cannot_see_gives_nothing(
    client, carol, bob, org, radiology_study
):
    # A share into bob's personal worklist does not reach carol, whatever id she tries.
    entry = share(radiology_study, personal_worklist(bob))
    client.force_login(carol)
    assert listed(client, worklist=entry.worklist_id) == []
    assert client.get(reverse("studies:study", args=[radiology_study.study_uid])).status_code == 404


def test_anonymized_share_hides_the_patient_everywhere(client, api, carol, radiology_study):
    Report.objects.create(study=radiology_study, text="Confidential impression.")
    share(
        radiology_study, personal_worklist(carol), level=AccessLevel.REPORT_WRITE, anonymized=True
    )
    client.force_login(carol)
    api.force_authenticate(carol)
    pages = [
        client.get(reverse("studies:directory")).content.decode(),
        client.get(reverse("studies:study", args=[radiology_study.study_uid])).content.decode(),
        api.get("/api/v1/studies/").content.decode(),
        api.get(f"/api/v1/studies/{radiology_study.study_uid}/").content.decode(),
    ]
    for page in pages:
        for secret in (
            "Müller",
            "Hans",
            "PID-4711",
            radiology_study.accession,
            "1958",
            "Confidential",
        ):
            assert secret not in page
        assert "Anonymous" in page
    # The report is never accessible for an anonymized study, even with write access.
    response = client.post(
        reverse("studies:report", args=[radiology_study.study_uid]), {"text": "x"}
    )
    assert response.status_code == 403


def test_best_entry_wins_but_never_blends(carol, radiology_study):
    mine = personal_worklist(carol)
    share(radiology_study, mine, level=AccessLevel.REPORT_WRITE, anonymized=True)
    share(radiology_study, mine, level=AccessLevel.IMAGES, anonymized=False)
    access = user_study_access(carol, radiology_study)
    # A clear images-only grant beats an anonymized one; it does not gain the other's write.
    assert access.anonymized is False
    assert access.level == AccessLevel.IMAGES
    assert not access.can_read_report


def test_report_panel_follows_the_level(client, carol, radiology_study):
    Report.objects.create(study=radiology_study, text="Impression: clear lungs.")
    entry = share(radiology_study, personal_worklist(carol), level=AccessLevel.IMAGES)
    client.force_login(carol)
    url = reverse("studies:study", args=[radiology_study.study_uid])
    expectations = {
        AccessLevel.IMAGES: (False, False),
        AccessLevel.REPORT_READ: (True, False),
        AccessLevel.REPORT_WRITE: (True, True),
    }
    for level, (reads, writes) in expectations.items():
        Entry.objects.filter(pk=entry.pk).update(level=level)
        html = client.get(url).content.decode()
        assert ("Impression: clear lungs." in html) is reads, level
        assert ("<textarea" in html) is writes, level


def test_get_study_for_is_the_single_gate(rf, alice, carol, radiology_study):
    from django.http import Http404

    request = rf.get("/")
    request.user = alice
    request.session = {}
    study, access = get_study_for(request, radiology_study.study_uid)
    assert study == radiology_study and access.level == AccessLevel.REPORT_WRITE
    request.user = carol
    with pytest.raises(Http404):
        get_study_for(request, radiology_study.study_uid)


def test_the_gates_study_lookup_is_built_once(rf, alice, org, location, built_queries):
    """Every study a viewer, a download or a DICOMweb client opens starts at get_study_for: its
    query is built once and only run after (``portal.prepared_queries``), the same study with
    its patient and organization, and 404 for a UID that names none."""
    from django.http import Http404

    first, second = make_study(org, location=location), make_study(org, location=location)
    request = rf.get("/")
    request.user = alice
    request.session = {}
    get_study_for(request, first.study_uid)
    built_queries.clear()

    study, _access = get_study_for(request, second.study_uid)
    with pytest.raises(Http404):
        get_study_for(request, "1.2.3.4.5.6")

    assert Study not in built_queries, built_queries
    assert study == second and study.patient == second.patient
    assert study.organization == org


def test_search_criteria_cannot_widen_what_is_visible(carol, radiology_study, location):
    worklist = location_worklist(location)
    criteria = SearchCriteria(worklist_id=worklist.pk, q="muller", modality="CT")
    assert list(search_studies(carol, criteria)) == []
