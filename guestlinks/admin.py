"""Guest links in the (two-factor protected) Django admin: the administrator's list of links and
their revocation.

Superusers see every link; staff whose role may revoke any link (REVOKE_ANY_LINK) see their
organizations' links. Nobody adds, changes or deletes a link here: options are read-only, and a
link is ended by revoking it with a reason (the action "Revoke selected links" or the Revoke
button of a link's page), through ``guestlinks.services.ending.revoke_link``, which audits it.
The token, its salt and digest, and the password hash are never shown.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accounts.http import AuthenticatedRequest
from accounts.memberships import organizations_with
from accounts.models import Organization, User
from accounts.permissions import Perm
from guestlinks.forms import RevokeForm
from guestlinks.models import GuestLink, LinkState
from guestlinks.presentation import options_summary
from guestlinks.selectors import LinkTarget, may_revoke_link
from guestlinks.services.ending import revoke_link
from guestlinks.services.state import link_status
from studies.admin import study_label
from studies.models import Study, Worklist


def _revocable_organizations(request: HttpRequest) -> list[int] | None:
    """The organizations whose links the admin user administers; None means all (superusers)."""
    # The admin site lets only active staff users in (AdminSite.has_permission).
    user = cast(User, request.user)
    if user.is_superuser:
        return None
    return organizations_with(user, Perm.REVOKE_ANY_LINK)


class OrganizationFilter(admin.SimpleListFilter):
    """Only the organizations the administrator administers."""

    title = _("organization")
    parameter_name = "organization"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[GuestLink]
    ) -> list[tuple[str, str]]:
        organizations = Organization.objects.order_by("name")
        scope = _revocable_organizations(request)
        if scope is not None:
            organizations = organizations.filter(pk__in=scope)
        return [(str(org.pk), org.name) for org in organizations]

    def queryset(self, request: HttpRequest, queryset: QuerySet[GuestLink]) -> QuerySet[GuestLink]:
        organization_id = self.value()
        if organization_id:
            return queryset.filter(organization_id=organization_id)
        return queryset


@admin.register(GuestLink)
class GuestLinkAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "organization",
        "target",
        "created_by",
        "created_at",
        "status",
        "uses_of_max",
        "opens",
        "expires_at",
    )
    list_display_links = ("id", "target")
    list_filter = ("state", "target_kind", OrganizationFilter, "created_at", "expires_at")
    list_select_related = ("organization", "created_by", "study", "worklist", "folder")
    search_fields = ("=id", "created_by__username", "email", "mobile")
    search_help_text = _("Link number, the sender's username, or the recipient's email or mobile.")
    date_hierarchy = "created_at"
    list_per_page = 100
    actions = ["revoke_selected"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "organization",
                    "target",
                    "created_by",
                    "created_at",
                    "status",
                    "uses_of_max",
                    "opens",
                    "expires_at",
                )
            },
        ),
        (
            _("Options"),
            {
                "fields": (
                    "email",
                    "mobile",
                    "language",
                    "message",
                    "login_required",
                    "password",
                    "max_password_attempts",
                    "require_email_confirmation",
                    "sms_code_required",
                    "include_priors",
                )
            },
        ),
        (
            _("Counters"),
            {
                "fields": (
                    "password_failures",
                    "code_failures",
                    "codes_sent",
                    "confirmed_at",
                )
            },
        ),
        (_("End"), {"fields": ("ended_at", "ended_by", "end_reason")}),
    )
    # Every field shown is read-only: options are the sender's, counters the gates'; links end
    # through revocation, never by editing.
    readonly_fields = flatten_fieldsets(fieldsets)
    change_form_template = "guestlinks/admin/change_form.html"

    # --- Columns -----------------------------------------------------------------------------

    @admin.display(description=_("target"))
    def target(self, obj: GuestLink) -> str:
        item = LinkTarget.of(obj).item
        if isinstance(item, Study):
            return study_label(item)
        if isinstance(item, Worklist):
            return f"{gettext('Worklist')} · {item.name}"
        return f"{gettext('Folder')} · {item.name}"

    @admin.display(description=_("state"))
    def status(self, obj: GuestLink) -> str:
        return link_status(obj).label

    @admin.display(description=_("uses / max"))
    def uses_of_max(self, obj: GuestLink) -> str:
        return f"{obj.uses} / {obj.max_uses if obj.max_uses is not None else '∞'}"

    @admin.display(description=_("password"))
    def password(self, obj: GuestLink) -> str:
        if obj.password_is_birth_date:
            return gettext("The patient's date of birth (YYYYMMDD)")
        if obj.password_hash:
            return gettext("Set by the sender (stored hashed only)")
        return gettext("None")

    # --- Who sees what; nobody writes ---------------------------------------------------------

    def has_view_permission(self, request: HttpRequest, obj: GuestLink | None = None) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        scope = _revocable_organizations(request)
        if scope is None:
            return True
        if obj is not None:
            return obj.organization_id in scope
        return bool(scope)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: GuestLink | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: GuestLink | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[GuestLink]:
        queryset = super().get_queryset(request)
        scope = _revocable_organizations(request)
        if scope is not None:
            queryset = queryset.filter(organization_id__in=scope)
        return queryset

    # --- Revoking ----------------------------------------------------------------------------

    def _revoke(self, request: AuthenticatedRequest, links: list[GuestLink], reason: str) -> int:
        revoked = 0
        with transaction.atomic():
            for link in links:
                if not may_revoke_link(request.user, link):
                    raise PermissionDenied
                if revoke_link(user=request.user, link=link, reason=reason, request=request):
                    revoked += 1
        return revoked

    def _report(self, request: HttpRequest, revoked: int, total: int) -> None:
        if revoked:
            self.message_user(
                request,
                ngettext(
                    "%(count)d guest link revoked. It stops opening at the recipient's next "
                    "request.",
                    "%(count)d guest links revoked. They stop opening at the recipients' next "
                    "request.",
                    revoked,
                )
                % {"count": revoked},
                messages.SUCCESS,
            )
        if total - revoked:
            self.message_user(
                request,
                ngettext(
                    "%(count)d link had already ended and was left as it was.",
                    "%(count)d links had already ended and were left as they were.",
                    total - revoked,
                )
                % {"count": total - revoked},
                messages.WARNING,
            )

    def _confirmation_page(
        self, request: HttpRequest, *, links: list[GuestLink], form: RevokeForm, action_form: bool
    ) -> TemplateResponse:
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Revoke guest links"),
            "subtitle": None,
            "opts": opts,
            "links": [
                {"link": link, "status": link_status(link), "summary": options_summary(link)}
                for link in links
            ],
            "form": form,
            "action_form": action_form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "guestlinks/admin/revoke.html", context)

    @admin.action(description=_("Revoke selected links"), permissions=["revoke"])
    def revoke_selected(
        self, request: AuthenticatedRequest, queryset: QuerySet[GuestLink]
    ) -> TemplateResponse | None:
        links = list(queryset.select_related("study", "worklist", "folder", "created_by"))
        form = RevokeForm(request.POST if "reason" in request.POST else None)
        if request.POST.get("post") == "yes" and form.is_valid():
            try:
                revoked = self._revoke(request, links, form.cleaned_data["reason"])
            except ValidationError as exc:
                form.add_error("reason", exc.message_dict.get("reason", exc.messages))
            else:
                self._report(request, revoked, len(links))
                return None
        return self._confirmation_page(request, links=links, form=form, action_form=True)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="guestlinks_guestlink_revoke",
            ),
            *super().get_urls(),
        ]

    def revoke_view(self, request: AuthenticatedRequest, object_id: str) -> HttpResponse:
        """The change page's Revoke button: ask for the reason, then revoke this link."""
        link = self.get_object(request, object_id)
        if link is None:
            raise Http404
        if not self.has_revoke_permission(request) or not self.has_view_permission(request, link):
            raise PermissionDenied
        change_url = reverse("admin:guestlinks_guestlink_change", args=[link.pk])
        if link.state != LinkState.ACTIVE:
            self.message_user(request, gettext("This link had already ended."), messages.WARNING)
            return HttpResponseRedirect(change_url)
        form = RevokeForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                revoked = self._revoke(request, [link], form.cleaned_data["reason"])
            except ValidationError as exc:
                form.add_error("reason", exc.message_dict.get("reason", exc.messages))
            else:
                self._report(request, revoked, 1)
                return redirect(change_url)
        return self._confirmation_page(request, links=[link], form=form, action_form=False)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        link = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_revoke": link is not None
            and link.state == LinkState.ACTIVE
            and self.has_revoke_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)
