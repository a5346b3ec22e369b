"""``manage.py describe_plain_images``: after an upgrade, the images stored before instances kept
a plain description get one, so their frames too render without reading the header again."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError

from studies.models import Instance
from studies.rendering import PlainImage
from studies.services.ingestion import ingest_files
from studies.synthetic import bundled_test_file, make_series, to_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored_before(org, location, settings, tmp_path) -> dict[int, dict | None]:
    """Four CT slices and a compressed image, stored as before the upgrade (no description);
    what ingestion describes of each now, by key."""
    slices = make_series(
        patient_name="Janssens^Eva",
        patient_id="PAT-DPI",
        birth_date="19700101",
        sex="F",
        study_uid="1.2.826.0.1.3680043.8.498.9101",
        study_date="20240301",
        study_description="CT Thorax",
        accession="ACC9101",
        modality="CT",
        series_number=1,
        series_description="Axial",
        slices=4,
        rows=24,
        columns=24,
    )
    files = [(f"IM{i}", io.BytesIO(to_bytes(ds))) for i, ds in enumerate(slices)]
    files.append(("RLE", io.BytesIO(bundled_test_file("MR_small_RLE.dcm").read_bytes())))
    result = ingest_files(files=files, organization=org, location=location)
    assert not result.rejected, result.rejected
    described = dict(Instance.objects.values_list("pk", "plain_image"))
    Instance.objects.update(plain_image=None)
    return described


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("describe_plain_images", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.parametrize("batch", ["1", "500"])
def test_describes_what_ingestion_would_and_leaves_other_images_as_they_were(stored_before, batch):
    out, err = run("--batch", batch)

    assert dict(Instance.objects.values_list("pk", "plain_image")) == stored_before
    assert sum(PlainImage.from_json(value) is not None for value in stored_before.values()) == 4
    assert "4 plain images described, 1 left to render from their header, 0 unreadable." in out
    assert err == ""


def test_a_missing_file_is_named_and_the_others_are_described(stored_before):
    missing = Instance.objects.order_by("pk").first()
    storages["dicom"].delete(missing.file)

    out, err = run()

    assert f"Instance {missing.pk} ({missing.file})" in err
    assert "3 plain images described, 1 left to render from their header, 1 unreadable." in out
    missing.refresh_from_db()
    assert missing.plain_image is None


def test_a_second_run_has_only_the_other_images_to_read(stored_before):
    run()
    out, _err = run()
    assert "0 plain images described, 1 left to render from their header, 0 unreadable." in out


def test_a_batch_must_hold_an_instance():
    with pytest.raises(CommandError, match="positive number"):
        run("--batch", "0")
