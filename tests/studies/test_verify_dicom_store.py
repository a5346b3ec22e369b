"""``manage.py verify_dicom_store``: every stored file read back and checked against what was
stored, so that a file cut short, changed or lost is found before a clinician opens it."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError

from studies.models import Instance
from studies.storage import INCOMING_PREFIX
from tests.studies.test_ingestion import ct_series, named, upload


def verify(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("verify_dicom_store", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def stored(org, location) -> list[Instance]:
    upload(org, location, named(ct_series(slices=4)))
    return list(Instance.objects.order_by("pk"))


def path_of(instance: Instance) -> Path:
    return Path(storages["dicom"].path(instance.file))


def test_a_store_whose_files_are_those_stored_is_ok(stored):
    out, err = verify("--batch", "3")  # more than one batch

    assert out.strip() == "OK: 4 files verified."
    assert err == ""


def test_files_cut_short_changed_or_lost_are_each_named_and_the_status_is_1(stored):
    cut, changed, lost, whole = stored
    data = path_of(cut).read_bytes()
    path_of(cut).write_bytes(data[: len(data) // 2])  # as a full disk left Django's writes
    flipped = bytearray(path_of(changed).read_bytes())
    flipped[-1] ^= 0xFF
    path_of(changed).write_bytes(bytes(flipped))
    path_of(lost).unlink()

    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("verify_dicom_store", stdout=out, stderr=err)

    assert failed.value.returncode == 1
    assert "3 stored file(s) missing or not what was stored; 1 verified" in str(failed.value)
    lines = err.getvalue().splitlines()
    assert lines == [
        f"Instance {cut.pk} ({cut.file}): {len(data) // 2} bytes where {cut.size} were stored",
        f"Instance {changed.pk} ({changed.file}): its bytes are not those stored (another SHA-256)",
        f"Instance {lost.pk} ({lost.file}): missing from the store",
    ]
    # Nothing names the patient.
    assert "Müller" not in err.getvalue() and "PAT-7001" not in err.getvalue()
    assert path_of(whole).exists() and path_of(cut).exists()  # it changes nothing


def test_unfinished_writes_are_removed_only_when_asked_and_old_enough(stored):
    folder = path_of(stored[0]).parent
    old, young = folder / f"{INCOMING_PREFIX}old", folder / f"{INCOMING_PREFIX}young"
    old.write_bytes(b"part of a file")
    young.write_bytes(b"a write in progress")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))

    verify()
    assert old.exists() and young.exists()

    out, _err = verify("--remove-incoming-older-than", "1")

    assert "1 unfinished write(s) removed." in out
    assert not old.exists() and young.exists()
    assert "OK: 4 files verified." in out


def test_an_instance_whose_file_was_lost_is_stored_again_when_it_is_sent_again(
    org, location, stored
):
    lost = stored[1]
    path_of(lost).unlink()
    with pytest.raises(CommandError):
        verify()

    files = named(ct_series(slices=4))
    result = upload(org, location, files)

    assert len(result.duplicates) == 4 and not result.stored  # nothing new is filed
    out, _err = verify()
    assert out.strip() == "OK: 4 files verified."
    assert Instance.objects.count() == 4
