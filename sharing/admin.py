"""Shares in the (two-factor protected) Django admin: the administrator's list of shares, their
removal, and the unblock of recipients blocked after too many wrong SMS codes.

Superusers (the service desk) see every share; staff who administer an organization
(Perm.ADMINISTER) see the shares it sent. Nobody adds a share or changes its terms here: every
field is read-only. A share ends through "Remove the selected shares"
(``sharing.services.shares.remove_share``); a blocked recipient is unblocked by the action
"Unblock the selected recipients" or the Unblock button of its page
(``sharing.services.two_factor.unblock``). Both services check the permission again and audit.
Lists name senders, recipients and study descriptions, never patients.
"""

from __future__ import annotations

from typing import cast

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accounts.http import AuthenticatedRequest
from accounts.models import Organization, User
from sharing.models import Share, ShareRecipient
from sharing.selectors import may_remove_share, recipient_name
from sharing.services.shares import remove_share
from sharing.services.two_factor import may_unblock, unblock, unblocking_organizations
from studies.admin import study_label


def _scope(request: HttpRequest) -> list[int] | None:
    """The organizations whose shares the admin user sees; None means all (superusers)."""
    # The admin site lets only active staff users in (AdminSite.has_permission).
    return unblocking_organizations(cast(User, request.user))


class _ScopedReadOnly(admin.ModelAdmin):
    """Staff see the shares of the organizations they administer; nobody writes."""

    organization_path = "organization_id"

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        scope = _scope(request)
        if scope is None:
            return True
        if obj is not None:
            return self._organization_of(obj) in scope
        return bool(scope)

    def _organization_of(self, obj) -> int:
        raise NotImplementedError

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest):
        queryset = super().get_queryset(request)
        scope = _scope(request)
        if scope is not None:
            queryset = queryset.filter(**{f"{self.organization_path}__in": scope})
        return queryset


class OrganizationFilter(admin.SimpleListFilter):
    """Only the organizations the administrator administers."""

    title = _("organization")
    parameter_name = "organization"
    organization_path = "organization_id"

    def lookups(self, request, model_admin):
        organizations = Organization.objects.order_by("name")
        scope = _scope(request)
        if scope is not None:
            organizations = organizations.filter(pk__in=scope)
        return [(str(org.pk), org.name) for org in organizations]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.organization_path: self.value()})
        return queryset


class RecipientOrganizationFilter(OrganizationFilter):
    organization_path = "share__organization_id"


class RemovedFilter(admin.SimpleListFilter):
    title = _("removed")
    parameter_name = "removed"

    def lookups(self, request, model_admin):
        return [("no", gettext("Active")), ("yes", gettext("Removed"))]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(removed_at__isnull=self.value() == "no")
        return queryset


class BlockedFilter(admin.SimpleListFilter):
    title = _("blocked")
    parameter_name = "blocked"

    def lookups(self, request, model_admin):
        return [("yes", gettext("Blocked")), ("no", gettext("Not blocked"))]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(blocked_at__isnull=self.value() == "no")
        return queryset


def recipient_label(recipient: ShareRecipient) -> str:
    return f"{recipient.get_kind_display()} · {recipient_name(recipient)}"


class ShareRecipientInline(admin.TabularInline):
    model = ShareRecipient
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("recipient", "blocked_at", "code_failures", "codes_sent", "activated_at")
    readonly_fields = fields

    @admin.display(description=_("recipient"))
    def recipient(self, obj: ShareRecipient) -> str:
        return recipient_label(obj)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        # The share's own view permission (the organization's scope) decides.
        return True


@admin.register(Share)
class ShareAdmin(_ScopedReadOnly):
    list_display = (
        "id",
        "sender",
        "organization",
        "created_at",
        "valid_until",
        "level",
        "two_factor",
        "blocked_recipients",
        "removed_at",
    )
    list_filter = (
        RemovedFilter,
        OrganizationFilter,
        "level",
        "two_factor",
        "anonymize",
        "created_at",
    )
    list_select_related = ("sender", "organization")
    search_fields = ("=id", "sender__username", "sender__last_name", "sender__email")
    search_help_text = _("Share number, or the sender's username, last name or email.")
    date_hierarchy = "created_at"
    list_per_page = 100
    actions = ["remove_selected"]
    inlines = [ShareRecipientInline]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "organization",
                    "sender",
                    "created_at",
                    "study_list",
                    "level",
                    "valid_until",
                    "reason",
                    "patient_agreed",
                )
            },
        ),
        (
            _("Options"),
            {
                "fields": (
                    "language",
                    "label",
                    "label_scope",
                    "urgent",
                    "anonymize",
                    "allow_further_sharing",
                    "two_factor",
                    "send_mail",
                    "message",
                )
            },
        ),
        (_("End"), {"fields": ("removed_at", "removed_by")}),
    )
    # The sender's terms: read-only. A share ends by removal, never by editing.
    readonly_fields = flatten_fieldsets(fieldsets)

    def _organization_of(self, obj: Share) -> int:
        return obj.organization_id

    @admin.display(description=_("studies"))
    def study_list(self, obj: Share) -> str:
        return "; ".join(study_label(study) for study in obj.studies.order_by("pk"))

    @admin.display(description=_("blocked recipients"))
    def blocked_recipients(self, obj: Share) -> int:
        return obj.recipients.filter(blocked_at__isnull=False).count()

    def has_remove_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    @admin.action(description=_("Remove the selected shares"), permissions=["remove"])
    def remove_selected(self, request: AuthenticatedRequest, queryset) -> None:
        shares = list(queryset)
        removed = 0
        with transaction.atomic():
            for share in shares:
                if not may_remove_share(request.user, share):
                    raise PermissionDenied
                if remove_share(user=request.user, share=share, request=request):
                    removed += 1
        if removed:
            self.message_user(
                request,
                ngettext(
                    "%(count)d share removed: its recipients lost access at once.",
                    "%(count)d shares removed: their recipients lost access at once.",
                    removed,
                )
                % {"count": removed},
                messages.SUCCESS,
            )
        if len(shares) - removed:
            self.message_user(
                request,
                ngettext(
                    "%(count)d share had already been removed.",
                    "%(count)d shares had already been removed.",
                    len(shares) - removed,
                )
                % {"count": len(shares) - removed},
                messages.WARNING,
            )


@admin.register(ShareRecipient)
class ShareRecipientAdmin(_ScopedReadOnly):
    organization_path = "share__organization_id"
    list_display = (
        "id",
        "share_link",
        "recipient",
        "blocked_at",
        "code_failures",
        "codes_sent",
    )
    list_filter = (BlockedFilter, RecipientOrganizationFilter, "kind")
    list_select_related = ("share", "user", "group", "location", "worklist")
    search_fields = ("=share__id", "share__sender__username", "user__username", "email")
    search_help_text = _("Share number, the sender's or the recipient's username, or the email.")
    list_per_page = 100
    actions = ["unblock_selected"]
    fields = (
        "share_link",
        "recipient",
        "blocked_at",
        "code_failures",
        "codes_sent",
        "activated_at",
    )
    readonly_fields = fields
    change_form_template = "sharing/admin/sharerecipient_change_form.html"

    def _organization_of(self, obj: ShareRecipient) -> int:
        return obj.share.organization_id

    @admin.display(description=_("share"))
    def share_link(self, obj: ShareRecipient) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:sharing_share_change", args=[obj.share_id]),
            str(obj.share),
        )

    @admin.display(description=_("recipient"))
    def recipient(self, obj: ShareRecipient) -> str:
        return recipient_label(obj)

    def has_unblock_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def _unblock(self, request: AuthenticatedRequest, recipients: list[ShareRecipient]) -> None:
        unblocked = 0
        with transaction.atomic():
            for recipient in recipients:
                if not may_unblock(request.user, recipient):
                    raise PermissionDenied
                if unblock(user=request.user, recipient=recipient, request=request):
                    unblocked += 1
        if unblocked:
            self.message_user(
                request,
                ngettext(
                    "%(count)d share recipient unblocked: they can ask for a new code.",
                    "%(count)d share recipients unblocked: they can ask for a new code.",
                    unblocked,
                )
                % {"count": unblocked},
                messages.SUCCESS,
            )
        if len(recipients) - unblocked:
            self.message_user(
                request,
                ngettext(
                    "%(count)d recipient was not blocked and was left as it was.",
                    "%(count)d recipients were not blocked and were left as they were.",
                    len(recipients) - unblocked,
                )
                % {"count": len(recipients) - unblocked},
                messages.WARNING,
            )

    @admin.action(description=_("Unblock the selected recipients"), permissions=["unblock"])
    def unblock_selected(self, request: AuthenticatedRequest, queryset) -> None:
        self._unblock(request, list(queryset.select_related("share")))

    def get_urls(self):
        return [
            path(
                "<path:object_id>/unblock/",
                self.admin_site.admin_view(self.unblock_view),
                name="sharing_sharerecipient_unblock",
            ),
            *super().get_urls(),
        ]

    def unblock_view(self, request: AuthenticatedRequest, object_id: str):
        """The change page's Unblock button (a POST form)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        recipient = self.get_object(request, object_id)
        if recipient is None:
            raise Http404
        if not self.has_unblock_permission(request) or not self.has_view_permission(
            request, recipient
        ):
            raise PermissionDenied
        self._unblock(request, [recipient])
        return HttpResponseRedirect(
            reverse("admin:sharing_sharerecipient_change", args=[recipient.pk])
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        recipient = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_unblock": recipient is not None
            and recipient.blocked_at is not None
            and self.has_unblock_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)
