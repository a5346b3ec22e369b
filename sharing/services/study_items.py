"""What a share's messages and the invitation page say about its studies: the patient's initials
(never a name), the description and the date."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from studies.models import Study


def _initials(study: Study, anonymized: bool) -> str:
    """Initials only, never a name (subjects are logged by mail servers); none if anonymized."""
    if anonymized:
        return ""
    patient = study.patient
    parts = [patient.given_name, patient.family_name]
    if not any(parts):
        parts = [part for part in reversed(patient.name.split("^")[:2])]
    return "".join(f"{part.strip()[0].upper()}." for part in parts if part and part.strip())


def study_items(studies: Sequence[Study], anonymized: bool) -> list[dict[str, Any]]:
    return [
        {
            "patient_initials": _initials(study, anonymized),
            "study_description": study.description,
            "study_date": study.study_date,
        }
        for study in studies
    ]
