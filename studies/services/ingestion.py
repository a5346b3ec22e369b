"""DICOM in: files become Patient, Study, Series and Instance rows and content-addressed files.

One entry point, :func:`ingest_files`, serves the browser upload, the REST API, STOW-RS and
``manage.py import_dicom``; :class:`IngestionBatch` is the same service one file at a time, for
senders that wait for each file's answer (the DIMSE listener's C-STORE). Each file is read,
checked and stored on its own (its own database transaction), so one bad file in a folder of
hundreds loses nothing else, and the uploader gets one clear reason per rejected file.

Files are stored once per content: the storage name is derived from the SHA-256 of the bytes, so
uploading the same files twice is harmless, and nothing refers to a local path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.core.files.storage import storages
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from accounts.models import Location, Organization, User
from accounts.permissions import Perm
from audit.models import Action, Outcome
from audit.services import record
from studies.access import active_memberships, may_upload_to
from studies.dicom_header import DicomHeader, FileRejected, normalize_name, read_header
from studies.models import Instance, Patient, Series, Study
from studies.services.worklists import file_received_study

logger = logging.getLogger(__name__)

# Spool uploads in memory up to this size, then on disk: a 1 GB cine never sits in RAM.
_SPOOL_MEMORY = 8 * 1024 * 1024
_CHUNK = 1024 * 1024
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


# --- Spooling and storage ---------------------------------------------------------------------


def _spool(stream: BinaryIO, limit: int) -> tuple[tempfile.SpooledTemporaryFile, str, int]:
    """Copy the upload to a spooled file, hashing as it goes; stop as soon as it is too large."""
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
            raise FileRejected(
                "too_large",
                _(
                    "The file is larger than the upload limit of %(limit)s. Ask your administrator "
                    "to import it."
                )
                % {"limit": filesizeformat(limit)},
            )
        digest.update(chunk)
        spool.write(chunk)
    if size == 0:
        spool.close()
        raise FileRejected("empty", _("The file is empty."))
    spool.seek(0)
    return spool, digest.hexdigest(), size


def _read_chunk(stream: BinaryIO, spool: BinaryIO) -> bytes:
    try:
        return stream.read(_CHUNK)
    except OSError as error:
        spool.close()
        raise FileRejected(
            "unreadable",
            _("The file could not be read (%(error)s). Check the disc or folder and try again.")
            % {"error": error.strerror or error},
        ) from error


def storage_name(sha256: str) -> str:
    """Where bytes with this SHA-256 live in the "dicom" storage."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.dcm"


def _store_bytes(spool: BinaryIO, sha256: str) -> str:
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
    name = header.name
    patient, created = Patient.objects.get_or_create(
        organization=organization,
        patient_id=header.patient_id,
        issuer=header.issuer,
        defaults={
            "name": name.raw,
            "family_name": name.family,
            "given_name": name.given,
            "name_search": name.search,
            "birth_date": header.birth_date,
            "sex": header.sex,
        },
    )
    if not created:
        # Only fill what is missing: an old file uploaded late must not undo a corrected name.
        changed = []
        for attr, value in (
            ("name", name.raw),
            ("family_name", name.family),
            ("given_name", name.given),
            ("name_search", name.search),
            ("birth_date", header.birth_date),
            ("sex", header.sex),
        ):
            if value and not getattr(patient, attr):
                setattr(patient, attr, value)
                changed.append(attr)
        if changed:
            patient.save(update_fields=changed)
            if "name" in changed:
                Study.objects.filter(patient=patient).update(
                    patient_sort_name=patient_sort_name(patient)
                )
    return patient


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
            defaults={
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
            },
        )
    if study.organization_id != organization.pk:
        raise _conflict_elsewhere()
    if not created:
        patient = study.patient
        if (patient.patient_id, patient.issuer) != (header.patient_id, header.issuer):
            raise FileRejected(
                "patient_mismatch",
                _(
                    "Its Patient ID differs from the patient of the study already stored with the "
                    "same Study Instance UID, so it was not stored. Check the patient in the "
                    "imaging system."
                ),
            )
        _fill_study_blanks(study, header)
    return study, created


def _fill_study_blanks(study: Study, header: DicomHeader) -> None:
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
    if changed:
        study.save(update_fields=changed)


def _series_for(header: DicomHeader, study: Study) -> tuple[Series, bool]:
    series, created = Series.objects.get_or_create(
        series_uid=header.series_uid,
        defaults={
            "study": study,
            "modality": header.modality,
            "number": header.series_number,
            "description": header.series_description,
            "body_part": header.body_part,
        },
    )
    if series.study_id != study.pk:
        raise FileRejected(
            "series_conflict",
            _("Its series is already stored in a different study, so it was not stored."),
        )
    return series, created


def _file_instance(
    *,
    header: DicomHeader,
    sha256: str,
    size: int,
    stored_as: str,
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None,
) -> tuple[Study, bool | None]:
    """Write the rows for one file, atomically. Returns the study, and None when the instance
    was stored, else whether the duplicate's bytes equal the stored copy."""
    with transaction.atomic():
        study, study_created = _locked_study(header, organization, location)
        # Checked again under the study lock: a concurrent upload may have just stored it.
        same = _existing_instance(header, organization, sha256)
        if same is not None:
            return study, same
        series, series_created = _series_for(header, study)
        try:
            with transaction.atomic():
                Instance.objects.create(
                    series=series,
                    sop_instance_uid=header.sop_uid,
                    sop_class_uid=header.sop_class_uid,
                    number=header.instance_number,
                    transfer_syntax=header.transfer_syntax,
                    frames=header.frames,
                    rows=header.rows,
                    columns=header.columns,
                    has_pixels=header.has_pixels,
                    file=stored_as,
                    sha256=sha256,
                    size=size,
                )
        except IntegrityError:
            # Same SOP Instance UID committed by a concurrent upload into another study.
            same = _existing_instance(header, organization, sha256)
            if same is None:
                raise
            return study, same
        Series.objects.filter(pk=series.pk).update(instance_count=F("instance_count") + 1)
        study.instance_count += 1
        update = ["instance_count"]
        if series_created:
            study.series_count += 1
            update.append("series_count")
        modalities = set(study.modalities.split())
        if header.modality and header.modality not in modalities:
            study.modalities = " ".join(sorted(modalities | {header.modality}))[:100]
            update.append("modalities")
        study.save(update_fields=update)
        if study_created:
            file_received_study(study=study, location=location, added_by=uploaded_by)
    return study, None


# --- Entry point ------------------------------------------------------------------------------


def upload_locations(user: User) -> list[Location]:
    """The locations a user may upload into: those of memberships whose role grants upload."""
    locations: dict[int, Location] = {}
    for membership in active_memberships(user):
        if membership.role.grants(Perm.UPLOAD_STUDIES):
            for location in membership.locations.select_related("organization"):
                locations[location.pk] = location
    return sorted(locations.values(), key=lambda loc: (loc.organization.name, loc.name))


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
            if not any(m.role.grants(Perm.UPLOAD_STUDIES) for m in active_memberships(user)):
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
    location = Location.objects.select_related("organization").filter(pk=wanted).first()
    if location is None:
        raise ValidationError({"location": [_("Choose a valid location.")]})
    if not may_upload_to(user, location.organization):
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

    def add(self, name: str, stream: BinaryIO, *, check: Check | None = None) -> FileOutcome:
        """Store one file, or reject it with a reason. ``check`` is called with the file's
        header before anything is stored and may refuse the file by raising
        :class:`FileRejected` (a C-STORE whose data set is not the instance it announced).
        Anything else that fails (storage or database down) propagates: the file is then not
        stored, and the batch goes on with the next one."""
        if self._finished:
            raise RuntimeError("This ingestion batch is finished; start a new one.")
        outcome = _ingest_one(
            _display_name(name),
            stream,
            limit=self._limit,
            organization=self.organization,
            location=self.location,
            uploaded_by=self.uploaded_by,
            result=self.result,
            tallies=self._tallies,
            check=check,
        )
        self.result.files.append(outcome)
        return outcome

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
    files: Iterable[tuple[str, BinaryIO]],
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
        for name, stream in files:
            outcome = batch.add(name, stream)
            if on_file is not None:
                on_file(outcome)
    return batch.result


def _display_name(name: str) -> str:
    cleaned = "".join(ch for ch in str(name or "") if ch.isprintable()).strip()
    return cleaned[-255:] or _("(unnamed file)")


def _ingest_one(
    name: str,
    stream: BinaryIO,
    *,
    limit: int,
    organization: Organization,
    location: Location | None,
    uploaded_by: User | None,
    result: IngestResult,
    tallies: dict[str, _StudyTally],
    check: Check | None = None,
) -> FileOutcome:
    spool = None
    try:
        spool, sha256, size = _spool(stream, limit)
        header = read_header(spool, size)
        if check is not None:
            check(header)
        # Quick check before writing anything: re-sending files already here costs no storage.
        existing = (
            Study.objects.filter(study_uid=header.study_uid)
            .values_list("organization_id", flat=True)
            .first()
        )
        if existing is not None and existing != organization.pk:
            raise _conflict_elsewhere()
        same = _existing_instance(header, organization, sha256)
        if same is None:
            stored_as = _store_bytes(spool, sha256)
            study, same = _file_instance(
                header=header,
                sha256=sha256,
                size=size,
                stored_as=stored_as,
                organization=organization,
                location=location,
                uploaded_by=uploaded_by,
            )
        else:
            study = Study.objects.select_related("patient").get(study_uid=header.study_uid)
    except FileRejected as rejected:
        result.rejected.append(Rejection(name=name, reason=rejected.reason, code=rejected.code))
        return FileOutcome(
            name=name, status=FileStatus.REJECTED, message=rejected.reason, code=rejected.code
        )
    finally:
        if spool is not None:
            spool.close()

    tally = tallies.get(study.study_uid)
    if tally is None:
        tally = tallies[study.study_uid] = _StudyTally(study=study)
        result.studies.append(study.study_uid)
    if same is None:
        tally.stored += 1
        result.stored.append(header.sop_uid)
        return FileOutcome(name=name, status=FileStatus.STORED, sop_instance_uid=header.sop_uid)
    tally.duplicates += 1
    result.duplicates.append(header.sop_uid)
    code = ""
    if same:
        message = _("Already stored; nothing to do.")
    else:
        result.differing_duplicates.append(header.sop_uid)
        code = "different_content"
        message = _(
            "Already stored with different content; the stored copy was kept. A corrected image "
            "needs a new SOP Instance UID."
        )
    return FileOutcome(
        name=name,
        status=FileStatus.DUPLICATE,
        sop_instance_uid=header.sop_uid,
        message=message,
        code=code,
    )


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
    for tally in tallies.values():
        record(
            action=Action.INSTANCES_RECEIVED if transfer is not None else Action.STUDY_UPLOADED,
            actor=uploaded_by,
            actor_label=label,
            request=request,
            study=tally.study,
            details={"stored": tally.stored, "duplicates": tally.duplicates, **location_details},
        )
    for rejection in result.rejected:
        record(
            action=Action.UPLOAD_REJECTED,
            actor=uploaded_by,
            actor_label=label,
            request=request,
            outcome=Outcome.MINOR_FAILURE,
            organization_id=organization.pk,
            target_type="file",
            details={
                "file": rejection.name,
                "reason": rejection.reason,
                "kind": rejection.code,
                **location_details,
            },
        )
