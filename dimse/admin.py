"""The Django admin for DICOM nodes.

Superusers manage every organization's nodes; an organization's administrator (a staff member
whose role there grants "Organization: administer") manages the nodes of the organizations
they administer, and is offered only those organizations and their locations.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import ForeignKey, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from accounts.memberships import administered_organization_ids
from accounts.models import Location, Organization
from dimse.models import DicomNode, clean_ae_title, parse_host


class DicomNodeForm(forms.ModelForm):
    class Meta:
        model = DicomNode
        fields = ["organization", "ae_title", "host", "location", "is_active", "description"]

    def clean_ae_title(self) -> str:
        return clean_ae_title(self.cleaned_data.get("ae_title", ""))

    def clean_host(self) -> str:
        host: str = self.cleaned_data.get("host", "").strip()
        parse_host(host)
        return host


def _administers(request: HttpRequest, node: DicomNode | None) -> bool:
    ids = administered_organization_ids(request.user)
    return bool(ids) if node is None else node.organization_id in ids


@admin.register(DicomNode)
class DicomNodeAdmin(admin.ModelAdmin):
    form = DicomNodeForm
    list_display = ("ae_title", "organization", "location", "host_or_any", "is_active")
    list_filter = ("is_active", "organization")
    search_fields = ("ae_title", "host", "description", "organization__name")
    list_select_related = ("organization", "location")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("organization", "ae_title", "host", "location", "is_active")}),
        (_("Notes"), {"fields": ("description", "created_at", "updated_at")}),
    )

    @admin.display(description=_("host"), ordering="host")
    def host_or_any(self, node: DicomNode) -> str | Promise:
        return node.host or _("any address")

    def _sees_all(self, request: HttpRequest, action: str) -> bool:
        return request.user.has_perm(f"dimse.{action}_dicomnode")

    def get_queryset(self, request: HttpRequest) -> QuerySet[DicomNode]:
        queryset = super().get_queryset(request)
        if self._sees_all(request, "view") or self._sees_all(request, "change"):
            return queryset
        return queryset.filter(organization_id__in=administered_organization_ids(request.user))

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField | None:
        if not self._sees_all(request, "change"):
            ids = administered_organization_ids(request.user)
            if db_field.name == "organization":
                kwargs["queryset"] = Organization.objects.filter(pk__in=ids)
            elif db_field.name == "location":
                kwargs["queryset"] = Location.objects.filter(organization_id__in=ids)
        if db_field.name == "location":
            kwargs.setdefault("queryset", Location.objects.all())
            kwargs["queryset"] = kwargs["queryset"].select_related("organization")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or _administers(request, None)

    def has_view_permission(self, request: HttpRequest, obj: DicomNode | None = None) -> bool:
        return super().has_view_permission(request, obj) or _administers(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) or _administers(request, None)

    def has_change_permission(self, request: HttpRequest, obj: DicomNode | None = None) -> bool:
        return super().has_change_permission(request, obj) or _administers(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: DicomNode | None = None) -> bool:
        return super().has_delete_permission(request, obj) or _administers(request, obj)
