"""How the audit trail names studies to its reader (registered with ``audit.selectors`` in
``StudiesConfig.ready()``: audit imports no feature app)."""

from collections.abc import Iterable

from django.utils.formats import date_format
from django.utils.translation import gettext as _

from studies.access import user_studies_access
from studies.anonymize import patient_display
from studies.models import Study


def study_labels(user, study_uids: Iterable[str]) -> dict[str, str]:
    """Patient, study description and date of each study the access authority lets the reader
    see (the pseudonym where that access is anonymized); the others are not in the answer."""
    studies = list(
        Study.objects.select_related("patient").filter(study_uid__in=set(study_uids) - {""})
    )
    accesses = user_studies_access(user, studies)
    labels = {}
    for study in studies:
        access = accesses.get(study.pk)
        if access is None:
            continue
        patient = patient_display(study, anonymized=access.anonymized)
        parts = [
            patient.name,
            study.description or _("Study"),
            date_format(study.study_date, "DATE_FORMAT") if study.study_date else "",
        ]
        labels[study.study_uid] = " · ".join(part for part in parts if part)
    return labels
