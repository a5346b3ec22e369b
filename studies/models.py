import secrets

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Group, Location, Organization


class AccessLevel(models.TextChoices):
    """What a principal may do with a study, from least to most."""

    IMAGES = "images", _("Images only")
    REPORT_READ = "report_read", _("Images and read access to the report")
    REPORT_WRITE = "report_write", _("Images and write access to the report")


ACCESS_RANK = {AccessLevel.IMAGES: 0, AccessLevel.REPORT_READ: 1, AccessLevel.REPORT_WRITE: 2}


class Patient(models.Model):
    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        related_name="patients",
        verbose_name=_("organization"),
    )
    patient_id = models.CharField(_("patient ID"), max_length=64)
    issuer = models.CharField(_("issuer of patient ID"), max_length=64, blank=True)
    name = models.CharField(_("name"), max_length=200, blank=True, help_text="DICOM PN value")
    family_name = models.CharField(max_length=100, blank=True, verbose_name=_("family name"))
    given_name = models.CharField(max_length=100, blank=True, verbose_name=_("given name"))
    # Lower-case, accent-free copy of the name so search is accent- and case-insensitive on
    # every database with a plain index-friendly LIKE.
    name_search = models.CharField(
        max_length=200, blank=True, db_index=True, verbose_name=_("name search")
    )
    birth_date = models.DateField(_("date of birth"), null=True, blank=True)
    sex = models.CharField(_("sex"), max_length=1, blank=True)

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "patient_id", "issuer"], name="patient_unique_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.patient_id})"

    @property
    def display_name(self) -> str:
        parts = (self.given_name, self.family_name)
        # A PN of only separators ("^^^^") is no name at all: show nothing rather than carets.
        return " ".join(part for part in parts if part) or " ".join(self.name.split("^")).strip()


class Study(models.Model):
    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        related_name="studies",
        verbose_name=_("organization"),
    )
    patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, related_name="studies", verbose_name=_("patient")
    )
    study_uid = models.CharField(_("study instance UID"), max_length=64, unique=True)
    study_date = models.DateField(_("study date"), null=True, blank=True)
    study_time = models.TimeField(_("study time"), null=True, blank=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    accession = models.CharField(_("accession number"), max_length=64, blank=True)
    referring_physician = models.CharField(
        max_length=200, blank=True, verbose_name=_("referring physician")
    )
    institution = models.CharField(max_length=200, blank=True, verbose_name=_("institution"))
    # Space-separated, e.g. "CT SR", kept up to date by ingestion for listing and filtering.
    modalities = models.CharField(_("modalities"), max_length=100, blank=True)
    series_count = models.PositiveIntegerField(default=0, verbose_name=_("series count"))
    instance_count = models.PositiveIntegerField(default=0, verbose_name=_("instance count"))
    # The patient's name normalized (family name first), kept on the study so the directory can
    # sort and page by name with an index instead of sorting a join of every visible study.
    patient_sort_name = models.CharField(
        max_length=200, blank=True, default="", verbose_name=_("patient sort name")
    )
    received_at = models.DateTimeField(auto_now_add=True, verbose_name=_("received at"))
    received_location = models.ForeignKey(
        Location,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("received location"),
    )

    class Meta:
        verbose_name = _("study")
        verbose_name_plural = _("studies")
        indexes = [
            models.Index(fields=["organization", "-study_date", "-id"], name="study_org_date"),
            models.Index(fields=["accession"], name="study_accession"),
            models.Index(fields=["-study_date", "-id"], name="study_date"),
            models.Index(fields=["patient_sort_name", "id"], name="study_patient_sort"),
            models.Index(fields=["description", "id"], name="study_description"),
            models.Index(fields=["modalities", "id"], name="study_modalities"),
        ]

    def __str__(self) -> str:
        # Never a patient name: this string reaches logs and admin breadcrumbs.
        return f"Study {self.study_uid}"


class Series(models.Model):
    study = models.ForeignKey(
        Study, on_delete=models.CASCADE, related_name="series", verbose_name=_("study")
    )
    series_uid = models.CharField(_("series instance UID"), max_length=64, unique=True)
    modality = models.CharField(max_length=16, blank=True, verbose_name=_("modality"))
    number = models.IntegerField(null=True, blank=True, verbose_name=_("number"))
    description = models.CharField(max_length=200, blank=True, verbose_name=_("description"))
    body_part = models.CharField(max_length=64, blank=True, verbose_name=_("body part"))
    instance_count = models.PositiveIntegerField(default=0, verbose_name=_("instance count"))

    class Meta:
        verbose_name = _("series")
        verbose_name_plural = _("series")
        ordering = ["number", "id"]

    def __str__(self) -> str:
        return f"Series {self.series_uid}"


def content_version(sha256: str) -> str:
    """A short name of an instance's stored bytes (by their hash), which never change under its
    UID (they are stored by content): what a cacheable image address carries (``?v=``)."""
    return sha256[:16]


class ValuesInsertedJSONField(models.JSONField):
    """A JSONField that a bulk insert writes as VALUES. Django inserts many rows on PostgreSQL
    as one array per column (UNNEST), and psycopg escapes each quote of each JSON text in such
    an array with a regular expression in Python: 2 ms a STOW-RS request of ten instances,
    where VALUES leave the quoting to libpq. A field with a placeholder of its own is never
    put in an array."""

    def get_placeholder(self, value: object, compiler: object, connection: object) -> str:
        return "%s"


class Instance(models.Model):
    series = models.ForeignKey(
        Series, on_delete=models.CASCADE, related_name="instances", verbose_name=_("series")
    )
    sop_instance_uid = models.CharField(_("SOP instance UID"), max_length=64, unique=True)
    sop_class_uid = models.CharField(max_length=64, blank=True, verbose_name=_("sop class uid"))
    number = models.IntegerField(null=True, blank=True, verbose_name=_("number"))
    transfer_syntax = models.CharField(max_length=64, blank=True, verbose_name=_("transfer syntax"))
    frames = models.PositiveIntegerField(default=1, verbose_name=_("frames"))
    rows = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("rows"))
    columns = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("columns"))
    has_pixels = models.BooleanField(default=True, verbose_name=_("has pixels"))
    # Name in the "dicom" storage, derived from the content (sha256), so the same bytes are
    # stored once and nothing refers to a local path.
    file = models.CharField(max_length=200, verbose_name=_("file"))
    sha256 = models.CharField(max_length=64, verbose_name=_("sha256"))
    size = models.PositiveBigIntegerField(default=0, verbose_name=_("size"))
    # studies.rendering.PlainImage as JSON, read from the header when the file was stored: its
    # frames render without reading the header again. Null: they need the header.
    plain_image = ValuesInsertedJSONField(
        null=True, blank=True, editable=False, verbose_name=_("plain image")
    )
    received_at = models.DateTimeField(auto_now_add=True, verbose_name=_("received at"))

    class Meta:
        verbose_name = _("instance")
        verbose_name_plural = _("instances")
        ordering = ["number", "id"]

    def __str__(self) -> str:
        return f"Instance {self.sop_instance_uid}"

    @property
    def content_version(self) -> str:
        return content_version(self.sha256)


class Report(models.Model):
    study = models.OneToOneField(
        Study, on_delete=models.CASCADE, related_name="report", verbose_name=_("study")
    )
    text = models.TextField(blank=True, verbose_name=_("text"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("updated by"),
    )

    class Meta:
        verbose_name = _("report")
        verbose_name_plural = _("reports")

    def __str__(self) -> str:
        return f"Report of {self.study}"


class WorklistKind(models.TextChoices):
    LOCATION = "location", _("Location")
    GROUP = "group", _("Group")
    PERSONAL = "personal", _("Personal")


def new_share_code() -> str:
    # Readable by phone: no 0/O/1/I.
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(10))


class Worklist(models.Model):
    """The list a location, a group or one user works from. Entries are shortcuts to studies."""

    kind = models.CharField(max_length=10, choices=WorklistKind.choices, verbose_name=_("kind"))
    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="worklists",
        null=True,
        blank=True,
        verbose_name=_("organization"),
    )
    location = models.OneToOneField(
        Location,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="worklist",
        verbose_name=_("location"),
    )
    group = models.OneToOneField(
        Group,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="worklist",
        verbose_name=_("group"),
    )
    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="personal_worklist",
        verbose_name=_("owner"),
    )
    name = models.CharField(max_length=200, verbose_name=_("name"))
    share_code = models.CharField(
        max_length=16, unique=True, default=new_share_code, verbose_name=_("share code")
    )

    class Meta:
        verbose_name = _("worklist")
        verbose_name_plural = _("worklists")
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(
                        kind="location",
                        location__isnull=False,
                        group__isnull=True,
                        owner__isnull=True,
                    )
                    | models.Q(
                        kind="group", group__isnull=False, location__isnull=True, owner__isnull=True
                    )
                    | models.Q(
                        kind="personal",
                        owner__isnull=False,
                        location__isnull=True,
                        group__isnull=True,
                    )
                ),
                name="worklist_one_holder",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Folder(models.Model):
    worklist = models.ForeignKey(
        Worklist, on_delete=models.CASCADE, related_name="folders", verbose_name=_("worklist")
    )
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
        verbose_name=_("parent"),
    )
    name = models.CharField(max_length=200, verbose_name=_("name"))

    class Meta:
        verbose_name = _("folder")
        verbose_name_plural = _("folders")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["worklist", "parent", "name"], name="folder_unique_name"
            )
        ]

    def __str__(self) -> str:
        return self.name


class EntryOrigin(models.TextChoices):
    INGESTION = "ingestion", _("Received")
    SHARE = "share", _("Shared")
    MANUAL = "manual", _("Added")


class LabelScope(models.TextChoices):
    """Who sees a shared entry's label (PACSonWEB: "the label can be set for the user or a
    group")."""

    # Everyone who sees the entry's worklist: the recipient user, every member of a group or
    # location. What every label did before the choice existed.
    GROUP = "group", _("For the whole group")
    # Only users the study was shared with personally: not shown in a group's or location's
    # worklist.
    USER = "user", _("Only for the recipient user")


class Entry(models.Model):
    """A study's place in a worklist (optionally in one of its folders): a shortcut, never a copy.

    An entry made by a share carries that share's terms (level, anonymization, further sharing,
    validity), so the access authority can answer from entries alone; removing, blocking or
    expiring the share ends the entry's access with no job to run.
    """

    worklist = models.ForeignKey(
        Worklist, on_delete=models.CASCADE, related_name="entries", verbose_name=_("worklist")
    )
    study = models.ForeignKey(
        Study, on_delete=models.CASCADE, related_name="entries", verbose_name=_("study")
    )
    folder = models.ForeignKey(
        Folder,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="entries",
        verbose_name=_("folder"),
    )
    origin = models.CharField(max_length=10, choices=EntryOrigin.choices, verbose_name=_("origin"))
    added_at = models.DateTimeField(auto_now_add=True, verbose_name=_("added at"))
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("added by"),
    )
    # Terms of a shared entry; for received entries the member's role decides instead.
    level = models.CharField(
        max_length=12,
        choices=AccessLevel.choices,
        default=AccessLevel.REPORT_WRITE,
        verbose_name=_("level"),
    )
    anonymized = models.BooleanField(default=False, verbose_name=_("anonymized"))
    can_share = models.BooleanField(default=True, verbose_name=_("can share"))
    two_factor_required = models.BooleanField(default=False, verbose_name=_("two factor required"))
    valid_until = models.DateTimeField(null=True, blank=True, verbose_name=_("valid until"))
    removed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("removed at"))
    blocked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("blocked at"))
    label = models.CharField(max_length=100, blank=True, verbose_name=_("label"))
    label_scope = models.CharField(
        max_length=5,
        choices=LabelScope.choices,
        default=LabelScope.GROUP,
        verbose_name=_("label scope"),
    )
    message = models.TextField(blank=True, verbose_name=_("message"))
    opened_at = models.DateTimeField(null=True, blank=True, verbose_name=_("opened at"))

    class Meta:
        verbose_name = _("entry")
        verbose_name_plural = _("entries")
        indexes = [
            models.Index(fields=["worklist", "study"], name="entry_worklist_study"),
            models.Index(fields=["study", "worklist"], name="entry_study_worklist"),
            # Every search asks whether the user holds any anonymized or two-factor share at
            # all; without this the answer "none" reads every entry of the user's worklists.
            models.Index(
                fields=["worklist"],
                condition=models.Q(origin="share")
                & (models.Q(anonymized=True) | models.Q(two_factor_required=True)),
                name="entry_masked_share",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.study} in {self.worklist}"

    @property
    def shown_label(self) -> str:
        """The label as the users of this entry's worklist see it: a label only for the
        recipient user stays out of groups' and locations' worklists. (Select the worklist
        with the entry.)"""
        if self.label_scope == LabelScope.USER and self.worklist.kind != WorklistKind.PERSONAL:
            return ""
        return self.label
