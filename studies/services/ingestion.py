"""DICOM in: files become Patient, Study, Series and Instance rows and content-addressed files.

One entry point, :func:`ingest_files`, serves the browser upload, the REST API, STOW-RS and
``manage.py import_dicom``; :class:`IngestionBatch` is the same service one file at a time, for
senders that wait for each file's answer (the DIMSE listener's C-STORE). Each file is read and
checked on its own, so one bad file in a folder of hundreds loses nothing else, and the uploader
gets one clear reason per rejected file. Many files are filed a chunk at a time: the chunk's
plainly new instances in one transaction with a statement per table, anything that needs a
closer look (a duplicate, a conflict, a file that disagrees with an earlier one) in a
transaction of its own, as a single file is.

Files are stored once per content: the storage name is derived from the SHA-256 of the bytes, so
uploading the same files twice is harmless, and nothing refers to a local path.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import IO, TypeVar, cast

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.core.files.storage import storages
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from accounts.memberships import active_memberships, has_perm
from accounts.models import Location, Organization, User
from accounts.permissions import Perm
from audit.models import Action, Outcome
from audit.services import EventArguments, record_many
from portal import decisions
from portal.prepared_queries import prepared_models, prepared_values
from studies.access import may_upload_to
from studies.dicom_header import DicomHeader, FileRejected, normalize_name, read_header
from studies.frame_sources import remember_when_stored
from studies.models import Instance, Patient, Series, Study
from studies.services.worklists import file_received_studies
from studies.storage import DicomFileStorage, Incoming

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Spool uploads in memory up to this size, then on disk: a 1 GB cine never sits in RAM.
_SPOOL_MEMORY = 8 * 1024 * 1024
_CHUNK = 1024 * 1024
# Threads writing files (each process keeps its own): enough for the flushes of a STOW-RS
# request's or an upload batch's ten files to overlap.
_STORE_THREADS = 8

# --- Results ----------------------------------------------------------------------------------


class FileStatus:
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Rejection:
    """A file that was not stored, by the name the uploader knows it by, and why."""

    name: str
    reason: str
    code: str = "rejected"


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file; the upload page shows one row per outcome."""

    name: str
    status: str
    sop_instance_uid: str = ""
    message: str = ""
    # For a rejected file, the FileRejected code ("truncated", "conflict", ...); for a duplicate
    # whose bytes differ from the stored copy, "different_content". What a program answering a
    # sender (a C-STORE status) decides on; ``message`` is for people.
    code: str = ""
    # Where a stored file (or the copy of a duplicate) is filed, and its SOP class as the file
    # says: what a STOW-RS answer names it by.
    study_uid: str = ""
    series_uid: str = ""
    sop_class_uid: str = ""


@dataclass
class IngestResult:
    stored: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    # Duplicates whose bytes differ from the stored copy: the stored copy was kept.
    differing_duplicates: list[str] = field(default_factory=list)
    # Study Instance UIDs that received at least one stored or duplicate file, in arrival order.
    studies: list[str] = field(default_factory=list)
    files: list[FileOutcome] = field(default_factory=list)

    def as_json(self) -> dict:
        """The REST API's shape (API.md), shared by the browser upload."""
        return {
            "stored": list(self.stored),
            "duplicates": list(self.duplicates),
            "rejected": [
                {"name": r.name, "reason": r.reason, "code": r.code} for r in self.rejected
            ],
            "duplicates_with_different_content": list(self.differing_duplicates),
            "studies": list(self.studies),
            "files": [
                {
                    "name": f.name,
                    "status": f.status,
                    "sop_instance_uid": f.sop_instance_uid,
                    "message": f.message,
                }
                for f in self.files
            ],
        }

    @property
    def status_code(self) -> int:
        """201 when something new was stored; 200 when nothing new was needed (duplicates);
        400 when every file was rejected (or there were none)."""
        if self.stored:
            return 201
        if self.duplicates:
            return 200
        return 400


@dataclass(frozen=True)
class Transfer:
    """Instances sent to the portal over the network rather than uploaded by a person: a PACS or
    modality's C-STORE, or an integrator's STOW-RS. Audited as DICOM Instances Transferred
    (INSTANCES_RECEIVED) with where they came from; ``details`` never holds patient data."""

    protocol: str  # "DIMSE" or "STOW-RS"
    details: dict = field(default_factory=dict)

    def audit_details(self) -> dict:
        return {"protocol": self.protocol, **self.details}


@dataclass
class _StudyTally:
    study: Study
    stored: int = 0
    duplicates: int = 0


@dataclass
class _Received:
    """A file read and checked, not yet filed: its bytes spooled, its header parsed."""

    name: str
    spool: IO[bytes]
    sha256: str
    size: int
    header: DicomHeader
    stored_as: str = ""
    # Its bytes being written to the portal's storage ahead of its rows (_write_ahead).
    incoming: Future[Incoming | None] | None = None


# --- Spooling and storage ---------------------------------------------------------------------


def _spool(stream: IO[bytes], limit: int) -> tuple[IO[bytes], str, int]:
    """Copy the upload to a spooled file, hashing as it goes; stop as soon as it is too large.
    A file already in memory (a STOW-RS part, a C-STORE data set held in memory, an upload's
    file Django's form parser kept in memory) or in a temporary file of Django's parser is its
    own spool: hashed where it is, not copied."""
    held = _held_in_memory(stream)
    if held is not None:
        return _in_memory(held, limit)
    if isinstance(stream, TemporaryUploadedFile):
        return _on_disk(stream, limit)
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115 - caller closes
    digest = hashlib.sha256()
    size = 0
    if hasattr(stream, "seek"):
        with contextlib.suppress(OSError, ValueError):  # a pipe: read from where it is
            stream.seek(0)
    while chunk := _read_chunk(stream, spool):
        size += len(chunk)
        if size > limit:
            spool.close()
            raise _too_large(limit)
        digest.update(chunk)
        spool.write(chunk)
    if size == 0:
        spool.close()
        raise _empty()
    spool.seek(0)
    return spool, digest.hexdigest(), size


def _held_in_memory(stream: IO[bytes]) -> io.BytesIO | None:
    if isinstance(stream, io.BytesIO):
        return stream
    if isinstance(stream, File) and isinstance(stream.file, io.BytesIO):
        return stream.file  # an InMemoryUploadedFile
    return None


def _in_memory(stream: io.BytesIO, limit: int) -> tuple[io.BytesIO, str, int]:
    # A BytesIO made from bytes gives them back as they are, without a copy.
    content = stream.getvalue()
    _check_size(len(content), limit)
    stream.seek(0)
    return stream, hashlib.sha256(content).hexdigest(), len(content)


def _on_disk(upload: TemporaryUploadedFile, limit: int) -> tuple[IO[bytes], str, int]:
    size = upload.size or 0  # what Django's handler wrote to it
    _check_size(size, limit)
    # A NamedTemporaryFile opened "w+b": its wrapper hands read, seek and readinto to the
    # buffered file, which Django's annotation (IO | None) does not say.
    spool = cast(io.BufferedRandom, upload.file)
    spool.seek(0)
    try:
        digest = hashlib.file_digest(spool, "sha256")
    except OSError as error:
        raise _unreadable(error) from error
    spool.seek(0)
    return spool, digest.hexdigest(), size


def _check_size(size: int, limit: int) -> None:
    """Refuse a file held whole (in memory or in a temporary file) that is too large or empty."""
    if size > limit:
        raise _too_large(limit)
    if not size:
        raise _empty()


def _too_large(limit: int) -> FileRejected:
    return FileRejected(
        "too_large",
        _(
            "The file is larger than the upload limit of %(limit)s. Ask your administrator "
            "to import it."
        )
        % {"limit": filesizeformat(limit)},
    )


def _empty() -> FileRejected:
    return FileRejected("empty", _("The file is empty."))


def _read_chunk(stream: IO[bytes], spool: IO[bytes]) -> bytes:
    try:
        return stream.read(_CHUNK)
    except OSError as error:
        spool.close()
        raise _unreadable(error) from error


def _unreadable(error: OSError) -> FileRejected:
    return FileRejected(
        "unreadable",
        _("The file could not be read (%(error)s). Check the disc or folder and try again.")
        % {"error": error.strerror or error},
    )


def storage_name(sha256: str) -> str:
    """Where bytes with this SHA-256 live in the "dicom" storage."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.dcm"


def _store_bytes(spool: IO[bytes], sha256: str) -> str:
    storage = storages["dicom"]
    name = storage_name(sha256)
    if storage.exists(name):
        return name  # identical bytes are already there (another upload or another instance)
    spool.seek(0)
    saved = storage.save(name, File(spool, name=name))
    if saved != name:
        # Another process stored the same bytes between exists() and save(), so the storage
        # picked an alternative name; the content is identical, keep the canonical copy.
        storage.delete(saved)
    return name


# --- Database ---------------------------------------------------------------------------------


def _conflict_elsewhere() -> FileRejected:
    # Deliberately says nothing about the other organization, not even that it is one.
    return FileRejected(
        "conflict",
        _(
            "It conflicts with a study held elsewhere, so it was not stored. Check the file's "
            "Study Instance UID with the imaging system."
        ),
    )


def _existing_instance(header: DicomHeader, organization: Organization, sha256: str) -> bool | None:
    """None when the SOP Instance UID is new; else whether the stored copy has the same bytes.
    A SOP Instance UID stored in another study, series or organization is a conflict."""
    instance = (
        Instance.objects.select_related("series__study")
        .filter(sop_instance_uid=header.sop_uid)
        .first()
    )
    if instance is None:
        return None
    study = instance.series.study
    if study.organization_id != organization.pk:
        raise _conflict_elsewhere()
    if study.study_uid != header.study_uid or instance.series.series_uid != header.series_uid:
        raise FileRejected(
            "instance_conflict",
            _(
                "Its SOP Instance UID is already stored in a different study or series, so it was "
                "not stored."
            ),
        )
    return instance.sha256 == sha256


def _patient_for(header: DicomHeader, organization: Organization) -> Patient:
    patient, created = Patient.objects.get_or_create(
        organization=organization,
        patient_id=header.patient_id,
        issuer=header.issuer,
        defaults=_new_patient_fields(header),
    )
    if not created:
        _fill_patient_blanks(patient, header)
    return patient


def _new_patient_fields(header: DicomHeader) -> dict:
    name = header.name
    return {
        "name": name.raw,
        "family_name": name.family,
        "given_name": name.given,
        "name_search": name.search,
        "birth_date": header.birth_date,
        "sex": header.sex,
    }


def _fill_patient_blanks(patient: Patient, header: DicomHeader) -> None:
    """Only fill what is missing: an old file uploaded late must not undo a corrected name."""
    changed = [
        attr
        for attr, value in _new_patient_fields(header).items()
        if value and not getattr(patient, attr)
    ]
    if not changed:
        return
    for attr in changed:
        setattr(patient, attr, _new_patient_fields(header)[attr])
    patient.save(update_fields=changed)
    if "name" in changed:
        Study.objects.filter(patient=patient).update(patient_sort_name=patient_sort_name(patient))


def patient_sort_name(patient: Patient) -> str:
    """The directory's sort key for the patient's studies: the DICOM name ("Family^Given")
    normalized, so family names sort first and accents do not scatter them."""
    return normalize_name(patient.name)[:200]


def _locked_study(
    header: DicomHeader, organization: Organization, location: Location | None
) -> tuple[Study, bool]:
    """The study row, locked until the file's transaction ends, so that concurrent uploads into
    one study keep its counts right; created (once, even under concurrency) if new."""
    study = Study.objects.select_for_update().filter(study_uid=header.study_uid).first()
    created = False
    if study is None:
        patient = _patient_for(header, organization)
        # get_or_create retries the lookup if a concurrent upload inserted the row first.
        study, created = Study.objects.select_for_update().get_or_create(
            study_uid=header.study_uid,
            defaults=_new_study_fields(header, organization, patient, location),
        )
    if study.organization_id != organization.pk:
        raise _conflict_elsewhere()
    if not created:
        _check_same_patient(study.patient, header)
        changed = _fill_study_blanks(study, header)
        if changed:
            study.save(update_fields=changed)
    return study, created


def _new_study_fields(
    header: DicomHeader, organization: Organization, patient: Patient, location: Location | None
) -> dict:
    return {
        "organization": organization,
        "patient": patient,
        "patient_sort_name": patient_sort_name(patient),
        "study_date": header.study_date,
        "study_time": header.study_time,
        "description": header.description,
        "accession": header.accession,
        "referring_physician": header.referring_physician,
        "institution": header.institution,
        "received_location": location,
    }


def _check_same_patient(patient: Patient, header: DicomHeader) -> None:
    if (patient.patient_id, patient.issuer) != (header.patient_id, header.issuer):
        raise FileRejected(
            "patient_mismatch",
            _(
                "Its Patient ID differs from the patient of the study already stored with the "
                "same Study Instance UID, so it was not stored. Check the patient in the "
                "imaging system."
            ),
        )


def _fill_study_blanks(study: Study, header: DicomHeader) -> list[str]:
    """Fill what the study lacks from ``header``; returns the fields changed (not saved)."""
    changed = []
    for attr, value in (
        ("study_date", header.study_date),
        ("study_time", header.study_time),
        ("description", header.description),
        ("accession", header.accession),
        ("referring_physician", header.referring_physician),
        ("institution", header.institution),
    ):
        if value and not getattr(study, attr):
            setattr(study, attr, value)
            changed.append(attr)
    return changed


def _series_for(header: DicomHeader, study: Study) -> tuple[Series, bool]:
    series, created = Series.objects.get_or_create(
        series_uid=header.series_uid, defaults=_new_series_fields(header, study)
    )
    if series.study_id != study.pk:
        raise FileRejected(
            "series_conflict",
            _("Its series is already stored in a different study, so it was not stored."),
        )
    return series, created


def _new_series_fields(header: DicomHeader, study: Study) -> dict:
    return {
        "study": study,
        "modality": header.modality,
        "number": header.series_number,
        "description": header.series_description,
        "body_part": header.body_part,
    }


def _new_instance(header: DicomHeader, series: Series, received: _Received) -> Instance:
    return Instance(
        series=series,
        sop_instance_uid=header.sop_uid,
        sop_class_uid=header.sop_class_uid,
        number=header.instance_number,
        transfer_syntax=header.transfer_syntax,
        frames=header.frames,
        rows=header.rows,
        columns=header.columns,
        has_pixels=header.has_pixels,
        file=received.stored_as,
        sha256=received.sha256,
        size=received.size,
        plain_image=header.plain_image,
    )


def _with_modality(modalities: str, modality: str) -> str:
    present = set(modalities.split())
    if not modality or modality in present:
        return modalities
    return " ".join(sorted(present | {modality}))[:100]


def _file_instance(
    received: _Received,
    *,
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None,
) -> tuple[Study, bool | None]:
    """Write the rows for one file, atomically. Returns the study, and None when the instance
    was stored, else whether the duplicate's bytes equal the stored copy."""
    header = received.header
    with transaction.atomic():
        study, study_created = _locked_study(header, organization, location)
        # Checked again under the study lock: a concurrent upload may have just stored it.
        same = _existing_instance(header, organization, received.sha256)
        if same is not None:
            return study, same
        series, series_created = _series_for(header, study)
        instance = _new_instance(header, series, received)
        try:
            with transaction.atomic():
                instance.save(force_insert=True)
        except IntegrityError:
            # Same SOP Instance UID committed by a concurrent upload into another study.
            same = _existing_instance(header, organization, received.sha256)
            if same is None:
                raise
            return study, same
        remember_when_stored([(header.study_uid, header.series_uid, instance)])
        Series.objects.filter(pk=series.pk).update(instance_count=F("instance_count") + 1)
        study.instance_count += 1
        update = ["instance_count"]
        if series_created:
            study.series_count += 1
            update.append("series_count")
        modalities = _with_modality(study.modalities, header.modality)
        if modalities != study.modalities:
            study.modalities = modalities
            update.append("modalities")
        study.save(update_fields=update)
        if study_created:
            file_received_studies([study], location=location, added_by=uploaded_by)
    return study, None


def _file_one(
    received: _Received,
    *,
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None,
) -> tuple[Study, bool | None]:
    """File one received file on its own: the study, and None when it was stored, else whether
    the duplicate's bytes equal the stored copy. Raises FileRejected."""
    header = received.header
    # Quick check before writing anything: re-sending files already here costs no storage.
    existing = (
        Study.objects.filter(study_uid=header.study_uid)
        .values_list("organization_id", flat=True)
        .first()
    )
    if existing is not None and existing != organization.pk:
        raise _conflict_elsewhere()
    same = _existing_instance(header, organization, received.sha256)
    if same is not None:
        if same:
            # Stored with these very bytes: if its file went missing (lost with a disk, left out
            # of a restored backup, removed as damaged), sending the instance again restores it.
            _store_bytes(received.spool, received.sha256)
        return Study.objects.select_related("patient").get(study_uid=header.study_uid), same
    received.stored_as = _store_bytes(received.spool, received.sha256)
    return _file_instance(
        received, organization=organization, location=location, uploaded_by=uploaded_by
    )


class _FileOneByOne(Exception):
    """A concurrent upload wrote some of the chunk's rows first: file it one file at a time."""


def _file_together(
    chunk: list[_Received],
    *,
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None,
    unstorable: frozenset[int] = frozenset(),
) -> tuple[dict[int, Study], list[int]]:
    """File the plainly new instances of ``chunk`` in one transaction, with one statement per
    table rather than a dozen per file. Returns the study of each file stored (by position in
    the chunk) and the positions of the others, which need the one-by-one path: duplicates,
    conflicts, a patient or series that disagrees with what is stored or with an earlier file
    of the chunk, and the files at ``unstorable``, whose bytes could not be stored (there the
    same failure ends the batch, with what was filed accounted for). Raises _FileOneByOne,
    having written no row, when a concurrent upload inserted one of the same studies, series
    or instances first (or the database ended the transaction to break a deadlock); the bytes
    already stored are content-addressed and harmless."""
    if not chunk:
        return {}, []  # every file of the chunk was refused on arrival
    try:
        with transaction.atomic():
            # What is stored is read once, under the lock of the chunk's stored studies, so it
            # cannot change before the chunk's rows are written. The three queries are built
            # once (portal.prepared_queries): a chunk is read for every STOW-RS request, and
            # building them cost more than running them.
            study_uids = sorted({received.header.study_uid for received in chunk})
            studies = {
                study.study_uid: study for study in prepared_models(_locked_studies, study_uids)
            }
            series_uids = sorted({received.header.series_uid for received in chunk})
            series = {item.series_uid: item for item in prepared_models(_series_named, series_uids)}
            sop_uids = sorted({received.header.sop_uid for received in chunk})
            known_instances = set(prepared_values(_instance_uids, sop_uids))
            plain, one_by_one = _sorted_out(
                chunk, studies, series, known_instances, organization=organization
            )
            together = [position for position in plain if position not in unstorable]
            not_stored = [position for position in plain if position in unstorable]
            for position in together:
                chunk[position].stored_as = storage_name(chunk[position].sha256)
            # The rows are written while the files are: the rows commit after the files.
            filed: list[Study] = []
            if together:
                filed = _write_together(
                    [chunk[position] for position in together],
                    studies=studies,
                    series=series,
                    organization=organization,
                    location=location,
                    uploaded_by=uploaded_by,
                )
            failed = _put_in_place(chunk, together)
            if failed:
                raise _NotStored(failed)
    except _NotStored as failure:
        return _file_together(
            chunk,
            organization=organization,
            location=location,
            uploaded_by=uploaded_by,
            unstorable=unstorable | frozenset(failure.positions),
        )
    except (IntegrityError, OperationalError) as error:
        raise _FileOneByOne from error
    return dict(zip(together, filed, strict=True)), not_stored + one_by_one


def _locked_studies(uids: list[str]) -> QuerySet[Study]:
    """The stored studies of ``uids``, locked in one order so that two chunks touching the same
    studies cannot deadlock; with their patients, whom the batch's audit events name (only the
    studies are locked)."""
    return (
        Study.objects.select_for_update(of=("self",))
        .select_related("patient")
        .filter(study_uid__in=uids)
        .order_by("pk")
    )


def _series_named(uids: list[str]) -> QuerySet[Series]:
    return Series.objects.filter(series_uid__in=uids)


def _instance_uids(uids: list[str]) -> QuerySet:
    return Instance.objects.filter(sop_instance_uid__in=uids).values_list(
        "sop_instance_uid", flat=True
    )


def _sorted_out(
    chunk: list[_Received],
    studies: dict[str, Study],
    series: dict[str, Series],
    known_instances: set[str],
    *,
    organization: Organization,
) -> tuple[list[int], list[int]]:
    """The positions of the chunk's plainly new instances, and of those for the one-by-one
    path, given the stored ``studies``, ``series`` and instances the chunk names."""
    patient_of_study = {
        uid: (study.patient.patient_id, study.patient.issuer) for uid, study in studies.items()
    }
    uid_of_study = {study.pk: uid for uid, study in studies.items()}
    # None for a stored series of a study the chunk does not name: never filed together.
    study_of_series = {uid: uid_of_study.get(item.study_id) for uid, item in series.items()}
    together: list[int] = []
    one_by_one: list[int] = []
    seen: set[str] = set()
    for position, received in enumerate(chunk):
        header = received.header
        study = studies.get(header.study_uid)
        plain = (
            header.sop_uid not in known_instances
            and header.sop_uid not in seen
            and (study is None or study.organization_id == organization.pk)
            and patient_of_study.setdefault(header.study_uid, (header.patient_id, header.issuer))
            == (header.patient_id, header.issuer)
            and study_of_series.setdefault(header.series_uid, header.study_uid) == header.study_uid
        )
        (together if plain else one_by_one).append(position)
        seen.add(header.sop_uid)
    return together, one_by_one


class _StoreThreads:
    """This process's threads that write files, started on first use and kept: a STOW-RS
    request's or an upload batch's files are then written as soon as each is read. A process
    forked from one that had them (a gunicorn or Celery worker) starts its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        os.register_at_fork(after_in_child=self._forget)

    def submit(self, function: Callable[..., T], /, *args: object) -> Future[T]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=_STORE_THREADS, thread_name_prefix="dicom-store"
                )
            return self._pool.submit(function, *args)

    def _forget(self) -> None:
        # The parent's threads do not exist in the child, and its lock may be held by one.
        self._lock = threading.Lock()
        self._pool = None


_store_threads = _StoreThreads()


def _write_ahead(received: _Received) -> None:
    """Start writing a received file to the portal's own storage, under a temporary name, while
    the next files are read and the chunk's rows written: the flushes to disk, the slow part of
    storing, then overlap each other and the rest of the work, and only the renames wait for
    the rows (:func:`_put_in_place`). Another storage backend, whose thread safety this cannot
    know, is written one file at a time once the chunk is sorted out."""
    if isinstance(storages["dicom"], DicomFileStorage):
        received.incoming = _store_threads.submit(_write_incoming, received.spool, received.sha256)


def _write_incoming(spool: IO[bytes], sha256: str) -> Incoming | None:
    """The bytes written under a temporary name beside their name; None if already stored."""
    storage = cast(DicomFileStorage, storages["dicom"])
    name = storage_name(sha256)
    if storage.exists(name):
        return None
    spool.seek(0)
    return storage.write_incoming(name, File(spool, name=name))


def _put_in_place(chunk: list[_Received], together: list[int]) -> list[int]:
    """Store the bytes of the files at ``together``: each file written ahead is renamed to its
    name (several at once, so that their folders' flushes overlap), and any other is stored
    now unless its bytes are there already. The positions whose bytes could not be stored (a
    full disk), having waited for every write."""
    storage = storages["dicom"]
    if not isinstance(storage, DicomFileStorage):
        for index, position in enumerate(together):
            try:
                _store_bytes(chunk[position].spool, chunk[position].sha256)
            except Exception:
                return together[index:]
        return []
    failed: list[int] = []
    placing: list[tuple[int, Future[str]]] = []
    for position in together:
        received = chunk[position]
        written, received.incoming = received.incoming, None
        try:
            incoming = written.result() if written is not None else None
        except Exception:
            failed.append(position)  # the write removed what it had written
            continue
        if incoming is None:
            place = _store_threads.submit(_store_bytes, received.spool, received.sha256)
        else:
            place = _store_threads.submit(storage.put_in_place, incoming)
        placing.append((position, place))
    wait([place for _position, place in placing])
    return failed + [position for position, place in placing if place.exception() is not None]


def _settle(received: list[_Received]) -> None:
    """Wait for the files' writes ahead and remove what none of them put in place: before the
    one-by-one path reads their spools, and before the spools are closed."""
    storage = storages["dicom"]
    for item in received:
        written, item.incoming = item.incoming, None
        if written is None or written.exception() is not None:
            continue  # a failed write removed what it had written
        incoming = written.result()
        if incoming is not None:
            cast(DicomFileStorage, storage).discard(incoming)


class _NotStored(Exception):
    """Some of a chunk's files could not be stored (a full disk): the chunk's rows are rolled
    back and it is filed again without them."""

    def __init__(self, positions: list[int]):
        super().__init__(positions)
        self.positions = positions


def _write_together(
    files: list[_Received],
    *,
    studies: dict[str, Study],
    series: dict[str, Series],
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None,
) -> list[Study]:
    """The rows of ``files`` (sorted out by _file_together, under the lock of the stored
    ``studies``), in the caller's transaction; the study of each file, in order. ``studies``
    and ``series`` gain the rows created."""
    files_of_study: dict[str, list[_Received]] = {}
    files_of_series: dict[str, list[_Received]] = {}
    for received in files:
        files_of_study.setdefault(received.header.study_uid, []).append(received)
        files_of_series.setdefault(received.header.series_uid, []).append(received)

    # Studies new to the portal, with their patients, created with their counts.
    new_study_uids = [uid for uid in files_of_study if uid not in studies]
    patients = _patients_for(
        [files_of_study[uid][0].header for uid in new_study_uids], organization
    )
    new_studies = []
    for uid in new_study_uids:
        first, *others = [received.header for received in files_of_study[uid]]
        patient = patients[(first.patient_id, first.issuer)]
        study = Study(study_uid=uid, **_new_study_fields(first, organization, patient, location))
        for header in others:
            _fill_study_blanks(study, header)
        new_studies.append(study)
        studies[uid] = study
    for uid, series_files in files_of_series.items():
        study_uid = series_files[0].header.study_uid
        study = studies[study_uid]
        study.instance_count += len(series_files)
        study.modalities = _with_modality(study.modalities, series_files[0].header.modality)
        if uid not in series:
            study.series_count += 1
    # Inserted in the order of their unique keys, as every chunk does, so that two chunks with
    # the same new rows wait for each other instead of deadlocking.
    new_studies.sort(key=lambda study: study.study_uid)
    Study.objects.bulk_create(new_studies)

    # Series: new ones are created with their counts; known ones count up.
    new_series = []
    for uid, series_files in files_of_series.items():
        if uid in series:
            _count_up(series[uid], len(series_files))
            continue
        header = series_files[0].header
        series[uid] = Series(
            series_uid=uid,
            instance_count=len(series_files),
            **_new_series_fields(header, studies[header.study_uid]),
        )
        new_series.append(series[uid])
    Series.objects.bulk_create(sorted(new_series, key=lambda item: item.series_uid))
    instances = {
        received.header.sop_uid: _new_instance(
            received.header, series[received.header.series_uid], received
        )
        for received in files
    }
    Instance.objects.bulk_create([instances[uid] for uid in sorted(instances)])
    remember_when_stored(
        (received.header.study_uid, received.header.series_uid, instances[received.header.sop_uid])
        for received in files
    )

    # Studies already stored: their counts, and what the new files fill in.
    created = set(new_study_uids)
    for uid, study_files in files_of_study.items():
        if uid in created:
            continue
        study = studies[uid]
        changed = ["instance_count", "series_count", "modalities"]
        for received in study_files:
            changed += _fill_study_blanks(study, received.header)
        # An update rather than a save: the one change of remembered answers below covers it.
        _update_columns(study, changed)
    file_received_studies(new_studies, location=location, added_by=uploaded_by)
    # Rows written in bulk send no signals: forget remembered answers here, as a save would.
    decisions.changed()
    return [studies[received.header.study_uid] for received in files]


# A chunk's writes to rows it read are written out here rather than built by a queryset for each
# chunk, as its reads are prepared (_file_together): one of each per STOW-RS request.


def _count_up(series: Series, files: int) -> None:
    """Add ``files`` to the stored ``series``' instance count."""
    quote = connection.ops.quote_name
    table, count, key = (
        quote(Series._meta.db_table),
        quote(Series._meta.get_field("instance_count").column),
        quote(Series._meta.pk.column),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {count} = {count} + %s WHERE {key} = %s",  # noqa: S608
            [files, series.pk],
        )


_STUDY_FIELDS = {field.name: field for field in Study._meta.concrete_fields}


def _update_columns(study: Study, names: list[str]) -> None:
    """Write the stored ``study``'s fields ``names`` as they are on the model."""
    quote = connection.ops.quote_name
    fields = [_STUDY_FIELDS[name] for name in dict.fromkeys(names)]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    values = [field.get_db_prep_save(getattr(study, field.attname), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(Study._meta.db_table)} SET {assignments} "  # noqa: S608
            f"WHERE {quote(Study._meta.pk.column)} = %s",
            [*values, study.pk],
        )


def _patients_for(
    headers: list[DicomHeader], organization: Organization
) -> dict[tuple[str, str], Patient]:
    """The organization's patients these headers name, created where new (from the first
    header naming each), blanks filled where known."""
    if not headers:
        # Files of stored studies alone, as most of a study's files are: no query to build.
        return {}
    wanted: dict[tuple[str, str], DicomHeader] = {}
    for header in headers:
        wanted.setdefault((header.patient_id, header.issuer), header)
    found = {
        (patient.patient_id, patient.issuer): patient
        for patient in Patient.objects.filter(
            organization=organization, patient_id__in={key[0] for key in wanted}
        )
        if (patient.patient_id, patient.issuer) in wanted
    }
    for key, patient in found.items():
        _fill_patient_blanks(patient, wanted[key])
    new = [
        Patient(
            organization=organization,
            patient_id=key[0],
            issuer=key[1],
            **_new_patient_fields(header),
        )
        for key, header in wanted.items()
        if key not in found
    ]
    Patient.objects.bulk_create(sorted(new, key=lambda patient: patient.patient_id))
    found.update(((patient.patient_id, patient.issuer), patient) for patient in new)
    return found


# --- Entry point ------------------------------------------------------------------------------


def upload_locations(user: User) -> list[Location]:
    """The locations a user may upload into: those of memberships whose role grants upload.
    Remembered with the user's other account answers (``portal.decisions``): an uploader or a
    STOW-RS client asks it for every request, and any change to a membership, its locations, a
    role or a location forgets it."""

    def read() -> tuple[list[Location], None]:
        uploading = [
            membership.pk
            for membership in active_memberships(user)
            if membership.role.grants(Perm.UPLOAD_STUDIES)
        ]
        # No membership uploads: an empty IN runs no query.
        locations = Location.objects.filter(memberships__in=uploading).select_related(
            "organization"
        )
        unique = {location.pk: location for location in locations}
        return sorted(unique.values(), key=lambda loc: (loc.organization.name, loc.name)), None

    return decisions.remember(upload_locations_key(user.pk), read, scope=decisions.ACCOUNTS)


def upload_locations_key(user_id: int) -> str:
    """The remembered answer of :func:`upload_locations` for the user (for asking ahead)."""
    return f"upload-locations:{user_id}"


def resolve_upload_location(user: User, location_id: object = None) -> Location:
    """The location an upload by ``user`` is filed at: the one asked for, or the user's only one.

    Raises PermissionDenied when the user may not upload at all (or not into the location's
    organization), ValidationError naming the ``location`` field otherwise.
    """
    allowed = upload_locations(user)
    if location_id in (None, ""):
        if len(allowed) == 1:
            return allowed[0]
        if not allowed:
            if not has_perm(user, Perm.UPLOAD_STUDIES):
                raise PermissionDenied(_("Your account may not upload studies."))
            raise ValidationError(
                {
                    "location": [
                        _(
                            "Your account works from no location, so uploaded studies could "
                            "not be filed. Ask your organization's administrator to add you to "
                            "a location."
                        )
                    ]
                }
            )
        raise ValidationError({"location": [_("Choose the location the studies arrive at.")]})
    try:
        wanted = int(str(location_id))
    except ValueError:
        raise ValidationError({"location": [_("Choose a valid location.")]}) from None
    for location in allowed:
        if location.pk == wanted:
            return location
    elsewhere = Location.objects.select_related("organization").filter(pk=wanted).first()
    if elsewhere is None:
        raise ValidationError({"location": [_("Choose a valid location.")]})
    if not may_upload_to(user, elsewhere.organization):
        raise PermissionDenied(_("Your account may not upload studies to this organization."))
    raise ValidationError({"location": [_("You do not work from this location.")]})


Check = Callable[[DicomHeader], None]


class IngestionBatch:
    """Files stored for ``organization`` as received at ``location``, one :meth:`add` at a time,
    audited together by :meth:`finish` (or on leaving a ``with`` block).

    Each :meth:`add` has committed its file (bytes in storage, rows in the database) before it
    returns, so whatever it reported stored survives a crash of the process. The audit events
    are written by :meth:`finish`: one per study touched (STUDY_UPLOADED, or
    INSTANCES_RECEIVED with the sender's details when ``transfer`` is given) and one
    UPLOAD_REJECTED per rejected file. A process that dies before :meth:`finish` therefore
    leaves its stored files without their events; a sender that got no final answer sends
    again, and that batch audits them (as duplicates).

    ``uploaded_by`` (when given) must be allowed to upload into the organization; ``None`` is
    a system import or a network sender, named by ``actor_label``. Not thread-safe: one batch
    per upload, import or association.
    """

    def __init__(
        self,
        *,
        organization: Organization,
        location: Location | None,
        uploaded_by: User | None = None,
        request: HttpRequest | None = None,
        actor_label: str | None = None,
        transfer: Transfer | None = None,
    ) -> None:
        if uploaded_by is not None and not may_upload_to(uploaded_by, organization):
            raise PermissionDenied(_("Your account may not upload studies to this organization."))
        if location is not None and location.organization_id != organization.pk:
            raise ValidationError(
                {"location": [_("This location belongs to another organization.")]}
            )
        self.organization = organization
        self.location = location
        self.uploaded_by = uploaded_by
        self.request = request
        self.actor_label = actor_label
        self.transfer = transfer
        self.result = IngestResult()
        self._tallies: dict[str, _StudyTally] = {}
        self._limit = settings.UPLOAD_MAX_FILE_SIZE
        self._finished = False

    def add(self, name: str, stream: IO[bytes], *, check: Check | None = None) -> FileOutcome:
        """Store one file, or reject it with a reason. ``check`` is called with the file's
        header before anything is stored and may refuse the file by raising
        :class:`FileRejected` (a C-STORE whose data set is not the instance it announced).
        Anything else that fails (storage or database down) propagates: the file is then not
        stored, and the batch goes on with the next one."""
        self._check_open()
        name = _display_name(name)
        try:
            received = _receive(name, stream, limit=self._limit, check=check)
            try:
                study, same = _file_one(received, **self._filing)
            finally:
                received.spool.close()
        except FileRejected as rejected:
            return self._rejected(name, rejected)
        return self._filed(received, study, same)

    def add_all(
        self,
        files: Iterable[tuple[str, IO[bytes]]],
        *,
        on_file: Callable[[FileOutcome], None] | None = None,
        check: Check | None = None,
    ) -> None:
        """Store many files, ``INGESTION_CHUNK_FILES`` at a time (fewer when their bytes pass
        ``INGESTION_CHUNK_BYTES``): each chunk's new instances are filed in one transaction, and
        whatever needs a closer look (a duplicate, a conflict) one file at a time, as
        :meth:`add` does. A chunk commits before the next is read, so a failure loses at most
        the chunk it happened in. ``on_file`` is called for each file, in order; ``check`` as
        for :meth:`add`."""
        self._check_open()
        chunk: list[_Received | FileOutcome] = []
        spooled = 0
        try:
            for name, stream in files:
                name = _display_name(name)
                try:
                    received = _receive(name, stream, limit=self._limit, check=check)
                except FileRejected as rejected:
                    chunk.append(self._rejected(name, rejected, keep=False))
                    continue
                chunk.append(received)
                _write_ahead(received)
                spooled += received.size
                if (
                    len(chunk) >= settings.INGESTION_CHUNK_FILES
                    or spooled >= settings.INGESTION_CHUNK_BYTES
                ):
                    filing, chunk, spooled = chunk, [], 0
                    self._file_chunk(filing, on_file)  # which cleans up after itself
        except BaseException:
            # The files read since the last chunk are not filed (reading the next one failed):
            # nothing of theirs is left behind.
            unfiled = [item for item in chunk if isinstance(item, _Received)]
            _settle(unfiled)
            for item in unfiled:
                item.spool.close()
            raise
        self._file_chunk(chunk, on_file)

    def _file_chunk(
        self,
        chunk: list[_Received | FileOutcome],
        on_file: Callable[[FileOutcome], None] | None,
    ) -> None:
        received = [item for item in chunk if isinstance(item, _Received)]
        filed: dict[int, tuple[Study, bool | None] | FileRejected] = {}
        try:
            try:
                together, one_by_one = _file_together(received, **self._filing)
            except _FileOneByOne:
                together, one_by_one = {}, list(range(len(received)))
            for position, study in together.items():
                filed[position] = (study, None)
            _settle(received)  # the one-by-one path stores from the spools itself
            for position in one_by_one:
                try:
                    filed[position] = _file_one(received[position], **self._filing)
                except FileRejected as rejected:
                    filed[position] = rejected
        finally:
            _settle(received)
            for spooled in received:
                spooled.spool.close()
            # What was filed is accounted for, also when a later file's failure propagates.
            position = 0
            for item in chunk:
                if isinstance(item, _Received):
                    filing = filed.get(position)
                    position += 1
                    if filing is None:
                        continue
                    if isinstance(filing, FileRejected):
                        outcome = self._rejected(item.name, filing)
                    else:
                        outcome = self._filed(item, *filing)
                else:
                    outcome = self._keep(item)
                if on_file is not None:
                    on_file(outcome)

    @property
    def _filing(self) -> dict:
        return {
            "organization": self.organization,
            "location": self.location,
            "uploaded_by": self.uploaded_by,
        }

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("This ingestion batch is finished; start a new one.")

    def _keep(self, outcome: FileOutcome) -> FileOutcome:
        if outcome.status == FileStatus.REJECTED:
            self.result.rejected.append(
                Rejection(name=outcome.name, reason=outcome.message, code=outcome.code)
            )
        self.result.files.append(outcome)
        return outcome

    def _rejected(self, name: str, rejected: FileRejected, *, keep: bool = True) -> FileOutcome:
        outcome = FileOutcome(
            name=name, status=FileStatus.REJECTED, message=rejected.reason, code=rejected.code
        )
        return self._keep(outcome) if keep else outcome

    def _filed(self, received: _Received, study: Study, same: bool | None) -> FileOutcome:
        """Count a stored or duplicate file in the result and its study's tally."""
        result, header = self.result, received.header
        tally = self._tallies.get(study.study_uid)
        if tally is None:
            tally = self._tallies[study.study_uid] = _StudyTally(study=study)
            result.studies.append(study.study_uid)
        filed_as = {
            "sop_instance_uid": header.sop_uid,
            "study_uid": header.study_uid,
            "series_uid": header.series_uid,
            "sop_class_uid": header.sop_class_uid,
        }
        if same is None:
            tally.stored += 1
            result.stored.append(header.sop_uid)
            return self._keep(FileOutcome(name=received.name, status=FileStatus.STORED, **filed_as))
        tally.duplicates += 1
        result.duplicates.append(header.sop_uid)
        code = ""
        if same:
            message = _("Already stored; nothing to do.")
        else:
            result.differing_duplicates.append(header.sop_uid)
            code = "different_content"
            message = _(
                "Already stored with different content; the stored copy was kept. A corrected "
                "image needs a new SOP Instance UID."
            )
        return self._keep(
            FileOutcome(
                name=received.name,
                status=FileStatus.DUPLICATE,
                message=message,
                code=code,
                **filed_as,
            )
        )

    def finish(self) -> IngestResult:
        """Write the batch's audit events (once; later calls only return the result)."""
        if self._finished:
            return self.result
        self._finished = True
        result = self.result
        # Counts and ids only in the log: file names may carry patient names.
        logger.info(
            "Ingested %d file(s) for organization id %s: %d stored, %d duplicate(s), %d rejected",
            len(result.files),
            self.organization.pk,
            len(result.stored),
            len(result.duplicates),
            len(result.rejected),
        )
        _audit(
            result,
            self._tallies,
            organization=self.organization,
            location=self.location,
            uploaded_by=self.uploaded_by,
            request=self.request,
            actor_label=self.actor_label,
            transfer=self.transfer,
        )
        return result

    def __enter__(self) -> IngestionBatch:
        return self

    def __exit__(self, *exc_info) -> None:
        # Also when the server fails mid-batch (storage or database down): the files stored
        # until then are committed, so their events must be written too.
        self.finish()


def ingest_files(
    *,
    files: Iterable[tuple[str, IO[bytes]]],
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None = None,
    request: HttpRequest | None = None,
    actor_label: str | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    transfer: Transfer | None = None,
) -> IngestResult:
    """Store DICOM files for ``organization``, as received at ``location``.

    ``files`` yields (name shown to the uploader, binary stream). Each file is stored or
    rejected on its own; rejected files are reported by name with a reason the uploader can act
    on. New studies are filed in the location's worklist. Audit: one STUDY_UPLOADED per study
    touched and one UPLOAD_REJECTED per rejected file. ``uploaded_by`` (when given) must be
    allowed to upload into the organization; ``None`` is a system import (management command,
    named by ``actor_label``). ``on_file`` is called after each file, for progress displays.
    ``transfer`` says the files came over the network (C-STORE, STOW-RS): the per-study events
    are then INSTANCES_RECEIVED with the sender's details.
    """
    with IngestionBatch(
        organization=organization,
        location=location,
        uploaded_by=uploaded_by,
        request=request,
        actor_label=actor_label,
        transfer=transfer,
    ) as batch:
        batch.add_all(files, on_file=on_file)
    return batch.result


def _display_name(name: str) -> str:
    cleaned = "".join(ch for ch in str(name or "") if ch.isprintable()).strip()
    return cleaned[-255:] or _("(unnamed file)")


def _receive(name: str, stream: IO[bytes], *, limit: int, check: Check | None = None) -> _Received:
    """Spool and hash the file, read its header and run ``check``; FileRejected if unfit."""
    spool, sha256, size = _spool(stream, limit)
    try:
        header = read_header(spool, size)
        if check is not None:
            check(header)
    except BaseException:
        spool.close()
        raise
    return _Received(name=name, spool=spool, sha256=sha256, size=size, header=header)


def _audit(
    result: IngestResult,
    tallies: dict[str, _StudyTally],
    *,
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None,
    request: HttpRequest | None,
    actor_label: str | None,
    transfer: Transfer | None = None,
) -> None:
    """One event per study touched and one per rejected file, written once the batch is done.

    Files commit one by one (a bad file must not undo the good ones), so these events follow
    the last file's commit rather than sharing a transaction with each file.
    """
    label = actor_label if uploaded_by is None else None
    location_details = (
        {"location": location.name, "location_id": location.pk} if location is not None else {}
    )
    if transfer is not None:
        location_details.update(transfer.audit_details())
    action = Action.INSTANCES_RECEIVED if transfer is not None else Action.STUDY_UPLOADED
    events: list[EventArguments] = [
        {
            "action": action,
            "actor": uploaded_by,
            "actor_label": label,
            "request": request,
            "study": tally.study,
            "details": {
                "stored": tally.stored,
                "duplicates": tally.duplicates,
                **location_details,
            },
        }
        for tally in tallies.values()
    ]
    events += [
        {
            "action": Action.UPLOAD_REJECTED,
            "actor": uploaded_by,
            "actor_label": label,
            "request": request,
            "outcome": Outcome.MINOR_FAILURE,
            "organization_id": organization.pk,
            "target_type": "file",
            "details": {
                "file": rejection.name,
                "reason": rejection.reason,
                "kind": rejection.code,
                **location_details,
            },
        }
        for rejection in result.rejected
    ]
    # Appended together, in one transaction: one commit and one lock of the chain's head.
    record_many(events)
