"""The Django admin for studies and worklists.

Study data comes from DICOM files (ingestion) and worklist entries from shares, each through a
service that writes the audit trail; the admin could do neither, so these pages are read-only
(worklist names excepted). Page titles never carry patient data: the admin puts an object's
``str()`` in the browser title of its change and history pages, and ``Patient.__str__`` holds
the name, so the patient pages set their own titles.
"""

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import Q
from django.utils.formats import date_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from studies.models import Entry, Folder, Instance, Patient, Report, Series, Study, Worklist


def study_label(study: Study) -> str:
    """A study as the admin's lists name it (shares, guest links): its description and date,
    never the patient's name (lists are shared screens)."""
    date = date_format(study.study_date, "DATE_FORMAT") if study.study_date else ""
    return " · ".join(part for part in (study.description or study.study_uid, date) if part)


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: rows are created and changed by services that also write the audit trail."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = ("id", "organization", "patient_id", "issuer", "birth_date", "sex")
    list_filter = ("organization",)
    list_select_related = ("organization",)
    search_fields = ("patient_id", "name_search")
    ordering = ("organization__name", "patient_id")
    fields = (
        "organization",
        "patient_id",
        "issuer",
        "name",
        "family_name",
        "given_name",
        "name_search",
        "birth_date",
        "sex",
    )

    @staticmethod
    def _neutral_title(obj) -> str:
        return gettext("Patient record %(pk)s") % {"pk": obj.pk}

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            # The admin's default subtitle (and so the <title>) is str(obj): the patient's name.
            context["subtitle"] = self._neutral_title(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def history_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            extra_context = {**(extra_context or {}), "title": self._neutral_title(obj)}
        return super().history_view(request, object_id, extra_context=extra_context)


class ModalityFilter(admin.SimpleListFilter):
    """One entry per modality, matching studies that contain it ("CT" finds "CT SR")."""

    title = _("modality")
    parameter_name = "modality"

    def lookups(self, request, model_admin):
        modalities = (
            Series.objects.exclude(modality="").values_list("modality", flat=True).distinct()
        )
        return [(m, m) for m in sorted(set(modalities))]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(
            Q(modalities=value)
            | Q(modalities__startswith=f"{value} ")
            | Q(modalities__endswith=f" {value}")
            | Q(modalities__contains=f" {value} ")
        )


class SeriesInline(admin.TabularInline):
    model = Series
    fields = ("number", "modality", "description", "body_part", "instance_count", "series_uid")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Study)
class StudyAdmin(ReadOnlyAdmin):
    list_display = (
        "study_date",
        "modalities",
        "description",
        "organization",
        "accession",
        "series_count",
        "instance_count",
        "received_location",
        "received_at",
    )
    list_filter = ("organization", ModalityFilter, "received_location")
    list_select_related = ("organization", "received_location")
    search_fields = ("accession", "study_uid")
    date_hierarchy = "study_date"
    ordering = ("-study_date", "-id")
    raw_id_fields = ("patient",)
    fields = (
        "study_uid",
        "organization",
        "patient",
        "study_date",
        "study_time",
        "description",
        "accession",
        "referring_physician",
        "institution",
        "modalities",
        "series_count",
        "instance_count",
        "received_at",
        "received_location",
    )
    readonly_fields = ("received_at",)
    inlines = (SeriesInline,)


@admin.register(Series)
class SeriesAdmin(ReadOnlyAdmin):
    list_display = ("series_uid", "study", "number", "modality", "description", "instance_count")
    list_filter = ("modality",)
    list_select_related = ("study",)
    search_fields = ("series_uid", "study__study_uid")
    raw_id_fields = ("study",)


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    list_display = (
        "sop_instance_uid",
        "number",
        "frames",
        "rows",
        "columns",
        "transfer_syntax",
        "size",
        "has_pixels",
        "received_at",
    )
    list_filter = ("has_pixels", "transfer_syntax")
    search_fields = ("sop_instance_uid", "sha256", "series__series_uid")
    raw_id_fields = ("series",)
    fields = (
        "sop_instance_uid",
        "series",
        "sop_class_uid",
        "number",
        "transfer_syntax",
        "frames",
        "rows",
        "columns",
        "has_pixels",
        "file",
        "sha256",
        "size",
        "received_at",
    )
    readonly_fields = ("received_at",)


@admin.register(Report)
class ReportAdmin(ReadOnlyAdmin):
    list_display = ("study", "updated_at", "updated_by")
    list_select_related = ("study", "updated_by")
    search_fields = ("study__study_uid", "study__accession")
    raw_id_fields = ("study", "updated_by")


@admin.register(Worklist)
class WorklistAdmin(admin.ModelAdmin):
    """Worklists are made with their location, group or user; only the name is edited here."""

    list_display = ("name", "kind", "organization", "share_code", "location", "group", "owner")
    list_filter = ("kind", "organization")
    list_select_related = ("organization", "location", "group", "owner")
    search_fields = ("name", "share_code")
    fields = ("name", "kind", "organization", "location", "group", "owner", "share_code")
    readonly_fields = ("kind", "organization", "location", "group", "owner", "share_code")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Folder)
class FolderAdmin(ReadOnlyAdmin):
    list_display = ("name", "worklist", "parent")
    list_select_related = ("worklist", "parent")
    search_fields = ("name", "worklist__name")
    raw_id_fields = ("worklist", "parent")


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = (
        "study",
        "worklist",
        "origin",
        "level",
        "anonymized",
        "can_share",
        "valid_until",
        "removed_at",
        "blocked_at",
        "added_at",
    )
    list_filter = ("origin", "level", "anonymized", "worklist__kind")
    list_select_related = ("study", "worklist")
    search_fields = ("study__study_uid", "worklist__name", "worklist__share_code")
    raw_id_fields = ("worklist", "study", "folder", "added_by")
    date_hierarchy = "added_at"
