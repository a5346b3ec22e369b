"""Where DICOM files are kept: a folder of files named by the SHA-256 of their bytes.

Ingestion files an instance's row only once its bytes are stored, and a name that exists is
taken to hold those bytes (storing the same bytes again is skipped). So a file must appear under
its name whole, and stay there through a power cut once the database has committed the row that
names it. Django's FileSystemStorage gives neither: it writes in place, so a full disk or a
killed worker leaves part of a file under the real name, which the next upload of the same
bytes would then trust; and it leaves the bytes in the page cache, where a crash loses them
after PostgreSQL has made the row durable. Orthanc syncs its storage for the same reason
(``SyncStorageArea``, on by default).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass

from django.core.files import File
from django.core.files.storage import FileSystemStorage

# Unfinished writes live beside their folder's files under this prefix, which no stored name has
# (stored names are hexadecimal digests); a worker killed mid-write leaves one behind, harmless.
INCOMING_PREFIX = ".incoming-"
_WRITE_SIZE = 1024 * 1024


@dataclass(frozen=True)
class Incoming:
    """A file written whole and flushed to disk under a temporary name, beside where it goes."""

    name: str  # its name in the storage
    path: str  # where it is now
    full_path: str  # where its name puts it


class DicomFileStorage(FileSystemStorage):
    """Content-addressed files, each written to a temporary file in its folder, flushed to disk
    and then renamed to its name: a name either is absent or holds the whole, durable file.

    Writing the same name twice is not an error: the bytes are the same, and a reader of the
    first file keeps reading it. (A rename, unlike a hard link, is supported by the network
    shares a store may be mounted from too.) Safe to write from several threads at once
    (ingestion writes a chunk's files in parallel, so that their flushes to disk overlap), and
    in two steps (:meth:`write_incoming`, then :meth:`put_in_place` or :meth:`discard`), so
    that a file is written while the rows that name it are being decided."""

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        # The name is the content's digest: an existing file of that name is the same file.
        return name

    def _save(self, name: str, content: File) -> str:
        return self.put_in_place(self.write_incoming(name, content))

    def write_incoming(self, name: str, content: File) -> Incoming:
        """Write ``content`` whole and flushed to disk in the folder of ``name``, under a
        temporary name: the slow half of storing it, which ingestion does while it reads the
        next files. :meth:`put_in_place` then gives it its name; :meth:`discard` drops it."""
        full_path = self.path(name)
        folder = os.path.dirname(full_path)
        self._make_folders(folder)
        descriptor, incoming = tempfile.mkstemp(dir=folder, prefix=INCOMING_PREFIX)
        try:
            with open(descriptor, "wb", closefd=True) as out:
                for chunk in content.chunks(_WRITE_SIZE):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            # mkstemp makes the file private; stored files get the storage's mode (0o644 unset).
            mode = self.file_permissions_mode
            os.chmod(incoming, 0o644 if mode is None else mode)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(incoming)
            raise
        return Incoming(name=name, path=incoming, full_path=full_path)

    def put_in_place(self, incoming: Incoming) -> str:
        """Rename a file :meth:`write_incoming` wrote to its name, durably; its name. The file is
        removed if it cannot be renamed."""
        try:
            os.replace(incoming.path, incoming.full_path)
        except BaseException:
            self.discard(incoming)
            raise
        _sync_folder(os.path.dirname(incoming.full_path))
        return incoming.name

    def discard(self, incoming: Incoming) -> None:
        """Remove a file :meth:`write_incoming` wrote and nothing put in place."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(incoming.path)

    def _make_folders(self, folder: str) -> None:
        """Create ``folder`` and the missing folders above it, each made durable in its
        parent, with the storage's folder permissions."""
        missing = []
        while not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:
                pass  # made meanwhile by another writer, whose sync this one may not wait for
            else:
                if self.directory_permissions_mode is not None:
                    os.chmod(path, self.directory_permissions_mode)
            _sync_folder(os.path.dirname(path))


def _sync_folder(folder: str) -> None:
    """Make the folder's entries (a file renamed or a folder made in it) durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
