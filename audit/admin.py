"""The audit trail in the Django admin: read-only for everyone, superusers included.

Superusers and holders of the ``audit.view_auditevent`` permission (an installation's security
officer) read the whole trail; a staff member who administers organizations reads those
organizations' events and their own actions, the same scope as the REST API. Every page of the
trail that is opened is itself an AUDIT_READ event.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ERROR_FLAG, ChangeList
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template import engines
from django.urls import URLPattern, path
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit.codes import EVENT_CODES
from audit.models import Action, AuditEvent
from audit.selectors import events_visible_to, study_labels, trail_organization_ids, verify_chain
from audit.services import record

# DICOM PS3.16 CID 150 "Audit Event ID" meanings, for the event code filter.
EVENT_CODE_NAMES = {
    "110100": _("Application Activity"),
    "110101": _("Audit Log Used"),
    "110102": _("Begin Transferring DICOM Instances"),
    "110103": _("DICOM Instances Accessed"),
    "110104": _("DICOM Instances Transferred"),
    "110105": _("DICOM Study Deleted"),
    "110106": _("Export"),
    "110107": _("Import"),
    "110108": _("Network Entry"),
    "110109": _("Order Record"),
    "110110": _("Patient Record"),
    "110111": _("Procedure Record"),
    "110112": _("Query"),
    "110113": _("Security Alert"),
    "110114": _("User Authentication"),
}

# Listing break after break in messages helps nobody past a screenful; the command lists all.
MAX_BREAK_MESSAGES = 20

# Adds the "Verify chain" button beside the changelist's tools. Kept here rather than in a
# template file so the audit admin is self-contained; the form posts, so a link (or a crawler)
# can never start a verification.
CHANGE_LIST_TEMPLATE = """{% extends "admin/change_list.html" %}{% load i18n %}
{% block object-tools-items %}{{ block.super }}
<li>
  <form method="post" action="{% url 'admin:audit_auditevent_verify' %}">
    {% csrf_token %}
    <button type="submit" class="button">{% translate "Verify chain" %}</button>
  </form>
</li>
{% endblock %}"""


class EventCodeFilter(admin.SimpleListFilter):
    """The codes the portal emits, named; listing them from the code table avoids a DISTINCT
    over millions of rows on every page load."""

    title = _("event code")
    parameter_name = "event_code"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[AuditEvent]
    ) -> list[tuple[str, str]]:
        codes = sorted({event_id for event_id, _type in EVENT_CODES.values()})
        return [
            (code, f"{code} {EVENT_CODE_NAMES[code]}" if code in EVENT_CODE_NAMES else code)
            for code in codes
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent]
    ) -> QuerySet[AuditEvent]:
        if self.value():
            return queryset.filter(event_code=self.value())
        return queryset


def _sees_whole_trail(request: HttpRequest) -> bool:
    user = request.user
    return user.is_superuser or user.has_perm("audit.view_auditevent")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("when", "actor_label", "action", "outcome", "event_code", "study", "ip")
    list_filter = ("action", "outcome", EventCodeFilter)
    # Identifiers match exactly (a fragment of a patient ID would list strangers' records);
    # people are found by part of their name.
    search_fields = ("study_uid__exact", "patient_id__exact", "actor_label__icontains")
    search_help_text = _("Exact study instance UID or patient ID, or part of the actor's name.")
    date_hierarchy = "at"
    list_per_page = 100
    # COUNT(*) over the whole trail is slow on millions of rows; the filtered count is enough.
    show_full_result_count = False
    actions = None
    fields = (
        "when",
        "actor_label",
        "actor_id",
        "ip",
        "action",
        "outcome",
        "event_code",
        "event_type_code",
        "organization_id",
        "target_type",
        "target_id",
        "study",
        "study_uid",
        "patient_id",
        "details_pretty",
        "prev_hash",
        "hash",
        "key_id",
    )
    readonly_fields = fields

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A compiled template, which Django's TemplateResponse takes as well as a name;
        # django-stubs declares the attribute a class-level name.
        self.change_list_template = engines["django"].from_string(  # type: ignore[misc]
            CHANGE_LIST_TEMPLATE
        )

    # --- Nobody writes -------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    # --- Who reads what ------------------------------------------------------------------

    def has_view_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return _sees_whole_trail(request) or bool(trail_organization_ids(user))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        queryset = super().get_queryset(request)
        if _sees_whole_trail(request):
            return queryset
        organization_ids = trail_organization_ids(request.user)
        return queryset & events_visible_to(user=request.user, organization_ids=organization_ids)

    # --- How events read ---------------------------------------------------------------

    @admin.display(description=_("time"), ordering="at")
    def when(self, obj: AuditEvent) -> str:
        # With its zone: an audit trail is read across sites, exported and compared with logs.
        return date_format(localtime(obj.at), "Y-m-d H:i:s T (O)")

    @admin.display(description=_("study"), ordering="study_uid")
    def study(self, obj: AuditEvent) -> str:
        if not obj.study_uid:
            return "—"
        label = getattr(obj, "study_label", None)
        if label is None:
            return obj.study_uid
        return format_html('{}<br><span class="quiet">{}</span>', label, obj.study_uid)

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        # The page's studies named in one go, for this reader, on the page's own objects.
        changelist = super().get_changelist_instance(request)
        labels = study_labels(request.user, {event.study_uid for event in changelist.result_list})
        for event in changelist.result_list:
            event.study_label = labels.get(event.study_uid)
        return changelist

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> AuditEvent | None:
        event = super().get_object(request, object_id, from_field)
        if event is not None:
            event.study_label = study_labels(request.user, [event.study_uid]).get(event.study_uid)
        return event

    @admin.display(description=_("details"))
    def details_pretty(self, obj: AuditEvent) -> str:
        return format_html(
            "<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True, ensure_ascii=False)
        )

    # --- Reading is audited --------------------------------------------------------------

    def _record_read(self, request: HttpRequest, **details: object) -> None:
        organization_ids = (
            [] if _sees_whole_trail(request) else trail_organization_ids(request.user)
        )
        record(
            action=Action.AUDIT_READ,
            request=request,
            # With exactly one administered organization the read belongs to it, so its other
            # administrators see who read their trail.
            organization_id=organization_ids[0] if len(organization_ids) == 1 else None,
            target_type="audit_trail",
            details={"via": "admin", **details},
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        with transaction.atomic():
            response = super().changelist_view(request, extra_context)
            # One event per page served (not per row); error pages and redirects read nothing.
            if (
                request.method == "GET"
                and response.status_code == 200
                and ERROR_FLAG not in request.GET
            ):
                self._record_read(request, view="list", filters=dict(request.GET.items()))
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        with transaction.atomic():
            response = super().change_view(request, object_id, form_url, extra_context)
            if request.method == "GET" and response.status_code == 200:
                self._record_read(request, view="event", event=str(object_id))
        return response

    # --- Verify chain --------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "verify/",
                self.admin_site.admin_view(self.verify_view),
                name="audit_auditevent_verify",
            ),
            *super().get_urls(),
        ]

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        result = verify_chain()
        if result.ok:
            with transaction.atomic():
                record(
                    action=Action.AUDIT_VERIFIED,
                    request=request,
                    target_type="audit_trail",
                    details={"count": result.count},
                )
            messages.success(
                request,
                gettext("Audit chain intact: %(count)s events verified.") % {"count": result.count},
            )
        else:
            messages.error(
                request,
                gettext(
                    "Audit chain broken: %(breaks)s problems found in %(count)s events. Events "
                    "may have been changed or deleted outside the portal; keep a copy of the "
                    "database and alert your security officer."
                )
                % {"breaks": result.break_count, "count": result.count},
            )
            for chain_break in result.breaks[:MAX_BREAK_MESSAGES]:
                messages.error(request, str(chain_break))
            hidden = result.break_count - min(len(result.breaks), MAX_BREAK_MESSAGES)
            if hidden:
                messages.warning(
                    request,
                    gettext(
                        "%(count)s more problems are not shown; run manage.py verify_audit "
                        "for the full list."
                    )
                    % {"count": hidden},
                )
        return redirect("admin:audit_auditevent_changelist")
