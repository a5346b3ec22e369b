"""Issue 10, finding 7: impossible DICOM is refused at ingestion, on every path.

A header that declares 65535 x 65535 pixels, or 10,000 frames, over a few bytes of pixel data
used to be stored and only failed in the viewer. Every ingestion path reads headers through
``studies.dicom_header.read_header``, so each refuses such a file with a reason naming the file
and the sizes, and keeps the good files of the same batch.
"""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from studies.models import Instance
from studies.services.ingestion import ingest_files
from studies.synthetic import make_series, to_bytes
from tests.accounts.helpers import HttpsAPIClient

STUDY_UID = "1.2.826.0.1.3680043.8.498.10007"


def good_slices(count: int = 2):
    return make_series(
        patient_name="Claes^Lotte",
        patient_id="PAT-10007",
        birth_date="19750505",
        sex="F",
        study_uid=STUDY_UID,
        study_date="20240707",
        study_description="CT Thorax",
        accession="ACC10007",
        modality="CT",
        series_number=1,
        series_description="Thorax",
        slices=count,
        rows=16,
        columns=16,
    )


def huge_header_over_few_bytes() -> bytes:
    """A 16 x 16 CT slice rewritten to claim 65535 x 65535 pixels and 10,000 frames."""
    ds = good_slices(3)[2]
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 10000
    return to_bytes(ds)


def more_frames_than_fragments() -> bytes:
    """Compressed pixel data: 10,000 frames declared, two fragments present."""
    ds = good_slices(3)[2]
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.NumberOfFrames = 10000
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9", b"\xff\xd8\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    return to_bytes(ds)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (huge_header_over_few_bytes, "65535 x 65535"),
        (more_frames_than_fragments, "10000 frames but holds 2 compressed fragments"),
    ],
)
def test_impossible_dicom_is_refused_with_the_declared_and_present_sizes(org, location, make, says):
    good = [to_bytes(ds) for ds in good_slices(2)]

    result = ingest_files(
        files=[
            ("IM1", io.BytesIO(good[0])),
            ("BAD", io.BytesIO(make())),
            ("IM2", io.BytesIO(good[1])),
        ],
        organization=org,
        location=location,
    )

    assert len(result.stored) == 2, "the good files of the batch are kept"
    [rejection] = result.rejected
    assert rejection.name == "BAD"
    assert rejection.code == "impossible_image"
    assert says in rejection.reason
    assert Instance.objects.count() == 2


def test_impossible_dicom_is_refused_by_the_upload_api(org, location, alice):
    api = HttpsAPIClient()
    api.force_authenticate(alice)

    response = api.post(
        "/api/v1/studies/upload/",
        {"files": [SimpleUploadedFile("BAD.dcm", huge_header_over_few_bytes())]},
        format="multipart",
    )

    assert response.status_code == 400
    [rejected] = response.json()["rejected"]
    assert rejected["name"] == "BAD.dcm"
    assert rejected["code"] == "impossible_image"
    assert "but holds" in rejected["reason"]
    assert not Instance.objects.exists()


def test_impossible_dicom_is_refused_by_import_dicom(org, location, tmp_path):
    (tmp_path / "BAD").write_bytes(huge_header_over_few_bytes())
    (tmp_path / "IM1").write_bytes(to_bytes(good_slices(1)[0]))
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "import_dicom",
        str(tmp_path),
        "--organization",
        org.name,
        "--location",
        location.name,
        stdout=out,
        stderr=err,
    )

    assert Instance.objects.count() == 1
    assert "BAD" in out.getvalue() + err.getvalue()
    assert "does not match its image data" in out.getvalue() + err.getvalue()


def test_a_plausible_file_with_complete_pixel_data_is_still_stored(org, location):
    [ds] = good_slices(1)

    result = ingest_files(
        files=[("IM1", io.BytesIO(to_bytes(ds)))], organization=org, location=location
    )

    assert result.stored == [ds.SOPInstanceUID]
