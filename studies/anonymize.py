"""Anonymization of a study for a recipient whose access says so.

The manual's rule: the first name becomes a number and the last name "Anonymous"; the report is
never accessible (``StudyAccess.can_read_report``). The same pseudonym is used on every page,
in frame overlays and in DICOM headers served to that recipient, so what they see agrees.
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.utils.translation import gettext as _
from pydicom import Dataset
from pydicom.datadict import tag_for_keyword

from studies.models import Study

ANONYMOUS_FAMILY_NAME = "Anonymous"

# Attributes that identify the patient, the people around them or the institution (a subset of
# the DICOM PS3.15 Basic Application Level Confidentiality Profile that viewers never need).
_REMOVE_KEYWORDS = (
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "EthnicGroup",
    "Occupation",
    "AdditionalPatientHistory",
    "PatientComments",
    "ReferringPhysicianName",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName",
    "OperatorsName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "AccessionNumber",
    "StudyID",
    "RequestAttributesSequence",
    "IssuerOfPatientID",
    "PatientInsurancePlanCodeSequence",
    "MilitaryRank",
    "BranchOfService",
    "CountryOfResidence",
    "RegionOfResidence",
    "PatientReligiousPreference",
    "PatientState",
)


@dataclass(frozen=True)
class Pseudonym:
    given_name: str
    family_name: str = ANONYMOUS_FAMILY_NAME

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def dicom_name(self) -> str:
        return f"{self.family_name}^{self.given_name}"

    @property
    def patient_id(self) -> str:
        return f"ANON-{self.given_name}"


def pseudonym(study: Study) -> Pseudonym:
    """A stable number per study, keyed by SECRET_KEY so it cannot be reversed to the patient."""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"anonymize:{study.study_uid}".encode(), hashlib.sha256
    ).hexdigest()
    return Pseudonym(given_name=str(int(digest[:12], 16) % 1_000_000).zfill(6))


@dataclass(frozen=True)
class PatientDisplay:
    """What a page may show of the patient to this recipient."""

    name: str
    patient_id: str
    birth_date: date | None
    sex: str
    anonymized: bool
    # Held only through a share that asks for an SMS code not entered in this session: nothing
    # identifying is shown until it is.
    withheld: bool = False


def withheld_patient() -> PatientDisplay:
    return PatientDisplay(_("Protected by SMS code"), "", None, "", False, withheld=True)


def patient_display(study: Study, *, anonymized: bool) -> PatientDisplay:
    if anonymized:
        alias = pseudonym(study)
        return PatientDisplay(alias.display_name, alias.patient_id, None, "", True)
    patient = study.patient
    return PatientDisplay(
        patient.display_name, patient.patient_id, patient.birth_date, patient.sex, False
    )


def deidentify_dataset(ds: Dataset, study: Study) -> Dataset:
    """Rewrite a dataset in place for an anonymized recipient and return it."""
    alias = pseudonym(study)
    removed_tags = {tag_for_keyword(keyword) for keyword in _REMOVE_KEYWORDS}
    patient_tags = {tag_for_keyword("PatientName"), tag_for_keyword("PatientID")}

    def scrub(dataset: Dataset, element) -> None:
        # Nested sequences (a structured report's content tree, request attributes) carry names
        # and identifiers as well: every person name goes, and every listed attribute.
        if (
            element.tag in removed_tags
            or (element.VR == "PN" and element.tag not in patient_tags)
            or (element.tag in patient_tags and dataset is not ds)
        ):
            del dataset[element.tag]

    ds.walk(scrub)
    ds.PatientName = alias.dicom_name
    ds.PatientID = alias.patient_id
    ds.remove_private_tags()
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Study portal anonymized share"
    return ds
