"""The DICOM file store: a file appears under its name whole and flushed to disk, or not at all,
whatever fails while it is written and however many writers store it at once."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest
from django.core.files import File

from studies.services.ingestion import storage_name
from studies.storage import INCOMING_PREFIX, DicomFileStorage

DATA = bytes(range(256)) * 4096  # 1 MB: more than one write


def name_of(data: bytes) -> str:
    return storage_name(hashlib.sha256(data).hexdigest())


class FailingStream(io.RawIOBase):
    """Gives ``good`` bytes of ``data``, then fails as a full disk or a lost mount would."""

    def __init__(self, data: bytes, good: int):
        self._data, self._good, self._position = data, good, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._position >= self._good:
            raise OSError(28, "No space left on device")
        size = min(len(buffer), self._good - self._position)
        buffer[:size] = self._data[self._position : self._position + size]
        self._position += size
        return size


def leftovers(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.startswith(INCOMING_PREFIX)]


@pytest.fixture
def storage(tmp_path) -> DicomFileStorage:
    return DicomFileStorage(location=str(tmp_path / "dicom"))


def test_a_write_that_fails_partway_leaves_nothing_under_the_name(storage, tmp_path):
    name = name_of(DATA)
    half = io.BufferedReader(FailingStream(DATA, good=len(DATA) // 2))

    with pytest.raises(OSError, match="No space left"):
        storage.save(name, File(half, name=name))

    # Nothing a later upload of the same bytes would take for the stored file...
    assert not storage.exists(name)
    assert leftovers(tmp_path) == []
    # ...so that upload stores them whole.
    assert storage.save(name, File(io.BytesIO(DATA), name=name)) == name
    with storage.open(name) as stored:
        assert stored.read() == DATA


def test_the_same_bytes_stored_twice_keep_one_file_under_their_name(storage):
    name = name_of(DATA)

    first = storage.save(name, File(io.BytesIO(DATA), name=name))
    second = storage.save(name, File(io.BytesIO(DATA), name=name))

    assert first == second == name
    assert os.listdir(os.path.dirname(storage.path(name))) == [os.path.basename(name)]


def test_a_file_is_flushed_to_disk_before_its_name_appears(storage, monkeypatch):
    name = name_of(DATA)
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("flushed", os.readlink(f"/proc/self/fd/{descriptor}")))
        return real_fsync(descriptor)

    def replace(source, target):
        with open(source, "rb") as written:
            events.append(("named", target, written.read() == DATA))
        return real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)

    storage.save(name, File(io.BytesIO(DATA), name=name))

    full_path = storage.path(name)
    folder = os.path.dirname(full_path)
    named = events.index(("named", full_path, True))
    flushed_before = [path for kind, path, *_ in events[:named] if kind == "flushed"]
    # The file's bytes, under a temporary name in its folder; then the folder's new entry.
    assert os.path.dirname(flushed_before[-1]) == folder
    assert os.path.basename(flushed_before[-1]).startswith(INCOMING_PREFIX)
    assert events[named + 1 :] == [("flushed", folder)]
    # The two folders made for it were each made durable in their parent first.
    root = Path(storage.location)
    assert ("flushed", str(root / name.split("/")[0])) in events[:named]
    assert ("flushed", str(root)) in events[:named]


def test_files_and_folders_get_the_storages_modes(tmp_path):
    storage = DicomFileStorage(
        location=str(tmp_path / "dicom"),
        file_permissions_mode=0o640,
        directory_permissions_mode=0o750,
    )
    name = name_of(DATA)

    storage.save(name, File(io.BytesIO(DATA), name=name))

    path = Path(storage.path(name))
    assert path.stat().st_mode & 0o777 == 0o640
    assert path.parent.stat().st_mode & 0o777 == 0o750
    assert path.parent.parent.stat().st_mode & 0o777 == 0o750


def test_many_writers_storing_the_same_files_at_once_leave_each_whole(storage, tmp_path):
    contents = [bytes([number]) * (300_000 + number) for number in range(6)]
    start = threading.Barrier(12)
    failures = []

    def write(data: bytes) -> None:
        start.wait()
        try:
            storage.save(name_of(data), File(io.BytesIO(data), name=name_of(data)))
        except Exception as error:
            failures.append(error)

    writers = [threading.Thread(target=write, args=(data,)) for data in contents * 2]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    assert failures == []
    for data in contents:
        with storage.open(name_of(data)) as stored:
            assert stored.read() == data
    assert leftovers(tmp_path) == []
    assert len([path for path in tmp_path.rglob("*") if path.is_file()]) == len(contents)


def test_a_file_written_ahead_has_no_name_until_put_in_place(storage, tmp_path):
    name = name_of(DATA)

    incoming = storage.write_incoming(name, File(io.BytesIO(DATA), name=name))

    # Whole and flushed beside its name, which nothing finds yet.
    assert not storage.exists(name)
    assert os.path.dirname(incoming.path) == os.path.dirname(storage.path(name))
    assert Path(incoming.path).read_bytes() == DATA
    assert storage.put_in_place(incoming) == name
    with storage.open(name) as stored:
        assert stored.read() == DATA
    assert leftovers(tmp_path) == []


def test_a_file_written_ahead_and_discarded_leaves_nothing(storage, tmp_path):
    name = name_of(DATA)

    incoming = storage.write_incoming(name, File(io.BytesIO(DATA), name=name))
    storage.discard(incoming)
    storage.discard(incoming)  # a second time: nothing to do, no error

    assert not storage.exists(name)
    assert leftovers(tmp_path) == []


def test_a_write_ahead_that_fails_partway_leaves_nothing(storage, tmp_path):
    name = name_of(DATA)
    half = io.BufferedReader(FailingStream(DATA, good=len(DATA) // 2))

    with pytest.raises(OSError, match="No space left"):
        storage.write_incoming(name, File(half, name=name))

    assert leftovers(tmp_path) == []


def test_a_file_that_cannot_be_put_in_place_is_removed(storage, tmp_path, monkeypatch):
    name = name_of(DATA)
    incoming = storage.write_incoming(name, File(io.BytesIO(DATA), name=name))

    def replace(source, target):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="Input/output error"):
        storage.put_in_place(incoming)

    assert not storage.exists(name)
    assert leftovers(tmp_path) == []
