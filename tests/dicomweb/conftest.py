"""The DICOMweb tests' small world: real DICOM ingested for St. Elsewhere (the ``org`` of the
suite's conftest), API tokens for its users, and a client that speaks HTTPS with a token.

- ``ct_study``: a three-slice CT of Dubois^Marie (PAT-7001), study 2024-06-01, accession
  ACC7001, plus a one-instance MR series in the same study.
- ``api_client(user)``: an HTTPS test client sending ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from studies.models import Instance, Study
from studies.services.ingestion import ingest_files
from studies.synthetic import make_series, to_bytes
from tests.accounts.helpers import HttpsClient, api_token, plain_static_storage

CT_STUDY_UID = "1.2.826.0.1.3680043.8.498.7001"


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    plain_static_storage(settings)


def token_client(user, *, scheme: str = "Bearer") -> HttpsClient:
    """A client authenticated only by an API token in the Authorization header."""
    return HttpsClient(HTTP_AUTHORIZATION=f"{scheme} {api_token(user)}")


def ingest(org, location, files: dict[str, bytes]) -> list[str]:
    result = ingest_files(
        files=[(name, io.BytesIO(data)) for name, data in files.items()],
        organization=org,
        location=location,
    )
    assert not result.rejected, result.rejected
    return result.stored


@dataclass
class IngestedStudy:
    study: Study
    files: dict[str, bytes]  # SOP Instance UID -> the bytes as stored

    @property
    def instances(self) -> list[Instance]:
        return list(
            Instance.objects.filter(series__study=self.study).order_by("series__number", "number")
        )


def ct_datasets(*, study_uid: str = CT_STUDY_UID, patient_id: str = "PAT-7001", **overrides):
    common = dict(
        patient_name="Dubois^Marie",
        patient_id=patient_id,
        birth_date="19590303",
        sex="F",
        study_uid=study_uid,
        study_date="20240601",
        study_description="CT Head",
        accession="ACC7001",
    )
    common.update(overrides)
    ct = make_series(
        **common,
        modality="CT",
        series_number=1,
        series_description="Head axial",
        slices=3,
        rows=64,
        columns=48,
        body_part="HEAD",
    )
    mr = make_series(
        **common,
        modality="MR",
        series_number=2,
        series_description="Head T1",
        slices=1,
        rows=32,
        columns=32,
        body_part="HEAD",
    )
    return ct + mr


@pytest.fixture
def ct_study(org, location) -> IngestedStudy:
    files = {ds.SOPInstanceUID: to_bytes(ds) for ds in ct_datasets()}
    ingest(org, location, {f"IM{i}": data for i, data in enumerate(files.values())})
    return IngestedStudy(study=Study.objects.get(study_uid=CT_STUDY_UID), files=files)


@pytest.fixture
def api_client():
    return token_client
