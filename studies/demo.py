"""The demo world that ``manage.py seed_demo`` loads: two organizations, four accounts with a
published password, and real, stored, renderable studies.

Everything is declared here as data and applied idempotently: organizations, roles and users are
looked up by name and brought back to the state the README describes; studies are generated with
:mod:`studies.synthetic` (deterministic: the same UIDs and pixels on every run) and go through
:func:`studies.services.ingestion.ingest_files`, exactly like an upload, so the demo exercises
the real storage, filing and rendering paths. A study whose instances are all present already is
not generated again, so a second run writes nothing and takes about a second.

The password is public (README): this module is only ever run with ``DEMO_MODE`` on, which the
settings allow only with ``DEBUG``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypedDict

import pydicom
from django.apps import apps as django_apps
from django.conf import settings
from django.db import transaction
from django.db.models import Count
from pydicom.uid import generate_uid

from accounts.demo import (
    DEMO_PASSWORD,
    ORGANIZATIONS,
    RIVERSIDE,
    ROLES,
    ST_ELSEWHERE,
    USERS,
    DemoUser,
)
from accounts.models import Group, Location, Membership, Organization, Role, User
from studies.models import Entry, EntryOrigin, Folder, Instance, Report, Study
from studies.services.ingestion import IngestResult, ingest_files
from studies.services.worklists import group_worklist, location_worklist
from studies.synthetic import bundled_test_file, make_multiframe, make_series, to_bytes

ACTOR_LABEL = "seed_demo"

Progress = Callable[[str], None]


class DemoError(Exception):
    """The demo could not be loaded as declared (e.g. ingestion refused a generated file)."""


# --- Studies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPatient:
    patient_id: str
    name: str  # DICOM PN: Family^Given
    birth_date: str
    sex: str


@dataclass(frozen=True)
class DemoSeries:
    description: str
    body_part: str
    slices: int
    size: int  # rows = columns


@dataclass(frozen=True)
class DemoStudy:
    key: str  # stable name the UIDs derive from: never change it, or the demo duplicates
    organization: str
    location: str
    patient: DemoPatient
    date: str
    time: str
    modality: str  # CT, MR, or US (a colour cine)
    description: str
    accession: str
    series: tuple[DemoSeries, ...] = ()
    cine_frames: int = 0
    groups: tuple[str, ...] = ()  # group worklists the study is also filed in
    folder: str = ""  # the folder of its location's worklist it is filed in
    referring: str = ""
    report: str = ""

    @property
    def study_uid(self) -> str:
        return generate_uid(entropy_srcs=["study-portal demo", self.key])


ZOE = DemoPatient("SE-100001", "Müller^Zoë", "19750412", "F")
LEA = DemoPatient("SE-100002", "Dubois^Léa", "19880923", "F")
PIETER = DemoPatient("SE-100003", "Janssens^Pieter", "19520130", "M")
SIOBHAN = DemoPatient("SE-100004", "O'Brien^Siobhan", "19641202", "F")
# A Turkish dotless i on purpose: search must find "Yilmaz" whichever i the user types.
EMRE = DemoPatient("SE-100005", "Yılmaz^Emre", "19910715", "M")  # noqa: RUF001
AMELIE = DemoPatient("SE-100006", "Lefèvre^Amélie", "20010308", "F")
# Riverside's own patient IDs; Zoë Müller is a patient of both (a different ID in each).
JURGEN = DemoPatient("RC-2001", "Weiß^Jürgen", "19680705", "M")
ZOE_RC = DemoPatient("RC-2002", "Müller^Zoë", "19750412", "F")
INGRID = DemoPatient("RC-2003", "Søndergaard^Ingrid", "19590221", "F")

_THORAX = (DemoSeries("Thorax 5 mm soft tissue", "CHEST", 30, 256),)
_BRAIN = DemoSeries("T1 SE axial", "BRAIN", 24, 256)

STUDIES = (
    # --- St. Elsewhere Hospital, Radiology
    DemoStudy(
        "zoe-ct-thorax-2024",
        ST_ELSEWHERE,
        "Radiology",
        ZOE,
        "20240105",
        "091500",
        "CT",
        "CT Thorax with contrast",
        "SE24-0001",
        series=(
            DemoSeries("Thorax 5 mm soft tissue", "CHEST", 30, 256),
            DemoSeries("Thorax 5 mm lung", "CHEST", 30, 256),
        ),
        referring="Peeters^Marc",
        report=(
            "CT THORAX WITH CONTRAST\n\n"
            "Indication: follow-up of a 6 mm nodule in the right lower lobe.\n\n"
            "Findings: the nodule is unchanged in size compared with 10/01/2023 (6 mm). No new "
            "nodules. No mediastinal or hilar lymphadenopathy. No pleural effusion. Heart size "
            "normal.\n\n"
            "Conclusion: stable right lower lobe nodule over 12 months; benign behaviour. No "
            "further follow-up needed (Fleischner 2017)."
        ),
        folder="Tumour board",
    ),
    DemoStudy(
        "zoe-ct-thorax-2023",
        ST_ELSEWHERE,
        "Radiology",
        ZOE,
        "20230110",
        "103000",
        "CT",
        "CT Thorax",
        "SE23-0417",
        series=_THORAX,
        referring="Peeters^Marc",
        report=(
            "CT THORAX\n\nFindings: solid 6 mm nodule in the right lower lobe. Lungs otherwise "
            "clear.\n\nConclusion: indeterminate 6 mm nodule; CT follow-up in 12 months."
        ),
        folder="Tumour board",
    ),
    DemoStudy(
        "zoe-ct-abdomen-2020",
        ST_ELSEWHERE,
        "Radiology",
        ZOE,
        "20200522",
        "141000",
        "CT",
        "CT Abdomen",
        "SE20-2210",
        series=(DemoSeries("Abdomen portal venous 5 mm", "ABDOMEN", 30, 128),),
    ),
    DemoStudy(
        "lea-mr-brain-2024",
        ST_ELSEWHERE,
        "Radiology",
        LEA,
        "20240311",
        "080000",
        "MR",
        "MR Brain with gadolinium",
        "SE24-0350",
        series=(_BRAIN, DemoSeries("T1 SE axial post-gadolinium", "BRAIN", 24, 256)),
        groups=("Neuroradiology",),
        referring="Claes^Sofie",
        report=(
            "MRI BRAIN WITHOUT AND WITH GADOLINIUM\n\n"
            "Indication: recurrent headaches.\n\n"
            "Findings: normal ventricular size. No mass, haemorrhage or abnormal enhancement. "
            "Grey-white matter differentiation preserved.\n\n"
            "Conclusion: normal MRI of the brain."
        ),
        folder="Teaching file",
    ),
    DemoStudy(
        "lea-mr-brain-2022",
        ST_ELSEWHERE,
        "Radiology",
        LEA,
        "20221130",
        "113000",
        "MR",
        "MR Brain",
        "SE22-5120",
        series=(_BRAIN,),
        groups=("Neuroradiology",),
        referring="Claes^Sofie",
    ),
    DemoStudy(
        "pieter-ct-abdomen-2019",
        ST_ELSEWHERE,
        "Radiology",
        PIETER,
        "20190812",
        "090000",
        "CT",
        "CT Abdomen",
        "SE19-3301",
        series=(DemoSeries("Abdomen 5 mm", "ABDOMEN", 30, 128),),
    ),
    DemoStudy(
        "emre-mr-brain-2024",
        ST_ELSEWHERE,
        "Radiology",
        EMRE,
        "20240229",
        "160000",
        "MR",
        "MR Brain",
        "SE24-0288",
        series=(DemoSeries("T1 SE axial", "BRAIN", 20, 256),),
        groups=("Neuroradiology",),
    ),
    DemoStudy(
        "amelie-ct-abdomen-2024",
        ST_ELSEWHERE,
        "Radiology",
        AMELIE,
        "20240814",
        "133000",
        "CT",
        "CT Abdomen",
        "SE24-0911",
        series=(DemoSeries("Abdomen portal venous 5 mm", "ABDOMEN", 30, 128),),
    ),
    # --- St. Elsewhere Hospital, Emergency
    DemoStudy(
        "pieter-ct-head-2024",
        ST_ELSEWHERE,
        "Emergency",
        PIETER,
        "20240520",
        "224500",
        "CT",
        "CT Head without contrast",
        "SE24-0602",
        series=(DemoSeries("Head 5 mm", "HEAD", 32, 256),),
        referring="Janssens^Bob",
        report=(
            "CT HEAD WITHOUT CONTRAST (EMERGENCY)\n\n"
            "Indication: fall, on anticoagulants.\n\n"
            "Findings: no intracranial haemorrhage. No skull fracture. Ventricles and sulci "
            "appropriate for age.\n\n"
            "Conclusion: no acute intracranial abnormality."
        ),
    ),
    DemoStudy(
        "pieter-ct-chest-abdomen-2024",
        ST_ELSEWHERE,
        "Emergency",
        PIETER,
        "20240520",
        "231000",
        "CT",
        "CT Chest Abdomen",
        "SE24-0603",
        series=(
            DemoSeries("Chest 5 mm", "CHEST", 30, 128),
            DemoSeries("Abdomen 5 mm", "ABDOMEN", 30, 128),
        ),
        referring="Janssens^Bob",
    ),
    DemoStudy(
        "siobhan-us-echo-2024",
        ST_ELSEWHERE,
        "Emergency",
        SIOBHAN,
        "20240602",
        "071500",
        "US",
        "Echocardiography",
        "SE24-0640",
        cine_frames=32,
        groups=("Cardiology",),
        referring="Janssens^Bob",
        report=(
            "TRANSTHORACIC ECHOCARDIOGRAPHY\n\n"
            "Normal left ventricular size with preserved systolic function (visual EF 60 %). "
            "Colour Doppler: trivial mitral regurgitation. No pericardial effusion."
        ),
    ),
    DemoStudy(
        "siobhan-ct-chest-2023",
        ST_ELSEWHERE,
        "Emergency",
        SIOBHAN,
        "20230918",
        "190000",
        "CT",
        "CT Chest",
        "SE23-4870",
        series=(DemoSeries("Chest 5 mm", "CHEST", 30, 128),),
        groups=("Cardiology",),
    ),
    DemoStudy(
        "emre-ct-head-2024",
        ST_ELSEWHERE,
        "Emergency",
        EMRE,
        "20240701",
        "020000",
        "CT",
        "CT Head",
        "SE24-0715",
        series=(DemoSeries("Head 5 mm", "HEAD", 28, 256),),
    ),
    # --- Riverside Clinic, Imaging
    DemoStudy(
        "jurgen-mr-brain-2024",
        RIVERSIDE,
        "Imaging",
        JURGEN,
        "20240409",
        "100000",
        "MR",
        "MR Brain",
        "RC-24-118",
        series=(DemoSeries("T1 SE axial", "BRAIN", 20, 256),),
        referring="Weber^Carol",
        report=(
            "MRT SCHÄDEL\n\nKeine Raumforderung, keine Blutung, keine Diffusionsstörung.\n\n"
            "Beurteilung: unauffälliger Befund."
        ),
    ),
    DemoStudy(
        "jurgen-mr-brain-2021",
        RIVERSIDE,
        "Imaging",
        JURGEN,
        "20211027",
        "101500",
        "MR",
        "MR Brain",
        "RC-21-774",
        series=(DemoSeries("T1 SE axial", "BRAIN", 20, 256),),
    ),
    DemoStudy(
        "zoe-rc-ct-thorax-2024",
        RIVERSIDE,
        "Imaging",
        ZOE_RC,
        "20240903",
        "140000",
        "CT",
        "CT Thorax low dose",
        "RC-24-301",
        series=(DemoSeries("Thorax low dose 5 mm", "CHEST", 30, 128),),
    ),
    DemoStudy(
        "ingrid-ct-abdomen-2023",
        RIVERSIDE,
        "Imaging",
        INGRID,
        "20231205",
        "083000",
        "CT",
        "CT Abdomen",
        "RC-23-902",
        series=(DemoSeries("Abdomen 5 mm", "ABDOMEN", 30, 128),),
    ),
)

# pydicom's bundled images, one per SOP Instance UID (several bundled files are the same image
# in different transfer syntaxes under the same UID, and only the first would be stored), chosen
# to cover every decodable transfer syntax family. Dose grids (RTDOSE), segmentations and 3x3
# test patterns are left out: they are not pictures anyone would open. The JPEG-LS copy of
# MR_small shares its UID with the RLE copy, and the JPEG-LS near-lossless files lack UIDs.
BUNDLED_DEMO_FILES = (
    "CT_small.dcm",  # Explicit VR Little Endian, CT
    "examples_overlay.dcm",  # Explicit VR Little Endian, 12-bit MR
    "examples_palette.dcm",  # Explicit VR Little Endian, PALETTE COLOR ultrasound
    "examples_rgb_color.dcm",  # Explicit VR Little Endian, RGB ultrasound
    "SC_ybr_full_422_uncompressed.dcm",  # Explicit VR Little Endian, YBR_FULL_422
    "SC_rgb_jpeg_dcmd.dcm",  # Implicit VR Little Endian, RGB
    "ExplVR_BigEnd.dcm",  # Explicit VR Big Endian (retired), RGB ultrasound
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
    "MR_small_RLE.dcm",  # RLE Lossless, MR
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG Lossless SV1
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline, YBR_FULL
    "SC_rgb_dcmtk_+eb+cr.dcm",  # JPEG Baseline, RGB
    "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG Baseline, YBR_FULL_422
    "SC_jpeg_no_color_transform.dcm",  # JPEG Baseline, RGB without colour transform
    "examples_ybr_color.dcm",  # JPEG Baseline, 30-frame ultrasound cine
    "JPGExtended.dcm",  # JPEG Extended 12-bit, NM
    "J2K_pixelrep_mismatch.dcm",  # JPEG 2000 Lossless, 512x512 CT
    "examples_jpeg2k.dcm",  # JPEG 2000 Lossless, YBR_RCT ultrasound
    "GDCMJ2K_TextGBR.dcm",  # JPEG 2000 Lossless, YBR_RCT
    "JPEG2000.dcm",  # JPEG 2000, NM
    "693_J2KI.dcm",  # JPEG 2000, 14-bit CT
    "SC_rgb_gdcm_KY.dcm",  # JPEG 2000, RGB
)
BUNDLED_ORGANIZATION = ST_ELSEWHERE
BUNDLED_LOCATION = "Radiology"


# --- Sizes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How big the generated series are. ``small`` keeps the same studies, series and UIDs but
    a few tiny slices each, so that tests can load the whole demo in seconds."""

    small: bool = False

    def slices(self, series: DemoSeries) -> int:
        return min(series.slices, 3) if self.small else series.slices

    def size(self, series: DemoSeries) -> int:
        return 32 if self.small else series.size

    def cine_frames(self, study: DemoStudy) -> int:
        return min(study.cine_frames, 4) if self.small else study.cine_frames

    def cine_shape(self) -> tuple[int, int]:
        return (48, 64) if self.small else (240, 320)

    def instances(self, study: DemoStudy) -> int:
        if study.cine_frames:
            return 1
        return sum(self.slices(series) for series in study.series)


# --- Summary ---------------------------------------------------------------------------------


@dataclass
class DemoSummary:
    users: list[DemoUser] = field(default_factory=list)
    studies_loaded: int = 0
    instances_stored: int = 0
    studies_by_organization: dict[str, int] = field(default_factory=dict)
    patients_by_organization: dict[str, int] = field(default_factory=dict)
    site_url: str = ""
    # Lines the other apps' parts of the demo add (see _apply_app_extensions).
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.studies_loaded or self.instances_stored)


def format_summary(summary: DemoSummary) -> str:
    """The block ``make run`` leaves on the terminal: where to go and how to log in."""
    lines = []
    if summary.changed:
        lines.append(
            f"Demo loaded: {summary.studies_loaded} studies, {summary.instances_stored} "
            "instances stored."
        )
    else:
        lines.append("Demo already loaded; nothing to add.")
    for name, count in summary.studies_by_organization.items():
        patients = summary.patients_by_organization.get(name, 0)
        lines.append(f"  {name}: {count} studies of {patients} patients")
    lines.append("")
    lines.append(f"Open {summary.site_url} and log in as one of these demo accounts")
    lines.append(f"(password for all of them: {DEMO_PASSWORD}):")
    lines.append("")
    width = max(len(user.username) for user in summary.users)
    lines.append(f"  {'user'.ljust(width)}  who")
    lines.append(f"  {'-' * width}  {'-' * 3}")
    for user in summary.users:
        lines.append(f"  {user.username.ljust(width)}  {user.who}")
    lines.append("")
    lines.append("The clinicians have every share and link permission.")
    if summary.notes:
        lines.append("")
        lines.extend(summary.notes)
    return "\n".join(lines) + "\n"


# --- Other apps' parts of the demo -----------------------------------------------------------


@dataclass(frozen=True)
class DemoWorld:
    """What an app's part of the demo builds on: the organizations and locations, by name."""

    organizations: dict[str, Organization]
    locations: dict[tuple[str, str], Location]  # (organization name, location name)


def _apply_app_extensions(world: DemoWorld) -> list[str]:
    """Studies imports no feature app (the arrows run from them to studies), yet the demo
    shows them all: an app adds its part by giving its AppConfig a ``seed_demo(world)`` method
    that applies it idempotently and returns lines for the summary."""
    notes: list[str] = []
    for config in django_apps.get_app_configs():
        extension = getattr(config, "seed_demo", None)
        if callable(extension):
            notes.extend(extension(world))
    return notes


# --- Loading ---------------------------------------------------------------------------------


def seed_demo(*, small: bool = False, progress: Progress | None = None) -> DemoSummary:
    """Load (or complete) the demo. Safe to run any number of times."""
    say = progress or (lambda _message: None)
    scale = Scale(small=small)
    summary = DemoSummary(users=list(USERS), site_url=settings.SITE_URL)

    organizations, locations, groups = _ensure_organizations()
    roles = _ensure_roles()
    users = _ensure_users(organizations, locations, groups, roles)
    summary.notes = _apply_app_extensions(
        DemoWorld(organizations=organizations, locations=locations)
    )
    studies_before = Study.objects.filter(organization__in=organizations.values()).count()

    for study in STUDIES:
        if _is_complete(study, scale):
            continue
        say(
            f"Generating {study.description} of {study.date[:4]}-{study.date[4:6]}-"
            f"{study.date[6:]} ({study.organization}, {study.location})"
        )
        result = ingest_files(
            files=_study_files(study, scale),
            organization=organizations[study.organization],
            location=locations[study.organization, study.location],
            actor_label=ACTOR_LABEL,
        )
        _check(result, study.key)
        summary.instances_stored += len(result.stored)

    missing = _missing_bundled()
    if missing:
        say(f"Importing {len(missing)} of pydicom's bundled images ({BUNDLED_LOCATION})")
        result = ingest_files(
            files=_bundled_files(missing),
            organization=organizations[BUNDLED_ORGANIZATION],
            location=locations[BUNDLED_ORGANIZATION, BUNDLED_LOCATION],
            actor_label=ACTOR_LABEL,
        )
        _check(result, "pydicom's bundled files")
        summary.instances_stored += len(result.stored)

    _file_and_report(users, groups)
    _file_in_folders(locations)
    _count(summary)
    summary.studies_loaded = sum(summary.studies_by_organization.values()) - studies_before
    return summary


@transaction.atomic
def _ensure_organizations() -> tuple[
    dict[str, Organization],
    dict[tuple[str, str], Location],
    dict[tuple[str, str], Group],
]:
    organizations: dict[str, Organization] = {}
    locations: dict[tuple[str, str], Location] = {}
    groups: dict[tuple[str, str], Group] = {}
    for spec in ORGANIZATIONS:
        organization, _ = Organization.objects.get_or_create(
            name=spec.name, defaults={"kind": spec.kind}
        )
        organizations[spec.name] = organization
        for name in spec.locations:
            locations[spec.name, name], _ = Location.objects.get_or_create(
                organization=organization, name=name
            )
        for name in spec.groups:
            groups[spec.name, name], _ = Group.objects.get_or_create(
                organization=organization, name=name
            )
    return organizations, locations, groups


@transaction.atomic
def _ensure_roles() -> dict[str, Role]:
    roles: dict[str, Role] = {}
    for name, permissions in ROLES.items():
        values = [perm.value for perm in permissions]
        # The (organization, name) constraint cannot hold for NULL organizations in SQL, so look
        # the global role up explicitly rather than trusting the database to refuse a twin.
        role = Role.objects.filter(organization__isnull=True, name=name).order_by("pk").first()
        if role is None:
            role = Role.objects.create(organization=None, name=name, permissions=values)
        elif sorted(role.permissions) != sorted(values):
            # Someone edited the demo role in the admin: the README's promises need it whole.
            role.permissions = values
            role.save(update_fields=["permissions"])
        roles[name] = role
    return roles


@transaction.atomic
def _ensure_users(
    organizations: dict[str, Organization],
    locations: dict[tuple[str, str], Location],
    groups: dict[tuple[str, str], Group],
    roles: dict[str, Role],
) -> dict[str, User]:
    users: dict[str, User] = {}
    for spec in USERS:
        user, _ = User.objects.update_or_create(
            username=spec.username,
            defaults={
                "first_name": spec.first_name,
                "last_name": spec.last_name,
                "email": spec.email,
                "email_public": spec.email_public,
                "mobile": spec.mobile,
                "mobile_public": spec.mobile_public,
                "physician_number": spec.physician_number,
                "language": spec.language,
                "is_staff": spec.is_staff,
                "is_active": True,
            },
        )
        # The README publishes the password, so a demo account must always open with it. Only
        # re-hash when it differs: setting it anew would log out the demo's open sessions.
        if not user.check_password(DEMO_PASSWORD):
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        organization = organizations[spec.organization]
        membership, _ = Membership.objects.update_or_create(
            user=user,
            organization=organization,
            defaults={"role": roles[spec.role], "is_active": True},
        )
        membership.locations.set([locations[spec.organization, name] for name in spec.locations])
        membership.groups.set([groups[spec.organization, name] for name in spec.groups])
        users[spec.username] = user
    return users


def _is_complete(study: DemoStudy, scale: Scale) -> bool:
    found = Study.objects.filter(study_uid=study.study_uid).values_list("instance_count", flat=True)
    return bool(found) and found[0] >= scale.instances(study)


class _StudyHeader(TypedDict):
    """What every generated file of a demo study says of its patient and study."""

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_uid: str
    study_date: str
    study_time: str
    study_description: str
    accession: str
    institution: str
    referring_physician: str


def _study_files(study: DemoStudy, scale: Scale) -> Iterator[tuple[str, BinaryIO]]:
    """The study's files, generated one series at a time so that memory holds one series."""
    patient = study.patient
    common: _StudyHeader = {
        "patient_name": patient.name,
        "patient_id": patient.patient_id,
        "birth_date": patient.birth_date,
        "sex": patient.sex,
        "study_uid": study.study_uid,
        "study_date": study.date,
        "study_time": study.time,
        "study_description": study.description,
        "accession": study.accession,
        "institution": study.organization,
        "referring_physician": study.referring,
    }
    if study.cine_frames:
        rows, columns = scale.cine_shape()
        dataset = make_multiframe(
            **common,
            series_description="Apical four-chamber colour Doppler",
            frames=scale.cine_frames(study),
            rows=rows,
            columns=columns,
            color=True,
        )
        yield f"{study.key}/cine.dcm", io.BytesIO(to_bytes(dataset))
        return
    for number, series in enumerate(study.series, start=1):
        size = scale.size(series)
        datasets = make_series(
            **common,
            modality=study.modality,
            series_number=number,
            series_description=series.description,
            body_part=series.body_part,
            slices=scale.slices(series),
            rows=size,
            columns=size,
        )
        for index, dataset in enumerate(datasets, start=1):
            yield f"{study.key}/{number:02d}/{index:03d}.dcm", io.BytesIO(to_bytes(dataset))


def _bundled_sop_uids() -> dict[str, str]:
    """Bundled file name -> SOP Instance UID, from the headers only (cheap)."""
    uids = {}
    for name in BUNDLED_DEMO_FILES:
        header = pydicom.dcmread(bundled_test_file(name), stop_before_pixels=True)
        uids[name] = str(header.SOPInstanceUID)
    return uids


def _missing_bundled() -> list[Path]:
    uids = _bundled_sop_uids()
    present = set(
        Instance.objects.filter(sop_instance_uid__in=uids.values()).values_list(
            "sop_instance_uid", flat=True
        )
    )
    return [bundled_test_file(name) for name, uid in uids.items() if uid not in present]


def _bundled_files(paths: list[Path]) -> Iterator[tuple[str, BinaryIO]]:
    for path in paths:
        with path.open("rb") as handle:
            yield path.name, handle


def _check(result: IngestResult, what: str) -> None:
    # The demo's files are known-good: a refusal means ingestion or the generator regressed,
    # and a demo missing studies would quietly break the README's promises.
    if result.rejected:
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in result.rejected)
        raise DemoError(f"Ingestion refused files of {what}: {reasons}")


@transaction.atomic
def _file_and_report(users: dict[str, User], groups: dict[tuple[str, str], Group]) -> None:
    """Group worklist entries and reports. Reports are created once and then left alone: a
    visitor's edits in the demo's report panel survive the next ``make run``."""
    studies = {
        study.study_uid: study
        for study in Study.objects.filter(study_uid__in=[s.study_uid for s in STUDIES])
    }
    # Who did what, as it would have happened: a member of the group filed the study in its
    # worklist; alice wrote St. Elsewhere's reports and carol Riverside's.
    authors = {ST_ELSEWHERE: users["alice"], RIVERSIDE: users["carol"]}
    filers = {
        (spec.organization, name): users[spec.username] for spec in USERS for name in spec.groups
    }
    for spec in STUDIES:
        study = studies.get(spec.study_uid)
        if study is None:
            continue
        for name in spec.groups:
            worklist = group_worklist(groups[spec.organization, name])
            Entry.objects.get_or_create(
                worklist=worklist,
                study=study,
                origin=EntryOrigin.MANUAL,
                defaults={"added_by": filers.get((spec.organization, name))},
            )
        if spec.report:
            Report.objects.get_or_create(
                study=study,
                defaults={"text": spec.report, "updated_by": authors[spec.organization]},
            )


@transaction.atomic
def _file_in_folders(locations: dict[tuple[str, str], Location]) -> None:
    """The demo's folders ("Teaching file", "Tumour board") in its location worklists, with
    studies in them. A study a visitor filed in another folder stays there."""
    studies = {
        study.study_uid: study
        for study in Study.objects.filter(study_uid__in=[s.study_uid for s in STUDIES if s.folder])
    }
    for spec in STUDIES:
        study = studies.get(spec.study_uid)
        if not spec.folder or study is None:
            continue
        worklist = location_worklist(locations[spec.organization, spec.location])
        folder, _ = Folder.objects.get_or_create(worklist=worklist, parent=None, name=spec.folder)
        Entry.objects.filter(worklist=worklist, study=study, folder__isnull=True).update(
            folder=folder
        )


def _count(summary: DemoSummary) -> None:
    for spec in ORGANIZATIONS:
        counts = Study.objects.filter(organization__name=spec.name).aggregate(
            studies=Count("pk"), patients=Count("patient", distinct=True)
        )
        summary.studies_by_organization[spec.name] = counts["studies"]
        summary.patients_by_organization[spec.name] = counts["patients"]
