"""Database rows for tests that need studies without going through DICOM ingestion."""

import itertools
from datetime import date

from accounts.models import Location, Organization
from studies.dicom_header import normalize_name
from studies.models import Entry, EntryOrigin, Instance, Patient, Series, Study
from studies.services.worklists import file_received_studies, personal_worklist

_counter = itertools.count(1)


def make_study(
    organization: Organization,
    *,
    location: Location | None = None,
    patient_id: str = "P-0001",
    family_name: str = "Doe",
    given_name: str = "Jane",
    study_date: date = date(2024, 5, 17),
    modality: str = "CT",
    description: str = "CT Chest",
    accession: str = "",
    birth_date: date | None = date(1970, 1, 31),
) -> Study:
    n = next(_counter)
    patient, _ = Patient.objects.get_or_create(
        organization=organization,
        patient_id=patient_id,
        issuer="",
        defaults={
            "name": f"{family_name}^{given_name}",
            "family_name": family_name,
            "given_name": given_name,
            "name_search": normalize_name(f"{given_name} {family_name}"),
            "birth_date": birth_date,
            "sex": "F",
        },
    )
    study = Study.objects.create(
        organization=organization,
        patient=patient,
        patient_sort_name=normalize_name(patient.name),
        study_uid=f"1.2.826.0.1.3680043.10.1000.{n}",
        study_date=study_date,
        description=description,
        accession=accession or f"ACC{n:05d}",
        modalities=modality,
        series_count=1,
        instance_count=1,
        received_location=location,
    )
    series = Series.objects.create(
        study=study,
        series_uid=f"{study.study_uid}.1",
        modality=modality,
        number=1,
        instance_count=1,
    )
    Instance.objects.create(
        series=series,
        sop_instance_uid=f"{study.study_uid}.1.1",
        number=1,
        file="",
        sha256="",
        frames=1,
        has_pixels=False,
    )
    file_received_studies([study], location=location)
    return study


def share_entry(user, study: Study, **terms) -> Entry:
    """A share's entry of ``study`` in ``user``'s personal worklist, with the share's terms
    (level, anonymized, valid_until...), as the sharing app would make it."""
    return Entry.objects.create(
        worklist=personal_worklist(user), study=study, origin=EntryOrigin.SHARE, **terms
    )
