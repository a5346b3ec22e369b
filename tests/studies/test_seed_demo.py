"""The demo that `make run` loads: the accounts the README promises, studies that are really
stored and render, the right people seeing the right studies, and a second run that adds nothing.

The seed runs with ``--small`` (the same studies, series and UIDs, a few tiny slices each) so the
whole demo loads in seconds.
"""

import io
import re

import pytest
from django.core.files.storage import storages
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.demo import DEMO_PASSWORD
from accounts.models import Group, Location, Membership, Organization, Role, User
from accounts.permissions import ADMINISTRATOR, CLINICIAN
from audit.models import AuditEvent
from studies.access import user_study_access, visible_studies
from studies.models import Entry, Instance, Patient, Report, Series, Study
from studies.rendering import render_frame

pytestmark = pytest.mark.django_db

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# 13 generated studies and 15 studies made of pydicom's 22 bundled images at St. Elsewhere;
# 4 generated studies at Riverside.
ST_ELSEWHERE_STUDIES = 28
RIVERSIDE_STUDIES = 4
GENERATED_SMALL_INSTANCES = 19 * 3 + 1  # --small: 19 series of 3 slices, and 1 cine
BUNDLED_INSTANCES = 22


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", "--small", *args, stdout=out)
    return out.getvalue()


@pytest.fixture(autouse=True)
def demo_mode(settings):
    """seed_demo runs only where DEMO_MODE is on, as `make run` sets it."""
    settings.DEMO_MODE = True


@pytest.fixture
def seeded():
    return seed()


def counts() -> dict[str, int]:
    models = (
        Organization,
        Location,
        Group,
        Role,
        User,
        Membership,
        Patient,
        Study,
        Series,
        Instance,
        Entry,
        Report,
        AuditEvent,
    )
    return {model.__name__: model.objects.count() for model in models}


def test_refuses_to_run_without_demo_mode(settings):
    settings.DEMO_MODE = False
    with pytest.raises(CommandError, match="DEMO_MODE"):
        seed()
    assert not User.objects.filter(username="alice").exists()
    assert not Study.objects.exists()


def test_prints_the_demo_accounts_and_where_to_log_in(seeded, settings):
    assert settings.SITE_URL in seeded
    assert DEMO_PASSWORD in seeded
    for username in ("alice", "bob", "dana", "carol"):
        assert f"  {username} " in seeded
    assert f"St. Elsewhere Hospital: {ST_ELSEWHERE_STUDIES} studies" in seeded


def test_the_login_page_lists_exactly_the_accounts_the_seed_made(seeded, client):
    page = client.get(reverse("accounts:login"), secure=True).text

    listed = set(re.findall(r"<tr><td><code>([^<]+)</code></td>", page))
    assert listed == set(User.objects.values_list("username", flat=True))
    assert f'<code class="demo-password">{DEMO_PASSWORD}</code>' in page


def test_accounts_match_the_readme(seeded):
    alice, bob, dana, carol = (
        User.objects.get(username=name) for name in ("alice", "bob", "dana", "carol")
    )
    for user in (alice, bob, dana, carol):
        assert user.check_password(DEMO_PASSWORD)
        assert user.is_active
    assert (alice.get_full_name(), alice.email, alice.mobile, alice.email_public) == (
        "Alice Martin",
        "alice@st-elsewhere.example",
        "+32470000001",
        True,
    )
    assert (alice.physician_number, alice.language) == ("RIZIV-10001", "en")
    # The manual's search by mobile number and by email can be tried on her.
    assert alice.mobile_public and alice.email_public
    assert (bob.get_full_name(), bob.physician_number, bob.language) == (
        "Bob Janssens",
        "RIZIV-10002",
        "nl",
    )
    assert (dana.get_full_name(), dana.language, dana.is_staff) == ("Dana Dubois", "fr", True)
    assert (carol.get_full_name(), carol.physician_number, carol.language) == (
        "Carol Weber",
        "BIG-20001",
        "de",
    )
    assert not (alice.is_staff or bob.is_staff or carol.is_staff)

    clinician = Role.objects.get(organization=None, name="Clinician")
    administrator = Role.objects.get(organization=None, name="Administrator")
    assert sorted(clinician.permissions) == sorted(p.value for p in CLINICIAN)
    assert sorted(administrator.permissions) == sorted(p.value for p in ADMINISTRATOR)

    def membership(user):
        m = Membership.objects.get(user=user, is_active=True)
        return (
            m.organization.name,
            m.role,
            sorted(m.locations.values_list("name", flat=True)),
            sorted(m.groups.values_list("name", flat=True)),
        )

    assert membership(alice) == (
        "St. Elsewhere Hospital",
        clinician,
        ["Radiology"],
        ["Neuroradiology"],
    )
    assert membership(bob) == (
        "St. Elsewhere Hospital",
        clinician,
        ["Emergency"],
        ["Cardiology", "Neuroradiology"],
    )
    assert membership(dana) == ("St. Elsewhere Hospital", administrator, [], [])
    assert membership(carol) == ("Riverside Clinic", clinician, ["Imaging"], [])


def test_studies_are_filed_per_organization_and_location(seeded):
    st_elsewhere = Organization.objects.get(name="St. Elsewhere Hospital", kind="hospital")
    riverside = Organization.objects.get(name="Riverside Clinic", kind="clinic")
    assert Study.objects.filter(organization=st_elsewhere).count() == ST_ELSEWHERE_STUDIES
    assert Study.objects.filter(organization=riverside).count() == RIVERSIDE_STUDIES
    assert Instance.objects.count() == GENERATED_SMALL_INSTANCES + BUNDLED_INSTANCES

    zoe = Patient.objects.get(organization=st_elsewhere, patient_id="SE-100001")
    assert zoe.name == "Müller^Zoë"
    # Priors: several studies of one patient on different dates, one with two series.
    dates = sorted(zoe.studies.values_list("study_date", flat=True))
    assert len(set(dates)) == 3
    assert zoe.studies.filter(series_count=2).exists()
    echo = Study.objects.get(modalities="US", patient__patient_id="SE-100004")
    assert echo.entries.filter(worklist__name="Cardiology").exists()
    assert Report.objects.filter(study__organization=riverside).exists()
    assert Report.objects.filter(study__organization=st_elsewhere).count() >= 3


def test_the_share_dialogs_search_finds_alice_by_mobile_and_by_email(seeded):
    from sharing.selectors import RecipientQuery, search_recipients

    bob = User.objects.get(username="bob")
    for text in ("+32470000001", "0470 00 00 01", "alice@st-elsewhere"):
        found = search_recipients(bob, RecipientQuery(text=text, kind="user"))
        assert [r.mobile for r in found if "Alice" in r.name] == ["+32470000001"], text


def test_the_demo_has_folders_with_studies_in_them(seeded):
    from studies.models import Folder

    folders = {f.name: f for f in Folder.objects.filter(worklist__location__name="Radiology")}
    assert set(folders) == {"Teaching file", "Tumour board"}
    board = Entry.objects.filter(folder=folders["Tumour board"])
    assert {e.study.description for e in board} == {"CT Thorax with contrast", "CT Thorax"}
    assert Entry.objects.filter(folder=folders["Teaching file"]).count() == 1
    # A second run neither duplicates them nor refiles a study a visitor put elsewhere.
    moved = board.first()
    moved.folder = folders["Teaching file"]
    moved.save(update_fields=["folder"])
    seed()
    assert Folder.objects.count() == 2
    moved.refresh_from_db()
    assert moved.folder_id == folders["Teaching file"].pk


def test_each_account_sees_what_its_memberships_allow(seeded):
    alice, bob, dana, carol = (
        User.objects.get(username=name) for name in ("alice", "bob", "dana", "carol")
    )
    radiology = set(
        Study.objects.filter(entries__worklist__location__name="Radiology").values_list(
            "pk", flat=True
        )
    )
    emergency = set(
        Study.objects.filter(entries__worklist__location__name="Emergency").values_list(
            "pk", flat=True
        )
    )
    st_elsewhere = set(
        Study.objects.filter(organization__name="St. Elsewhere Hospital").values_list(
            "pk", flat=True
        )
    )

    def seen(user):
        return set(visible_studies(user).values_list("pk", flat=True))

    assert radiology and emergency
    assert radiology <= seen(alice)
    assert not emergency & seen(alice)
    assert emergency <= seen(bob)
    assert seen(dana) == st_elsewhere
    assert not seen(carol) & st_elsewhere
    assert len(seen(carol)) == RIVERSIDE_STUDIES

    # bob reaches alice's brain MRs only through the Neuroradiology group's worklist.
    lea_mr = Study.objects.get(accession="SE24-0350")
    assert lea_mr.pk in seen(bob) and lea_mr.pk not in emergency
    assert user_study_access(carol, lea_mr) is None


def test_seeded_frames_render(seeded):
    ct = Instance.objects.filter(series__study__accession="SE24-0001").first()
    echo = Instance.objects.get(series__study__accession="SE24-0640")
    assert echo.frames > 1
    for instance, frame in ((ct, 1), (echo, echo.frames)):
        with storages["dicom"].open(instance.file) as handle:
            assert render_frame(handle, frame=frame).startswith(PNG_SIGNATURE)
    bundled = Instance.objects.filter(transfer_syntax="1.2.840.10008.1.2.4.90").first()
    with storages["dicom"].open(bundled.file) as handle:
        assert render_frame(handle, frame=1).startswith(PNG_SIGNATURE)


def test_a_second_run_adds_nothing(seeded, settings):
    before = counts()
    alice = User.objects.get(username="alice")
    password_hash = alice.password
    Report.objects.filter(study__accession="SE24-0001").update(text="Edited by a visitor.")

    output = seed()

    assert counts() == before
    assert "already loaded" in output
    alice.refresh_from_db()
    assert alice.password == password_hash  # not re-hashed: open sessions stay valid
    assert Report.objects.get(study__accession="SE24-0001").text == "Edited by a visitor."


def test_a_run_restores_what_the_readme_promises(seeded):
    alice = User.objects.get(username="alice")
    alice.set_password("something-else-entirely")
    alice.save()
    Membership.objects.filter(user=alice).update(is_active=False)
    Role.objects.filter(name="Clinician").update(permissions=[])

    seed()

    alice.refresh_from_db()
    assert alice.check_password(DEMO_PASSWORD)
    assert Membership.objects.get(user=alice).is_active
    assert visible_studies(alice).exists()
