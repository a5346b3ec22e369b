"""QIDO-RS stories: alice searches St. Elsewhere's studies from a DICOMweb client (dicomweb-client,
OHIF) with every matching form PS3.18 and PS3.4 define, and gets DICOM JSON back; carol, bob and
a guest search what shares and links gave them, and find exactly that, no more.

The world (``tests/dicomweb/conftest.py``): the CT-and-MR study of Dubois^Marie (PAT-7001) of
2024-06-01 in alice's Radiology location. Some stories add her 2021 prior, a study of
Müller^Zoë, and a structured report.
"""

from __future__ import annotations

import json
import re

import pydicom
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pydicom import Dataset
from pydicom.uid import generate_uid

from audit.models import Action, AuditEvent
from guestlinks.models import GuestLink, TargetKind
from guestlinks.tokens import digest_for, new_salt, token_for
from notifications.models import Channel, Message
from studies.anonymize import pseudonym
from studies.models import Study
from studies.synthetic import bundled_test_file, to_bytes
from tests.accounts.helpers import HttpsClient
from tests.dicomweb.conftest import CT_STUDY_UID, api_token, ct_datasets, ingest, token_client
from tests.dicomweb.plain_http import dicomweb_client, live_portal
from tests.factories import make_study, share_entry
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db

PRIOR_UID = "1.2.826.0.1.3680043.8.498.7002"
ZOE_UID = "1.2.826.0.1.3680043.8.498.7003"

# Tags of the DICOM JSON answers.
PATIENT_NAME, PATIENT_ID, BIRTH_DATE, SEX = "00100010", "00100020", "00100030", "00100040"
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
STUDY_DATE, STUDY_TIME, ACCESSION, MODALITIES = "00080020", "00080030", "00080050", "00080061"
REFERRING, STUDY_DESCRIPTION, STUDY_ID = "00080090", "00081030", "00200010"
STUDY_SERIES, STUDY_INSTANCES = "00201206", "00201208"
MODALITY, SERIES_NUMBER, SERIES_DESCRIPTION, BODY_PART = (
    "00080060",
    "00200011",
    "0008103E",
    "00180015",
)
SERIES_INSTANCES, INSTANCE_NUMBER, ROWS, COLUMNS, FRAMES = (
    "00201209",
    "00200013",
    "00280010",
    "00280011",
    "00280008",
)
RETRIEVE_URL, AVAILABILITY, CHARSET, SOP_CLASS = "00081190", "00080056", "00080005", "00080016"


# --- Helpers -------------------------------------------------------------------------------------


def search(client, path: str, **params):
    """GET /dicomweb/<path> with ``params``; asserts a JSON array came back and returns it."""
    response = client.get(f"/dicomweb/{path}", params)
    assert response.status_code == 200, response.content.decode()[:500]
    return response.json()


def values(results: list[dict], tag: str) -> list:
    """The first value of ``tag`` in each result (None when empty)."""
    return [result[tag].get("Value", [None])[0] for result in results]


def uids(results: list[dict]) -> list[str]:
    return values(results, STUDY_UID)


def add_study(org, location, *, study_uid: str, **overrides) -> Study:
    files = {
        ds.SOPInstanceUID: to_bytes(ds) for ds in ct_datasets(study_uid=study_uid, **overrides)
    }
    ingest(org, location, files)
    return Study.objects.get(study_uid=study_uid)


@pytest.fixture
def prior(org, location, ct_study) -> Study:
    """Marie Dubois's CT of 2021, seen at 14:30 and referred by Dr Paul Martin."""
    return add_study(
        org,
        location,
        study_uid=PRIOR_UID,
        study_date="20210315",
        study_time="143000",
        accession="ACC7002",
        study_description="CT Head 2021",
        referring_physician="Martin^Paul",
    )


@pytest.fixture
def zoe(org, location, ct_study) -> Study:
    return add_study(
        org,
        location,
        study_uid=ZOE_UID,
        patient_name="Müller^Zoë",
        patient_id="PAT-7003",
        birth_date="19800101",
        study_date="20240620",
        accession="ACC7003",
        study_description="CT Sinus",
    )


def add_structured_report(org, location, study: Study) -> str:
    """pydicom's bundled Comprehensive SR, filed as series 9 of ``study``; its SOP Instance
    UID."""
    ds = pydicom.dcmread(bundled_test_file("test-SR.dcm"))
    ds.StudyInstanceUID = study.study_uid
    ds.PatientID, ds.PatientName = study.patient.patient_id, study.patient.name
    ds.SeriesInstanceUID, ds.SeriesNumber = generate_uid(), 9
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ingest(org, location, {"report.dcm": to_bytes(ds)})
    return ds.SOPInstanceUID


def logged_in(user) -> HttpsClient:
    client = HttpsClient()
    client.force_login(user)
    return client


def open_guest_link(study: Study, **fields) -> HttpsClient:
    """A guest's browser holding the grant of a new link to ``study`` (no gates)."""
    salt = new_salt()
    token = token_for(salt)
    GuestLink.objects.create(
        target_kind=TargetKind.STUDY,
        study=study,
        organization_id=study.organization_id,
        token_salt=salt,
        token_digest=digest_for(token),
        **fields,
    )
    guest = HttpsClient()
    opened = guest.post(reverse("guest:link", args=[token]), {"action": "open"})
    assert opened.status_code == 303, opened.content.decode()[:500]
    return guest


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


# --- The answer --------------------------------------------------------------------------------


def test_a_study_search_answers_dicom_json_as_ps3_18_writes_it(ct_study, alice, settings):
    settings.SITE_URL = "https://portal.example.org:8443"
    response = token_client(alice).get("/dicomweb/studies")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    (study,) = response.json()
    assert list(study) == sorted(study), "attributes in ascending tag order"
    assert study[PATIENT_NAME] == {"vr": "PN", "Value": [{"Alphabetic": "Dubois^Marie"}]}
    assert study[PATIENT_ID] == {"vr": "LO", "Value": ["PAT-7001"]}
    assert study[BIRTH_DATE] == {"vr": "DA", "Value": ["19590303"]}
    assert study[SEX] == {"vr": "CS", "Value": ["F"]}
    assert study[STUDY_UID] == {"vr": "UI", "Value": [CT_STUDY_UID]}
    assert study[STUDY_DATE] == {"vr": "DA", "Value": ["20240601"]}
    assert study[STUDY_TIME] == {"vr": "TM", "Value": ["090000"]}
    assert study[ACCESSION] == {"vr": "SH", "Value": ["ACC7001"]}
    assert study[MODALITIES] == {"vr": "CS", "Value": ["CT", "MR"]}
    assert study[STUDY_DESCRIPTION] == {"vr": "LO", "Value": ["CT Head"]}
    # Counts are numbers, as F.2.3 writes IS.
    assert study[STUDY_SERIES] == {"vr": "IS", "Value": [2]}
    assert study[STUDY_INSTANCES] == {"vr": "IS", "Value": [4]}
    # Empty attributes have no Value at all: no referring physician; the study ID is not kept.
    assert study[REFERRING] == {"vr": "PN"}
    assert study[STUDY_ID] == {"vr": "SH"}
    assert study[AVAILABILITY] == {"vr": "CS", "Value": ["ONLINE"]}
    assert study[CHARSET] == {"vr": "CS", "Value": ["ISO_IR 192"]}
    # Built from SITE_URL, port included, whatever Host the client sent.
    assert study[RETRIEVE_URL] == {
        "vr": "UR",
        "Value": [f"https://portal.example.org:8443/dicomweb/studies/{CT_STUDY_UID}"],
    }
    # pydicom reads it as the DICOM JSON model.
    parsed = Dataset.from_json(study)
    assert (parsed.PatientName, parsed.NumberOfStudyRelatedInstances) == ("Dubois^Marie", 4)


def test_nothing_matching_is_200_with_an_empty_array(ct_study, alice):
    response = token_client(alice).get("/dicomweb/studies", {"PatientID": "NOBODY"})
    assert response.status_code == 200
    assert response.json() == []


def test_retrieve_urls_at_series_and_instance_level_name_the_whole_path(ct_study, alice, settings):
    settings.SITE_URL = "https://portal.example.org"
    client = token_client(alice)
    series = search(client, f"studies/{CT_STUDY_UID}/series", Modality="MR")
    (series_uid,) = values(series, SERIES_UID)
    base = f"https://portal.example.org/dicomweb/studies/{CT_STUDY_UID}/series/{series_uid}"
    assert values(series, RETRIEVE_URL) == [base]
    (instance,) = search(client, f"studies/{CT_STUDY_UID}/series/{series_uid}/instances")
    assert instance[RETRIEVE_URL]["Value"] == [f"{base}/instances/{instance[SOP_UID]['Value'][0]}"]


# --- Matching ----------------------------------------------------------------------------------


def test_person_names_match_case_and_accent_insensitively_with_wildcards(zoe, alice):
    client = token_client(alice)
    for name in ("dub*", "DUBOIS^MARIE", "*bois*", "?ubois^*", "Dubois^Marie"):
        assert uids(search(client, "studies", PatientName=name)) == [CT_STUDY_UID], name
    for name in ("muller*", "MÜLLER^ZOË", "Muller^Zoe"):
        assert uids(search(client, "studies", PatientName=name)) == [ZOE_UID], name
    # A single value is the whole name (PS3.4): the family name alone is not Dubois^Marie.
    assert search(client, "studies", PatientName="Dubois") == []
    assert search(client, "studies", PatientName="marie") == []


def test_fuzzy_matching_finds_any_word_of_the_name_in_any_order(zoe, alice):
    client = token_client(alice)
    for name in ("marie", "Marie Dubois", "mar* dub*"):
        found = search(client, "studies", PatientName=name, fuzzymatching="true")
        assert uids(found) == [CT_STUDY_UID], name
    assert search(client, "studies", PatientName="arie", fuzzymatching="true") == []


def test_keys_are_keywords_or_tags_and_values_are_percent_decoded(ct_study, alice):
    client = token_client(alice)
    for query in (
        "PatientName=dub%2A",
        "00100010=dub%2A",
        "00100010=Dubois%5EMarie",
        f"0020000d={CT_STUDY_UID}",
        "StudyDescription=CT%20Head",
    ):
        response = client.get(f"/dicomweb/studies?{query}")
        assert uids(response.json()) == [CT_STUDY_UID], query
    # A key given as a tag is echoed like any matching key.
    assert client.get("/dicomweb/studies?00100010=nobody%2A").json() == []


def test_uid_lists_match_any_of_their_uids(prior, zoe, alice):
    client = token_client(alice)
    for query in (
        {"StudyInstanceUID": f"{CT_STUDY_UID}\\{ZOE_UID}"},
        {"StudyInstanceUID": f"{CT_STUDY_UID},{ZOE_UID}"},
        {"StudyInstanceUID": [CT_STUDY_UID, ZOE_UID]},  # repeated, as dicomweb-client sends lists
    ):
        assert sorted(uids(search(client, "studies", **query))) == [CT_STUDY_UID, ZOE_UID]


def test_date_ranges_closed_and_open_and_single_dates(prior, zoe, alice):
    client = token_client(alice)

    def found(date_query: str) -> list[str]:
        return sorted(uids(search(client, "studies", StudyDate=date_query)))

    assert found("20240601") == [CT_STUDY_UID]
    assert found("20240101-20240630") == [CT_STUDY_UID, ZOE_UID]
    assert found("-20231231") == [PRIOR_UID]
    assert found("20240610-") == [ZOE_UID]
    assert found("20200101-20201231") == []
    assert sorted(uids(search(client, "studies", PatientBirthDate="-19600101"))) == [
        CT_STUDY_UID,
        PRIOR_UID,
    ]


def test_time_ranges_and_partial_times(prior, alice):
    client = token_client(alice)
    assert uids(search(client, "studies", StudyTime="14")) == [PRIOR_UID]
    assert uids(search(client, "studies", StudyTime="0800-1000")) == [CT_STUDY_UID]
    assert uids(search(client, "studies", StudyTime="1430-")) == [PRIOR_UID]
    assert uids(search(client, "studies", StudyTime="-090000")) == [CT_STUDY_UID]


def test_text_attributes_match_exactly_or_with_wildcards_case_sensitively(prior, alice):
    client = token_client(alice)
    assert uids(search(client, "studies", AccessionNumber="ACC7002")) == [PRIOR_UID]
    assert sorted(uids(search(client, "studies", PatientID="PAT-70?1"))) == [
        CT_STUDY_UID,
        PRIOR_UID,
    ]
    assert uids(search(client, "studies", StudyDescription="*2021")) == [PRIOR_UID]
    # PS3.4: only person names ignore case.
    assert search(client, "studies", StudyDescription="ct head") == []
    # Referring physicians are matched word by word.
    assert uids(search(client, "studies", ReferringPhysicianName="martin*")) == [PRIOR_UID]


def test_modalities_in_study_match_any_series(ct_study, zoe, alice):
    client = token_client(alice)
    assert sorted(uids(search(client, "studies", ModalitiesInStudy="MR"))) == [
        CT_STUDY_UID,
        ZOE_UID,
    ]
    assert search(client, "studies", ModalitiesInStudy="XA") == []
    assert len(search(client, "studies", ModalitiesInStudy="XA\\CT")) == 2
    assert len(search(client, "studies", ModalitiesInStudy="M?")) == 2
    # Clients that ask a study search for a series' Modality get the same.
    assert len(search(client, "studies", Modality="MR")) == 2


def test_the_study_id_is_not_kept_so_only_universal_matching_matches(ct_study, alice):
    client = token_client(alice)
    assert search(client, "studies", StudyID="ACC7001") == []
    (study,) = search(client, "studies", StudyID="")
    assert study[STUDY_ID] == {"vr": "SH"}


def test_series_level_matching_and_counts(ct_study, alice):
    client = token_client(alice)
    series = search(client, f"studies/{CT_STUDY_UID}/series")
    assert values(series, MODALITY) == ["CT", "MR"]
    assert values(series, SERIES_NUMBER) == [1, 2]
    assert values(series, SERIES_DESCRIPTION) == ["Head axial", "Head T1"]
    assert values(series, SERIES_INSTANCES) == [3, 1]
    assert values(series, STUDY_UID) == [CT_STUDY_UID, CT_STUDY_UID]
    # The study's own attributes are not repeated under a study the path names...
    assert PATIENT_NAME not in series[0]
    # ...nor the attributes no one asked for.
    assert BODY_PART not in series[0]

    assert values(search(client, f"studies/{CT_STUDY_UID}/series", SeriesNumber="2"), MODALITY) == [
        "MR"
    ]
    assert len(search(client, f"studies/{CT_STUDY_UID}/series", SeriesNumber="1\\2")) == 2
    assert values(
        search(client, f"studies/{CT_STUDY_UID}/series", SeriesDescription="*axial"), MODALITY
    ) == ["CT"]


def test_a_series_search_across_studies_returns_the_study_attributes_too(prior, zoe, alice):
    client = token_client(alice)
    found = search(client, "series", PatientName="dubois*", Modality="MR")
    assert sorted(values(found, STUDY_UID)) == [CT_STUDY_UID, PRIOR_UID]
    assert values(found, PATIENT_NAME) == [{"Alphabetic": "Dubois^Marie"}] * 2
    assert values(found, MODALITY) == ["MR", "MR"]
    assert search(client, "series", StudyDate="20240620", Modality="CT")[0][STUDY_UID]["Value"] == [
        ZOE_UID
    ]


def test_instance_level_matching_in_a_series_a_study_and_everywhere(ct_study, alice):
    client = token_client(alice)
    (ct_series,) = search(client, f"studies/{CT_STUDY_UID}/series", Modality="CT")
    series_uid = ct_series[SERIES_UID]["Value"][0]

    instances = search(client, f"studies/{CT_STUDY_UID}/series/{series_uid}/instances")
    assert values(instances, INSTANCE_NUMBER) == [1, 2, 3]
    assert values(instances, ROWS) == [64] * 3
    assert values(instances, COLUMNS) == [48] * 3
    assert values(instances, FRAMES) == [1] * 3
    assert values(instances, SOP_CLASS) == [pydicom.uid.CTImageStorage] * 3
    assert values(instances, SERIES_UID) == [series_uid] * 3
    assert MODALITY not in instances[0]

    assert len(search(client, f"studies/{CT_STUDY_UID}/instances")) == 4
    in_study = search(client, f"studies/{CT_STUDY_UID}/instances", Rows="32")
    assert values(in_study, MODALITY) == ["MR"], "series attributes come along"
    second = search(client, "instances", InstanceNumber="2", PatientID="PAT-7001")
    assert values(second, SERIES_UID) == [series_uid]
    assert values(second, PATIENT_ID) == ["PAT-7001"]
    sop = second[0][SOP_UID]["Value"][0]
    assert values(search(client, "instances", SOPInstanceUID=sop), INSTANCE_NUMBER) == [2]


def test_a_search_under_an_unknown_study_or_series_is_empty(ct_study, alice):
    client = token_client(alice)
    assert search(client, "studies/1.2.3.999/series") == []
    assert search(client, "studies/1.2.3.999/instances") == []
    assert search(client, f"studies/{CT_STUDY_UID}/series/1.2.3.999/instances") == []


# --- limit, offset, includefield ---------------------------------------------------------------


def test_limit_and_offset_page_through_with_a_warning_while_more_remain(prior, zoe, alice):
    client = token_client(alice)
    everything = uids(search(client, "studies"))
    # Newest first, ties by arrival.
    assert everything == [ZOE_UID, CT_STUDY_UID, PRIOR_UID]

    first = client.get("/dicomweb/studies", {"limit": 2})
    assert uids(first.json()) == everything[:2]
    assert re.fullmatch(
        r'299 [^ ]+: "The number of results exceeded the maximum supported by the server\. '
        r'Additional results can be requested\."',
        first["Warning"],
    )
    last = client.get("/dicomweb/studies", {"limit": 2, "offset": 2})
    assert uids(last.json()) == everything[2:]
    assert "Warning" not in last
    assert search(client, "studies", offset=3) == []


def test_a_limit_above_the_maximum_is_cut_to_it(prior, zoe, alice, settings):
    settings.DICOMWEB_QIDO_MAX_LIMIT = 2
    client = token_client(alice)
    response = client.get("/dicomweb/studies", {"limit": 500})
    assert len(response.json()) == 2
    assert "exceeded the maximum supported" in response["Warning"]
    # Without a limit the maximum applies as well.
    assert len(client.get("/dicomweb/studies").json()) == 2


def test_the_warning_host_is_the_sites(prior, alice, settings):
    settings.SITE_URL = "https://portal.example.org:8443"
    response = token_client(alice).get("/dicomweb/studies", {"limit": 1})
    assert response["Warning"].startswith("299 portal.example.org:8443: ")


def test_includefield_adds_attributes_by_keyword_tag_list_or_all(ct_study, alice):
    client = token_client(alice)
    path = f"studies/{CT_STUDY_UID}/series"
    by_keyword = search(client, path, includefield="PatientName")
    assert values(by_keyword, PATIENT_NAME) == [{"Alphabetic": "Dubois^Marie"}] * 2
    assert search(client, path, includefield="00100010") == by_keyword
    both = search(client, path, includefield="PatientName,BodyPartExamined")
    assert values(both, BODY_PART) == ["HEAD", "HEAD"]
    assert search(client, path, includefield=["PatientName", "BodyPartExamined"]) == both
    everything = search(client, path, includefield="all")
    assert {PATIENT_ID, BODY_PART, STUDY_DESCRIPTION, STUDY_INSTANCES} <= set(everything[0])


def test_includefield_of_attributes_not_held_here_is_ignored(ct_study, alice):
    # OHIF asks a study search for StudyDescription and Modality (a series attribute).
    (study,) = search(token_client(alice), "studies", includefield="00081030,00080060")
    assert MODALITY not in study
    assert study[STUDY_DESCRIPTION]["Value"] == ["CT Head"]
    assert search(token_client(alice), "studies", includefield="InstitutionName") != []


# --- Bad requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("Nonsense=1", "Nonsense"),
        ("patientname=dub*", "patientname"),
        ("InstitutionName=General", "InstitutionName"),
        ("SeriesInstanceUID=1.2.3", "SeriesInstanceUID"),
        ("NumberOfStudyRelatedSeries=2", "NumberOfStudyRelatedSeries"),
        ("StudyDate=2024-06-01", "StudyDate"),
        ("StudyDate=20241301", "StudyDate"),
        ("StudyDate=20240601-20240101", "StudyDate"),
        ("StudyDate=20240101%5C20240601", "StudyDate"),
        ("StudyTime=25", "StudyTime"),
        ("StudyInstanceUID=1.2.abc", "StudyInstanceUID"),
        ("limit=ten", "limit"),
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
        ("fuzzymatching=maybe", "fuzzymatching"),
        ("includefield=Nonsense", "includefield"),
        (f"PatientName={'*a' * 20}", "PatientName"),
    ],
)
def test_a_bad_key_or_value_is_400_naming_the_key(ct_study, alice, query, named):
    response = token_client(alice).get(f"/dicomweb/studies?{query}")
    assert response.status_code == 400
    assert named in response.json()["detail"]


def test_series_numbers_must_be_numbers(ct_study, alice):
    response = token_client(alice).get(f"/dicomweb/studies/{CT_STUDY_UID}/series?SeriesNumber=one")
    assert response.status_code == 400
    assert "SeriesNumber" in response.json()["detail"]


def test_an_empty_key_is_ignored_as_weasis_sends_it(ct_study, alice):
    response = token_client(alice).get("/dicomweb/studies?&includefield=00080020&limit=10")
    assert uids(response.json()) == [CT_STUDY_UID]


@pytest.mark.parametrize(
    ("accept", "status", "content_type"),
    [
        ("application/dicom+json", 200, "application/dicom+json"),
        ("application/json", 200, "application/json"),
        ("*/*", 200, "application/dicom+json"),
        ("application/dicom+json, application/json", 200, "application/dicom+json"),
        ("application/*;q=0.5", 200, "application/dicom+json"),
        ("application/dicom+xml", 406, None),
        ('multipart/related; type="application/dicom"', 406, None),
        ("application/dicom+json;q=0", 406, None),
    ],
)
def test_accept_negotiation(ct_study, alice, accept, status, content_type):
    response = token_client(alice).get("/dicomweb/studies", HTTP_ACCEPT=accept)
    assert response.status_code == status
    if content_type:
        assert response["Content-Type"] == content_type
    else:
        assert "application/dicom+json" in response.json()["detail"]


def test_other_methods_are_405_with_allow(ct_study, alice):
    response = token_client(alice).delete("/dicomweb/series")
    assert response.status_code == 405
    assert "GET" in response["Allow"]


# --- Who sees what -----------------------------------------------------------------------------


def test_without_credentials_every_search_is_401_with_a_challenge(ct_study):
    client = HttpsClient()
    for path in ("studies", "series", "instances", f"studies/{CT_STUDY_UID}/series"):
        response = client.get(f"/dicomweb/{path}")
        assert response.status_code == 401
        assert "Bearer" in response["WWW-Authenticate"]


def test_an_outsider_finds_nothing_at_any_level(ct_study, carol):
    client = token_client(carol)
    for path in (
        "studies",
        "series",
        "instances",
        f"studies/{CT_STUDY_UID}/series",
        f"studies/{CT_STUDY_UID}/instances",
    ):
        assert search(client, path) == [], path
    assert search(client, "studies", PatientID="PAT-7001") == []
    assert search(client, "studies", StudyInstanceUID=CT_STUDY_UID) == []


def test_a_forbidden_study_answers_like_an_unknown_one(ct_study, carol):
    client = token_client(carol)
    forbidden = client.get(f"/dicomweb/studies/{CT_STUDY_UID}/series")
    unknown = client.get("/dicomweb/studies/1.2.3.999/series")
    assert (forbidden.status_code, forbidden.content) == (unknown.status_code, unknown.content)


def test_an_anonymized_share_shows_the_pseudonym_and_withholds_the_rest(ct_study, carol):
    study = ct_study.study
    share_entry(carol, study, anonymized=True)
    alias = pseudonym(study)

    (found,) = search(token_client(carol), "studies", includefield="all")

    assert found[PATIENT_NAME]["Value"] == [{"Alphabetic": alias.dicom_name}]
    assert found[PATIENT_ID]["Value"] == [alias.patient_id]
    for tag in (BIRTH_DATE, SEX, ACCESSION, REFERRING, STUDY_ID):
        assert "Value" not in found[tag], tag
    text = json.dumps(found)
    for real in ("Dubois", "Marie", "PAT-7001", "ACC7001", "19590303"):
        assert real not in text
    # What the anonymized view shows still matches.
    assert uids(search(token_client(carol), "studies", StudyDate="20240601")) == [CT_STUDY_UID]


def test_an_anonymized_study_is_not_found_by_who_it_is(ct_study, carol):
    share_entry(carol, ct_study.study, anonymized=True)
    client = token_client(carol)
    for key, value in (
        ("PatientName", "Dubois*"),
        ("PatientName", "marie"),
        ("PatientID", "PAT-7001"),
        ("00100020", "PAT-*"),
        ("AccessionNumber", "ACC7001"),
        ("PatientBirthDate", "19590303"),
        ("PatientSex", "F"),
    ):
        assert search(client, "studies", **{key: value}) == [], key
        assert search(client, "series", **{key: value}) == [], key
        assert search(client, "instances", **{key: value}) == [], key
    assert search(client, "studies", PatientName="marie", fuzzymatching="true") == []


def test_ohifs_other_studies_of_this_patient_reveal_nothing_through_an_anonymized_share(
    prior, carol, alice
):
    # carol holds the 2024 study anonymized; the prior is not hers at all.
    share_entry(carol, Study.objects.get(study_uid=CT_STUDY_UID), anonymized=True)
    client = token_client(carol)
    (current,) = search(client, "studies", StudyInstanceUID=CT_STUDY_UID)
    shown_id = current[PATIENT_ID]["Value"][0]
    # Asked by the pseudonym it was shown, OHIF finds that study (its study list) and no other.
    (again,) = search(client, "studies", PatientID=shown_id)
    assert again == current
    assert uids(search(client, "series", PatientID=shown_id)) == [CT_STUDY_UID, CT_STUDY_UID]
    assert search(client, "studies", PatientID=shown_id, PatientName="Dubois*") == []
    assert search(client, "studies", PatientID=shown_id.replace("ANON-", "ANON-*")) == []
    assert search(client, "studies", PatientID="PAT-7001") == []
    # alice, who holds both identified, is shown both.
    assert len(search(token_client(alice), "studies", PatientID="PAT-7001")) == 2


def test_a_study_seen_both_anonymized_and_identified_is_found_and_shown_identified(ct_study, alice):
    share_entry(alice, ct_study.study, anonymized=True)
    (found,) = search(token_client(alice), "studies", PatientName="dubois*")
    assert found[PATIENT_NAME]["Value"] == [{"Alphabetic": "Dubois^Marie"}]


def test_images_only_access_neither_lists_nor_counts_reports(ct_study, org, location, carol, alice):
    report_uid = add_structured_report(org, location, ct_study.study)
    share_entry(carol, ct_study.study, level="images")
    client = token_client(carol)

    (study,) = search(client, "studies")
    assert study[MODALITIES]["Value"] == ["CT", "MR"]
    assert study[STUDY_SERIES]["Value"] == [2]
    assert study[STUDY_INSTANCES]["Value"] == [4]
    assert values(search(client, f"studies/{CT_STUDY_UID}/series"), MODALITY) == ["CT", "MR"]
    assert search(client, "series", Modality="SR") == []
    assert search(client, "studies", ModalitiesInStudy="SR") == []
    assert len(search(client, f"studies/{CT_STUDY_UID}/instances")) == 4
    assert search(client, "instances", SOPInstanceUID=report_uid) == []
    # With the series across studies, the study's counts come along the same.
    (series, *_rest) = search(client, "series", includefield="NumberOfStudyRelatedInstances")
    assert series[STUDY_INSTANCES]["Value"] == [4]

    # alice reads reports: she is shown the report series and counts it.
    full = token_client(alice)
    (study,) = search(full, "studies")
    assert study[MODALITIES]["Value"] == ["CT", "MR", "SR"]
    assert study[STUDY_INSTANCES]["Value"] == [5]
    assert values(search(full, f"studies/{CT_STUDY_UID}/series"), MODALITY) == ["CT", "MR", "SR"]
    assert len(search(full, "instances", SOPInstanceUID=report_uid)) == 1
    assert uids(search(full, "studies", ModalitiesInStudy="SR")) == [CT_STUDY_UID]


def test_an_anonymized_share_withholds_reports_too(ct_study, org, location, carol):
    add_structured_report(org, location, ct_study.study)
    share_entry(carol, ct_study.study, anonymized=True)
    series = search(token_client(carol), f"studies/{CT_STUDY_UID}/series")
    assert values(series, MODALITY) == ["CT", "MR"]


def test_a_two_factor_share_answers_nothing_until_its_code_is_entered(ct_study, alice, bob):
    bob.mobile = "+32470123456"
    bob.save(update_fields=["mobile"])
    recipient = share(alice, ct_study.study, ("user", bob.pk), two_factor=True).recipients.get()
    browser = logged_in(bob)
    for client in (token_client(bob), browser):
        assert search(client, "studies") == []
        assert search(client, f"studies/{CT_STUDY_UID}/series") == []
        assert search(client, "instances", StudyInstanceUID=CT_STUDY_UID) == []

    code_page = reverse("sharing:two_factor", args=[recipient.pk])
    browser.post(code_page, {"action": "send_code"})
    texted = Message.objects.filter(
        channel=Channel.SMS, concerning_type="share", concerning_id=str(recipient.share_id)
    ).latest("pk")
    code = re.search(r"\b(\d{6})\b", texted.body_text).group(1)
    assert browser.post(code_page, {"action": "verify", "code": code}).status_code == 303

    (study,) = search(browser, "studies")
    assert study[PATIENT_NAME]["Value"] == [{"Alphabetic": "Dubois^Marie"}]
    assert len(search(browser, f"studies/{CT_STUDY_UID}/series")) == 2
    # Only in that session: an API token proves no code.
    assert search(token_client(bob), "studies") == []
    # As in the directory, a search on identity does not match a study behind an SMS code.
    assert search(browser, "studies", PatientName="dubois*") == []


def test_a_guest_link_lists_exactly_its_study(prior, alice):
    guest = open_guest_link(Study.objects.get(study_uid=CT_STUDY_UID))
    assert uids(search(guest, "studies")) == [CT_STUDY_UID]
    # OHIF's "other studies of this patient": the prior is not part of the link.
    assert uids(search(guest, "studies", PatientID="PAT-7001")) == [CT_STUDY_UID]
    assert search(guest, f"studies/{PRIOR_UID}/series") == []
    assert len(search(guest, f"studies/{CT_STUDY_UID}/series")) == 2
    assert sorted(set(values(search(guest, "instances"), STUDY_UID))) == [CT_STUDY_UID]


def test_a_guest_link_with_priors_lists_the_priors(prior, alice):
    guest = open_guest_link(Study.objects.get(study_uid=CT_STUDY_UID), include_priors=True)
    assert sorted(uids(search(guest, "studies", PatientID="PAT-7001"))) == [
        CT_STUDY_UID,
        PRIOR_UID,
    ]


# --- Audit and cost ----------------------------------------------------------------------------


def test_each_search_is_one_query_event_naming_keys_never_values(ct_study, alice):
    client = token_client(alice)
    search(client, "studies", PatientName="dubois*", StudyDate="20240101-", limit=5)
    search(client, f"studies/{CT_STUDY_UID}/series", includefield="all")

    first, second = AuditEvent.objects.filter(action=Action.STUDIES_QUERIED).order_by("pk")
    assert first.actor == alice
    assert first.details["via"] == "dicomweb"
    assert first.details["level"] == "studies"
    assert first.details["keys"] == ["PatientName", "StudyDate"]
    assert first.details["rows"] == 1
    assert "dubois" not in json.dumps(first.details).lower()
    assert second.details["level"] == "series"
    assert second.details["keys"] == ["StudyInstanceUID"]
    assert second.details["rows"] == 2


def test_a_refused_search_is_not_audited(ct_study, alice):
    token_client(alice).get("/dicomweb/studies", {"Nonsense": "1"})
    assert not AuditEvent.objects.filter(action=Action.STUDIES_QUERIED).exists()


def test_the_number_of_sql_queries_does_not_grow_with_the_results(org, location, alice, carol):
    def seed(count: int) -> None:
        for _ in range(count):
            study = make_study(org, location=location, family_name="Dubois")
            share_entry(carol, study, anonymized=True)
            share_entry(carol, study, level="images")

    seed(2)
    queries(token_client(alice), "/dicomweb/studies")  # the audit trail's first event starts it
    cost = {
        (user.username, path): queries(token_client(user), f"/dicomweb/{path}")
        for user in (alice, carol)
        for path in ("studies?PatientName=dub*", "studies", "series", "instances?includefield=all")
    }
    seed(20)
    for (username, path), before in cost.items():
        user = alice if username == "alice" else carol
        assert queries(token_client(user), f"/dicomweb/{path}") == before, (username, path)
        assert before <= 25, (username, path, before)


# --- A real client ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_searches_every_level(settings, org, location, alice):
    add_study(org, location, study_uid=CT_STUDY_UID)
    add_study(org, location, study_uid=PRIOR_UID, study_date="20210315", accession="ACC7002")
    with live_portal(settings) as url:
        client = dicomweb_client(url, api_token(alice))

        found = client.search_for_studies(
            search_filters={"PatientName": "dub*", "StudyDate": "20240101-"},
            fields=["StudyDescription"],
        )
        assert [Dataset.from_json(s).StudyInstanceUID for s in found] == [CT_STUDY_UID]
        assert Dataset.from_json(found[0]).RetrieveURL == f"{url}/dicomweb/studies/{CT_STUDY_UID}"
        second_page = client.search_for_studies(limit=1, offset=1)
        assert [Dataset.from_json(s).StudyInstanceUID for s in second_page] == [PRIOR_UID]

        series = client.search_for_series(
            CT_STUDY_UID, search_filters={"Modality": "C*"}, fields=["BodyPartExamined"]
        )
        (ct,) = [Dataset.from_json(s) for s in series]
        assert (ct.Modality, ct.BodyPartExamined, ct.NumberOfSeriesRelatedInstances) == (
            "CT",
            "HEAD",
            3,
        )
        every = client.search_for_instances(CT_STUDY_UID, limit=3, get_remaining=True)
        assert len(every) == 4
        in_series = client.search_for_instances(
            CT_STUDY_UID, ct.SeriesInstanceUID, search_filters={"InstanceNumber": 2}
        )
        assert [Dataset.from_json(i).InstanceNumber for i in in_series] == [2]
