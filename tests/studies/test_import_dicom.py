"""``manage.py import_dicom``: an administrator imports a copied CD from the server's disk."""

from __future__ import annotations

import io
import shutil

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import Action, AuditEvent
from studies.models import Entry, Instance, Study
from studies.synthetic import bundled_test_file, make_series, to_bytes

STUDY_UID = "1.2.826.0.1.3680043.8.498.8001"


def write_cd(folder, *, slices: int = 3):
    """A disc layout: nested folders, extension-less DICOM files, and a stray text file."""
    datasets = make_series(
        patient_name="Peeters^Jan",
        patient_id="PAT-8001",
        birth_date="19600101",
        sex="M",
        study_uid=STUDY_UID,
        study_date="20240301",
        study_description="CT Abdomen",
        accession="ACC8001",
        modality="CT",
        series_number=3,
        series_description="Abdomen",
        slices=slices,
        rows=32,
        columns=32,
        body_part="ABDOMEN",
    )
    series = folder / "DICOM" / "ST000000" / "SE000000"
    series.mkdir(parents=True)
    for i, ds in enumerate(datasets):
        (series / f"IM{i:06d}").write_bytes(to_bytes(ds))
    (folder / "README.TXT").write_text("Viewer: run viewer.exe\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return datasets


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("import_dicom", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_imports_a_folder_recursively_and_summarizes_the_rejected_file(org, location, tmp_path):
    datasets = write_cd(tmp_path / "cd")

    out, err = run(str(tmp_path / "cd"), "--organization", org.name, "--location", "Radiology")

    assert set(Instance.objects.values_list("sop_instance_uid", flat=True)) == {
        ds.SOPInstanceUID for ds in datasets
    }
    study = Study.objects.get(study_uid=STUDY_UID)
    assert study.received_location == location
    assert Entry.objects.filter(study=study, worklist__location=location).exists()
    assert "Stored: 3" in out
    assert "Duplicates (already stored): 0" in out
    assert "Rejected: 1" in out
    assert f"{tmp_path / 'cd' / 'README.TXT'}: This is not a DICOM file" in out
    assert ".DS_Store" not in out  # hidden system files are skipped, not reported
    assert "Studies: 1" in out
    # Not a terminal: progress comes as whole lines, ending with the full count.
    assert "\r" not in err
    assert "4/4 files" in err.splitlines()[-1]
    event = AuditEvent.objects.get(action=Action.STUDY_UPLOADED)
    assert event.actor is None and event.actor_label.startswith("import_dicom (")
    assert event.details["stored"] == 3
    rejected = AuditEvent.objects.get(action=Action.UPLOAD_REJECTED)
    assert rejected.details["file"].endswith("README.TXT")


def test_second_import_reports_duplicates_and_exits_normally(org, location, tmp_path):
    write_cd(tmp_path / "cd")
    run(str(tmp_path / "cd"), "--organization", org.name, "--location", "Radiology")

    out, _err = run(
        str(tmp_path / "cd" / "DICOM"),
        "--organization",
        org.name,
        "--location",
        "Radiology",
        "--quiet",
    )

    assert "Stored: 0" in out
    assert "Duplicates (already stored): 3" in out
    assert Instance.objects.count() == 3


def test_nothing_stored_and_something_rejected_exits_non_zero(org, location, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("not dicom")
    (tmp_path / "junk" / "empty.dcm").write_bytes(b"")

    with pytest.raises(CommandError) as failure:
        run(str(tmp_path / "junk"), "--organization", org.name, "--location", "Radiology")

    assert failure.value.returncode == 1
    assert "Nothing was stored" in str(failure.value)
    assert AuditEvent.objects.filter(action=Action.UPLOAD_REJECTED).count() == 2


def test_single_files_and_folders_mix(org, location, tmp_path):
    single = tmp_path / "ct.dcm"
    shutil.copy(bundled_test_file("CT_small.dcm"), single)
    write_cd(tmp_path / "cd", slices=1)

    out, err = run(
        str(single),
        str(tmp_path / "cd"),
        "--organization",
        org.name,
        "--location",
        "radiology",
        "--quiet",
    )

    assert "Stored: 2" in out
    assert Study.objects.count() == 2
    assert err == ""  # --quiet: no progress


def test_progress_updates_in_place_on_a_terminal(org, location, tmp_path):
    write_cd(tmp_path / "cd", slices=2)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    err = Terminal()
    call_command(
        "import_dicom",
        str(tmp_path / "cd"),
        "--organization",
        org.name,
        "--location",
        "Radiology",
        stdout=io.StringIO(),
        stderr=err,
    )

    text = err.getvalue()
    assert text.count("\r") == 3
    assert text.endswith("3/3 files  stored 2  duplicates 0  rejected 1\n")


def test_unknown_organization_and_location_are_clear_errors(org, location, tmp_path):
    write_cd(tmp_path / "cd", slices=1)

    with pytest.raises(CommandError, match=r"Unknown organization 'Nowhere'.*St\. Elsewhere"):
        run(str(tmp_path / "cd"), "--organization", "Nowhere", "--location", "Radiology")
    with pytest.raises(CommandError, match=r"Unknown location 'Cardiology'.*Radiology"):
        run(str(tmp_path / "cd"), "--organization", org.name, "--location", "Cardiology")
    with pytest.raises(CommandError, match="No such file or folder"):
        run(str(tmp_path / "missing"), "--organization", org.name, "--location", "Radiology")
    assert Instance.objects.count() == 0
