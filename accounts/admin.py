"""The Django admin for accounts and organizations, and the admin site's own rules: it admits
only staff whose session was verified with a one-time code, and it logs in and out through the
portal's pages so that both are throttled and audited the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group as AuthGroup
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.text import format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django_otp.admin import OTPAdminSite
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.memberships import administered_organization_ids
from accounts.models import ApiToken, Group, Location, Membership, Organization, Role, User
from accounts.permissions import Perm
from accounts.policy import has_two_factor
from audit.models import Action
from audit.services import record
from portal.phones import normalize_mobile

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

# --- The admin site -------------------------------------------------------------------------


class PortalAdminSite(OTPAdminSite):
    """django-otp's admin site (staff must be verified by a device), whose login is the
    portal's: the password page, then the code page or the two-factor set-up."""

    @method_decorator(never_cache)
    def login(self, request, extra_context=None):
        index_path = reverse("admin:index", current_app=self.name)
        next_url = request.GET.get(REDIRECT_FIELD_NAME, "")
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            next_url = index_path
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(next_url, reverse("accounts:login"))
        if not (user.is_active and user.is_staff):
            raise PermissionDenied
        if user.is_verified():
            return HttpResponseRedirect(next_url)
        query = urlencode({REDIRECT_FIELD_NAME: next_url})
        if has_two_factor(user):
            return redirect(f"{reverse('accounts:two_factor_verify')}?{query}")
        messages.warning(
            request,
            gettext(
                "The administration manages accounts, sharing policies and the audit trail, so "
                "it requires two-factor authentication. Set up an authenticator app here; you "
                "will then be taken back to the administration."
            ),
        )
        return redirect(f"{reverse('accounts:two_factor')}?{query}")

    def password_change(self, request, extra_context=None):
        # One password page for everyone: the portal's checks the current password behind the
        # login throttle and writes the audit event.
        return redirect("accounts:password_change")

    def password_change_done(self, request, extra_context=None):
        return redirect("accounts:password_change_done")

    @method_decorator(csrf_protect)
    def logout(self, request, extra_context=None):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        services.log_out(request=request)
        messages.info(request, gettext("You are logged out."))
        return redirect(settings.LOGOUT_REDIRECT_URL)


# Changing the class of the existing instance (rather than replacing admin.site) keeps every
# registration made before or after this module, and the "admin" URL namespace.
admin.site.__class__ = PortalAdminSite
admin.site.site_header = format_lazy(_("{site} administration"), site=settings.SITE_NAME)
admin.site.site_title = settings.SITE_NAME
admin.site.index_title = _("Organizations, users and audit")

# The portal's groups are accounts.Group; Django's permission groups would only confuse.
if admin.site.is_registered(AuthGroup):
    admin.site.unregister(AuthGroup)


# --- Organizations' administrators -----------------------------------------------------------


def colleagues_of(administered: set[int]):
    """The users an administrator of these organizations sees: their members."""
    return User.objects.filter(memberships__organization__in=administered).distinct()


def _scope_choices(db_field, request, kwargs) -> None:
    """Offer (and accept) an organization's administrator only their organizations, their
    locations, groups and roles (and the roles every organization may use), and their members."""
    administered = administered_organization_ids(request.user)
    model = db_field.related_model
    if model is Organization:
        kwargs["queryset"] = Organization.objects.filter(pk__in=administered)
    elif model is Role:
        kwargs["queryset"] = Role.objects.filter(
            Q(organization__isnull=True) | Q(organization__in=administered)
        )
    elif model in (Location, Group):
        kwargs["queryset"] = model.objects.filter(organization__in=administered)
    elif model is User:
        kwargs["queryset"] = colleagues_of(administered)


class OrganizationScopedAdmin(admin.ModelAdmin):
    """Pages an organization's administrator uses for their own organizations: what the user's
    Django permissions do not cover (an installation's superusers and staff hold them) is
    allowed on objects of the organizations they administer, and nothing of another: the list,
    every object page, the choices of organization, locations, groups and roles, and a crafted
    POST (whose choices are checked against the same lists). Every change is audited."""

    # Whether an organization's administrator may delete the model's objects.
    administrator_deletes = True

    def organization_ids(self, obj) -> set[int]:
        """The organizations an object belongs to."""
        return {obj.organization_id} if obj.organization_id else set()

    def scope(self, queryset, administered: set[int]):
        return queryset.filter(organization__in=administered)

    def _django_perm(self, request: HttpRequest, action: str) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")

    def _scoped(self, request) -> bool:
        """Acting only as an organization's administrator (no Django permission on the model)."""
        return not self._django_perm(request, "view") and bool(
            administered_organization_ids(request.user)
        )

    def _administers(self, request, obj) -> bool:
        administered = administered_organization_ids(request.user)
        if obj is None:
            return bool(administered)
        owners = self.organization_ids(obj)
        return bool(owners) and owners <= administered

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if not self._scoped(request):
            return queryset
        return self.scope(queryset, administered_organization_ids(request.user)).distinct()

    def has_module_permission(self, request):
        return super().has_module_permission(request) or bool(
            administered_organization_ids(request.user)
        )

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or self._administers(request, obj)

    def has_add_permission(self, request):
        return super().has_add_permission(request) or self._administers(request, None)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) or self._administers(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) or (
            self.administrator_deletes and self._administers(request, obj)
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if self._scoped(request):
            _scope_choices(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if self._scoped(request):
            _scope_choices(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def _audit(self, request, obj, change: str, message) -> None:
        owners = sorted(self.organization_ids(obj))
        services.record_administration(
            request=request,
            obj=obj,
            change=change,
            organization_id=owners[0] if len(owners) == 1 else None,
            details={"message": message} if message else {},
        )

    def log_addition(self, request, obj, message):
        self._audit(request, obj, "added", message)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        self._audit(request, obj, "changed", message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            self._audit(request, obj, "deleted", None)
        return super().log_deletions(request, queryset)


# --- Users ----------------------------------------------------------------------------------


class TwoFactorAnnotation(TypedDict):
    """What the users' list annotates each user with (UserAdmin.get_queryset)."""

    has_two_factor: bool


# django-stubs declares the auth forms without their Meta, which Django's forms have.
class UserChangeForm(auth_forms.UserChangeForm):
    class Meta(auth_forms.UserChangeForm.Meta):  # type: ignore[name-defined]
        model = User

    def clean_mobile(self) -> str:
        # Stored in E.164 whatever way the administrator typed it; SMS delivery relies on it.
        return normalize_mobile(self.cleaned_data.get("mobile", ""))


class UserCreationForm(auth_forms.AdminUserCreationForm):
    class Meta(auth_forms.AdminUserCreationForm.Meta):  # type: ignore[name-defined]
        model = User
        fields = ("username", "first_name", "last_name", "email")


class MembershipForm(forms.ModelForm):
    """Locations, groups and role are offered from the membership's organization only, and
    checked against it whichever organization is picked."""

    class Meta:
        model = Membership
        fields = ["organization", "role", "locations", "groups", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        organization_id = self.instance.organization_id if self.instance.pk else None
        if organization_id is None:
            return
        # The model form's fields of these relations: model choice fields, each with its choices.
        for name in ("locations", "groups"):
            if name in self.fields:
                field = cast(forms.ModelChoiceField, self.fields[name])
                if field.queryset is not None:
                    field.queryset = field.queryset.filter(organization_id=organization_id)
        if "role" in self.fields:
            field = cast(forms.ModelChoiceField, self.fields["role"])
            if field.queryset is not None:
                field.queryset = field.queryset.filter(
                    Q(organization__isnull=True) | Q(organization_id=organization_id)
                )

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        organization = cleaned.get("organization")
        if organization is None:
            return cleaned
        for name in ("locations", "groups"):
            chosen = cleaned.get(name) or []
            foreign = [item for item in chosen if item.organization_id != organization.pk]
            if foreign:
                message = _("%(items)s belong to another organization than %(organization)s.")
                items = ", ".join(str(item) for item in foreign)
                self.add_error(name, message % {"items": items, "organization": organization})
        role = cleaned.get("role")
        if role is not None and role.organization_id not in (None, organization.pk):
            self.add_error("role", _("This role belongs to another organization."))
        return cleaned


class MembershipInline(admin.StackedInline):
    """A user's memberships. An organization's administrator sees and edits those of their own
    organizations (the user page itself decides whether they may change the user at all)."""

    model = Membership
    form = MembershipForm
    fk_name = "user"
    extra = 0
    filter_horizontal = ["locations", "groups"]
    verbose_name = _("membership")
    verbose_name_plural = _("memberships (organization, role, locations and groups)")

    def _scoped(self, request) -> bool:
        return not request.user.has_perm("accounts.view_membership") and bool(
            administered_organization_ids(request.user)
        )

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self._scoped(request):
            queryset = queryset.filter(organization__in=administered_organization_ids(request.user))
        return queryset

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or self._scoped(request)

    # An inline's takes the parent object (Django); django-stubs ignores the same difference
    # from BaseModelAdmin's in its InlineModelAdmin.
    def has_add_permission(  # type: ignore[override]
        self, request: HttpRequest, obj: User | None
    ) -> bool:
        return super().has_add_permission(request, obj) or self._scoped(request)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) or self._scoped(request)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) or self._scoped(request)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if self._scoped(request):
            _scope_choices(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if self._scoped(request):
            _scope_choices(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class ColleagueCreationForm(UserCreationForm):
    """Adding a colleague as an organization's administrator: the account and its first
    membership (organization and role) in one step, so that the new user is never outside the
    administrator's organizations."""

    organization = forms.ModelChoiceField(
        label=_("Organization"), queryset=Organization.objects.none()
    )
    role = forms.ModelChoiceField(label=_("Role"), queryset=Role.objects.none())

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        organization, role = cleaned.get("organization"), cleaned.get("role")
        if organization and role and role.organization_id not in (None, organization.pk):
            self.add_error("role", _("This role belongs to another organization."))
        return cleaned


@admin.register(User)
class UserAdmin(OrganizationScopedAdmin, DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    inlines = [MembershipInline]
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (
            _("Personal info"),
            {
                "fields": (
                    "first_name",
                    "last_name",
                    "email",
                    "mobile",
                    "physician_number",
                    "language",
                )
            },
        ),
        (
            _("Shown in other users' recipient search"),
            {
                "fields": ("email_public", "mobile_public"),
                "description": _("Name and physician number are always shown."),
            },
        ),
        (
            _("Administration rights"),
            {
                "fields": ("is_active", "is_staff", "is_superuser", "user_permissions"),
                "description": _(
                    "Staff may open this administration (with two-factor authentication). "
                    "What a user may do in the portal comes from the role of each membership."
                ),
            },
        ),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "username",
                    "first_name",
                    "last_name",
                    "email",
                    "usable_password",
                    "password1",
                    "password2",
                ),
            },
        ),
    )
    list_display = (
        "username",
        "first_name",
        "last_name",
        "email",
        "physician_number",
        "is_staff",
        "is_active",
        "two_factor",
    )
    list_filter = ("is_staff", "is_superuser", "is_active", "memberships__organization")
    search_fields = ("username", "first_name", "last_name", "email", "physician_number")
    filter_horizontal = ("user_permissions",)

    # An account is deactivated (Active unticked), not deleted: its audit trail names it.
    administrator_deletes = False

    def get_queryset(self, request):
        devices = TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
        return super().get_queryset(request).annotate(has_two_factor=Exists(devices))

    def organization_ids(self, obj) -> set[int]:
        return set(obj.memberships.values_list("organization_id", flat=True))

    def scope(self, queryset, administered: set[int]):
        return queryset.filter(memberships__organization__in=administered)

    def has_view_permission(self, request, obj=None):
        if obj is None or DjangoUserAdmin.has_view_permission(self, request, obj):
            return super().has_view_permission(request, obj)
        # Colleagues who also belong elsewhere are seen, though not changed.
        return bool(self.organization_ids(obj) & administered_organization_ids(request.user))

    def has_change_permission(self, request, obj=None):
        if obj is None or DjangoUserAdmin.has_change_permission(self, request, obj):
            return super().has_change_permission(request, obj)
        return services.may_change_colleague(obj, administered_organization_ids(request.user))

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not self._scoped(request):
            return fieldsets
        if obj is None:
            membership = (_("Membership"), {"fields": ("organization", "role")})
            return [*fieldsets, membership]
        # Superuser status and Django permissions are the installation's, not an organization's.
        return [
            (
                name,
                {
                    **options,
                    "fields": tuple(
                        f
                        for f in options["fields"]
                        if f not in ("is_superuser", "user_permissions")
                    ),
                },
            )
            for name, options in fieldsets
        ]

    def get_inlines(self, request, obj):
        if obj is None and self._scoped(request):
            return []  # the add form names the first membership itself
        return super().get_inlines(request, obj)

    def get_form(
        self, request: HttpRequest, obj: User | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[User]]:
        if obj is None and self._scoped(request):
            administered = administered_organization_ids(request.user)
            kwargs["form"] = ColleagueCreationForm
            form = super().get_form(request, obj, change=change, **kwargs)
            # ColleagueCreationForm's own model choice fields.
            organization = cast(forms.ModelChoiceField, form.base_fields["organization"])
            organization.queryset = Organization.objects.filter(pk__in=administered)
            role = cast(forms.ModelChoiceField, form.base_fields["role"])
            role.queryset = Role.objects.filter(
                Q(organization__isnull=True) | Q(organization__in=administered)
            )
            return form
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if not change and isinstance(form, ColleagueCreationForm):
                Membership.objects.create(
                    user=obj,
                    organization=form.cleaned_data["organization"],
                    role=form.cleaned_data["role"],
                )

    def user_change_password(self, request, id, form_url=""):
        # An administrator setting someone's password is a security event like any other, and
        # ends the user's API tokens as the user's own change does.
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and response.status_code == 302:
                record(
                    action=Action.PASSWORD_CHANGED,
                    request=request,
                    target_type="user",
                    target_id=id,
                    details={"set_by_administrator": True},
                )
                user = User._default_manager.filter(pk=id).first()
                if user is not None:
                    services.end_api_tokens(
                        request=request, user=user, reason="password set by an administrator"
                    )
        return response

    @admin.display(boolean=True, description=_("two-factor"), ordering="has_two_factor")
    def two_factor(self, user: WithAnnotations[User, TwoFactorAnnotation]) -> bool:
        return user.has_two_factor


# --- Organizations and their parts ----------------------------------------------------------


def _administers(request, organization) -> bool:
    ids = administered_organization_ids(request.user)
    return bool(ids) if organization is None else organization.pk in ids


class OrganizationPartInline(admin.TabularInline):
    """Locations and groups: an organization's administrator adds and renames them; deleting
    one (which removes its worklist) stays with the installation's superusers."""

    extra = 0

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or _administers(request, obj)

    def has_add_permission(self, request, obj=None):
        return super().has_add_permission(request, obj) or (
            obj is not None and _administers(request, obj)
        )

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) or (
            obj is not None and _administers(request, obj)
        )


class LocationInline(OrganizationPartInline):
    model = Location


class GroupInline(OrganizationPartInline):
    model = Group


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    """Superusers manage every organization; an organization's administrator (a staff member
    whose role there grants "Organization: administer") sets its own sharing policy."""

    list_display = ("name", "kind", "searchable")
    list_filter = ("kind", "searchable")
    search_fields = ("name",)
    inlines = [LocationInline, GroupInline]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.has_perm("accounts.view_organization"):
            return queryset
        return queryset.filter(pk__in=administered_organization_ids(request.user))

    def get_readonly_fields(self, request, obj=None):
        if request.user.has_perm("accounts.change_organization"):
            return ()
        # Name and kind identify the organization to everyone else: not its own to change.
        return ("name", "kind")

    def has_module_permission(self, request):
        return super().has_module_permission(request) or _administers(request, None)

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or _administers(request, obj)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) or _administers(request, obj)

    def save_model(self, request, obj, form, change):
        services.save_organization(
            request=request, organization=obj, changed_fields=form.changed_data if change else []
        )

    fieldsets = (
        (None, {"fields": ("name", "kind", "searchable")}),
        (
            _("Sign-in"),
            {
                "description": _(
                    "Users who must set up an authenticator app use the portal, the API and "
                    "DICOMweb only with its codes; API tokens they took with a password alone "
                    "stop working."
                ),
                "fields": ("require_two_factor",),
            },
        ),
        (
            _("Share options"),
            {
                "description": _("What users of this organization may offer when they share."),
                "fields": (
                    "allow_share_users",
                    "allow_share_groups",
                    "allow_share_locations",
                    "allow_share_codes",
                    "allow_share_email",
                    "allow_share_two_factor",
                    "allow_share_anonymize",
                    "allow_further_sharing",
                ),
            },
        ),
        (
            _("Link options"),
            {
                "description": _("What users of this organization may set on a guest link."),
                "fields": (
                    "allow_link_email",
                    "allow_link_sms",
                    "allow_link_max_uses",
                    "allow_link_expiry",
                    "allow_link_login_required",
                    "allow_link_password",
                    "allow_link_birth_date_password",
                    "allow_link_email_confirmation",
                    "allow_link_priors",
                ),
            },
        ),
        (
            _("Validity"),
            {
                "description": _("How long shares and guest links last by default, at most."),
                "fields": (
                    "default_share_validity_days",
                    "max_share_validity_days",
                    "allow_unlimited_validity",
                    "default_link_validity_hours",
                    "max_link_validity_days",
                ),
            },
        ),
    )


@admin.register(Location)
class LocationAdmin(OrganizationScopedAdmin):
    # Deleting one removes its worklist: that stays with the installation's superusers.
    administrator_deletes = False
    list_display = ("name", "organization")
    list_filter = ("organization",)
    search_fields = ("name", "organization__name")
    list_select_related = ("organization",)


@admin.register(Group)
class GroupAdmin(OrganizationScopedAdmin):
    administrator_deletes = False
    list_display = ("name", "organization", "searchable")
    list_filter = ("organization", "searchable")
    search_fields = ("name", "organization__name")
    list_select_related = ("organization",)


class RoleForm(forms.ModelForm):
    """The role editor: one checkbox per permission, labelled as in the manuals; stores the
    list of permission codes."""

    permissions = forms.MultipleChoiceField(
        label=_("Permissions"),
        choices=Perm.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    class Meta:
        model = Role
        fields = ["name", "organization", "permissions"]

    def clean_permissions(self) -> list[str]:
        chosen = set(self.cleaned_data["permissions"])
        # Kept in the order of Perm, so equal roles store equal lists.
        return [perm.value for perm in Perm if perm.value in chosen]


@admin.register(Role)
class RoleAdmin(OrganizationScopedAdmin):
    """An organization's administrator makes and edits their organization's roles and sees the
    roles every organization may use (the installation's, which only superusers change)."""

    form = RoleForm
    list_display = ("name", "organization", "permission_count")
    list_filter = ("organization",)
    search_fields = ("name",)

    def scope(self, queryset, administered: set[int]):
        return queryset.filter(Q(organization__in=administered) | Q(organization__isnull=True))

    def has_view_permission(self, request, obj=None):
        shared = obj is not None and obj.organization_id is None
        return super().has_view_permission(request, obj) or (
            shared and bool(administered_organization_ids(request.user))
        )

    def get_form(
        self, request: HttpRequest, obj: Role | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[Role]]:
        form = super().get_form(request, obj, change=change, **kwargs)
        if self._scoped(request) and "organization" in form.base_fields:
            # An organization's role, never one every organization would use.
            form.base_fields["organization"].required = True
        return form

    @admin.display(description=_("permissions"))
    def permission_count(self, role: Role) -> int:
        return len(role.permissions or [])


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdmin):
    form = MembershipForm
    fields = ("user", "organization", "role", "locations", "groups", "is_active")
    list_display = ("user", "organization", "role", "is_active")
    list_filter = ("organization", "role", "is_active")
    search_fields = ("user__username", "user__first_name", "user__last_name", "organization__name")
    list_select_related = ("user", "organization", "role")
    autocomplete_fields = ("user",)
    filter_horizontal = ("locations", "groups")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens can be looked at and deleted (which stops them at once), never created or
    edited here: the secret exists only in the hands of whoever requested it."""

    list_display = (
        "prefix_display",
        "user",
        "created_at",
        "last_used_at",
        "expires_at",
        "two_factor_verified",
    )
    list_filter = ("created_at", "last_used_at", "expires_at", "two_factor_verified")
    search_fields = ("user__username", "prefix")
    list_select_related = ("user",)
    fields = (
        "user",
        "prefix_display",
        "created_at",
        "last_used_at",
        "expires_at",
        "two_factor_verified",
    )
    readonly_fields = fields

    @admin.display(description=_("token"), ordering="prefix")
    def prefix_display(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        services.revoke_api_tokens(request=request, tokens=[obj])

    def delete_queryset(self, request, queryset):
        services.revoke_api_tokens(request=request, tokens=queryset.select_related("user"))


# --- Two-factor devices -------------------------------------------------------------------------

# django-otp registers its device admin first (it comes before accounts in INSTALLED_APPS).
if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)

# What makes a device another device: a token taken before must not outlive the change.
_DEVICE_IDENTITY_FIELDS = frozenset({"user", "key", "confirmed", "step", "t0", "digits"})


@admin.register(TOTPDevice)
class PortalTOTPDeviceAdmin(TOTPDeviceAdmin):
    """django-otp's device admin (superusers), where adding, changing or deleting a device ends
    its user's API tokens, as on the user's own two-factor page."""

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            previous = TOTPDevice.objects.filter(pk=obj.pk).select_related("user").first()
            super().save_model(request, obj, form, change)
            if change and not _DEVICE_IDENTITY_FIELDS.intersection(form.changed_data):
                return
            owners = {obj.user, previous.user if previous is not None else obj.user}
            for owner in owners:
                services.end_api_tokens(
                    request=request, user=owner, reason="two-factor device changed"
                )

    def delete_model(self, request, obj):
        with transaction.atomic():
            super().delete_model(request, obj)
            services.end_api_tokens(
                request=request, user=obj.user, reason="two-factor device removed"
            )

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            owners = {device.user for device in queryset.select_related("user")}
            super().delete_queryset(request, queryset)
            for owner in owners:
                services.end_api_tokens(
                    request=request, user=owner, reason="two-factor device removed"
                )
