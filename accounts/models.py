import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.permissions import Perm
from portal.phones import validate_e164


class Language(models.TextChoices):
    ENGLISH = "en", "English"
    FRENCH = "fr", "Français"
    DUTCH = "nl", "Nederlands"
    GERMAN = "de", "Deutsch"


class User(AbstractUser):
    """A person who logs in. Mobile and email are shown to other users' recipient searches only
    where the user made them public."""

    email = models.EmailField(_("email address"), blank=True)
    mobile = models.CharField(
        _("mobile phone"),
        max_length=20,
        blank=True,
        validators=[validate_e164],
        help_text=_("International E.164 form, e.g. +32470123456."),
    )
    physician_number = models.CharField(
        _("physician number"),
        max_length=40,
        blank=True,
        help_text=_("RIZIV, BIG, INSEE, HIN, UCGN, PNB..."),
    )
    language = models.CharField(
        _("language"), max_length=5, choices=Language.choices, default=Language.ENGLISH
    )
    mobile_public = models.BooleanField(_("mobile number is public"), default=False)
    email_public = models.BooleanField(_("email address is public"), default=False)

    # Not stored: set on an instance at run time, and declared so that the code reading them is
    # checked. authenticate() names the backend that accepted the user; django-otp's
    # OTPMiddleware gives the request's user is_verified(), true once the session passed a device.
    backend: str
    is_verified: Callable[[], bool]

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.UniqueConstraint(
                Lower("email"), condition=~models.Q(email=""), name="user_email_unique_ci"
            )
        ]
        indexes = [models.Index(fields=["physician_number"])]

    @property
    def display_name(self) -> str:
        """The name the portal shows others for this user: the full name, else the username."""
        return self.get_full_name() or self.get_username()

    def __str__(self) -> str:
        return self.display_name


class OrganizationKind(models.TextChoices):
    HOSPITAL = "hospital", _("Hospital")
    CLINIC = "clinic", _("Clinic")
    RADIOLOGY = "radiology", _("Radiology department")


class Organization(models.Model):
    """A hospital, clinic or radiology department, and its sharing policy: the options its users
    are offered when they share a study or send a link, and the bounds on validity."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    kind = models.CharField(
        _("kind"),
        max_length=20,
        choices=OrganizationKind.choices,
        default=OrganizationKind.HOSPITAL,
    )
    searchable = models.BooleanField(
        _("searchable by other organizations"),
        default=True,
        help_text=_("Its users, groups and locations can be found as share recipients."),
    )
    # Sign-in
    require_two_factor = models.BooleanField(
        _("require two-factor authentication"),
        default=False,
        help_text=_(
            "Every user of this organization must set up an authenticator app before using the "
            "portal, the API or DICOMweb. Administrators always must."
        ),
    )
    # Share options
    allow_share_users = models.BooleanField(_("share with users"), default=True)
    allow_share_groups = models.BooleanField(_("share with groups"), default=True)
    allow_share_locations = models.BooleanField(_("share with locations"), default=True)
    allow_share_codes = models.BooleanField(_("share to a worklist share code"), default=True)
    allow_share_email = models.BooleanField(_("share via email"), default=True)
    allow_share_two_factor = models.BooleanField(_("SMS two-factor on shares"), default=True)
    allow_share_anonymize = models.BooleanField(_("anonymized shares"), default=True)
    allow_further_sharing = models.BooleanField(
        _("allow recipients to share further"), default=True
    )
    default_share_validity_days = models.PositiveIntegerField(
        _("default share validity (days)"), default=30
    )
    max_share_validity_days = models.PositiveIntegerField(
        _("maximum share validity (days)"),
        null=True,
        blank=True,
        help_text=_("Empty: no maximum."),
    )
    allow_unlimited_validity = models.BooleanField(_("allow unlimited access"), default=True)
    # Guest link options
    allow_link_email = models.BooleanField(_("links: send via email"), default=True)
    allow_link_sms = models.BooleanField(_("links: send via SMS"), default=True)
    allow_link_max_uses = models.BooleanField(_("links: limit number of uses"), default=True)
    allow_link_expiry = models.BooleanField(_("links: expiry in days and hours"), default=True)
    allow_link_login_required = models.BooleanField(_("links: user must log in"), default=True)
    allow_link_password = models.BooleanField(_("links: password"), default=True)
    allow_link_birth_date_password = models.BooleanField(
        _("links: password is the patient's date of birth"), default=True
    )
    allow_link_email_confirmation = models.BooleanField(
        _("links: require confirmation via email"),
        default=True,
        help_text=_("Available only where the organization's mail server delivers reliably."),
    )
    allow_link_priors = models.BooleanField(_("links: include priors"), default=True)
    default_link_validity_hours = models.PositiveIntegerField(
        _("default link validity (hours)"), default=7 * 24
    )
    max_link_validity_days = models.PositiveIntegerField(
        _("maximum link validity (days)"), default=90
    )

    class Meta:
        verbose_name = _("organization")
        verbose_name_plural = _("organizations")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Location(models.Model):
    """A place where studies arrive (a site, a modality room, a department)."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="locations",
        verbose_name=_("organization"),
    )
    name = models.CharField(_("name"), max_length=200)

    class Meta:
        verbose_name = _("location")
        verbose_name_plural = _("locations")
        ordering = ["organization__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="location_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.organization.name})"


class Group(models.Model):
    """A team of users (e.g. "Neuroradiology") with a worklist of its own."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="groups",
        verbose_name=_("organization"),
    )
    name = models.CharField(_("name"), max_length=200)
    searchable = models.BooleanField(_("searchable as share recipient"), default=True)

    class Meta:
        verbose_name = _("group")
        verbose_name_plural = _("groups")
        ordering = ["organization__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="group_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.organization.name})"


class Role(models.Model):
    """A named bundle of permissions, edited in the admin's role editor."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="roles",
        null=True,
        blank=True,
        help_text=_("Empty: a role every organization may use."),
        verbose_name=_("organization"),
    )
    name = models.CharField(_("name"), max_length=100)
    permissions = models.JSONField(_("permissions"), default=list, blank=True)

    class Meta:
        verbose_name = _("role")
        verbose_name_plural = _("roles")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="role_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    def grants(self, perm: Perm) -> bool:
        return perm in self.permissions


class Membership(models.Model):
    """A user's place in an organization: one role, and the locations and groups whose worklists
    the user works from."""

    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("user")
    )
    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("organization"),
    )
    role = models.ForeignKey(
        Role, on_delete=models.PROTECT, related_name="memberships", verbose_name=_("role")
    )
    locations = models.ManyToManyField(
        Location, blank=True, related_name="memberships", verbose_name=_("locations")
    )
    groups = models.ManyToManyField(
        Group, blank=True, related_name="memberships", verbose_name=_("groups")
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} as {self.role}"


def api_token_expiry() -> datetime:
    """When a token issued now ends at the latest (``API_TOKEN_LIFETIME_DAYS``)."""
    return timezone.now() + timedelta(days=settings.API_TOKEN_LIFETIME_DAYS)


class ApiToken(models.Model):
    """A REST API and DICOMweb token. Only its HMAC digest is stored: a database dump opens no
    API. It ends at ``expires_at``, after ``API_TOKEN_IDLE_DAYS`` without use, and (deleted)
    when its user changes password or two-factor device."""

    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("user")
    )
    digest = models.CharField(max_length=64, unique=True, verbose_name=_("digest"))
    prefix = models.CharField(
        max_length=8,
        help_text=_("First characters, to tell tokens apart."),
        verbose_name=_("prefix"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    last_used_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last used at"))
    expires_at = models.DateTimeField(_("expires"), default=api_token_expiry)
    two_factor_verified = models.BooleanField(
        _("issued with two-factor"),
        default=False,
        help_text=_("The request for it gave a valid one-time code."),
    )

    class Meta:
        verbose_name = _("api token")
        verbose_name_plural = _("api tokens")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def new_secret() -> str:
        return secrets.token_urlsafe(32)

    @property
    def idle_until(self) -> datetime:
        """When it ends if nobody uses it (``last_used_at`` is written at most every 5
        minutes, far below the days this counts in)."""
        last = self.last_used_at or self.created_at or timezone.now()
        return last + timedelta(days=settings.API_TOKEN_IDLE_DAYS)

    @property
    def ends_at(self) -> datetime:
        return min(self.expires_at, self.idle_until)

    def is_live(self, now: datetime | None = None) -> bool:
        return (now or timezone.now()) < self.ends_at


class LoginAddress(models.Model):
    """A client address from which a user signed in successfully (password, and code where the
    account has a device). Failed logins from elsewhere that push the account over its ceiling
    do not slow down logins from these addresses (``accounts.services``). Entries older than
    ``LOGIN_KNOWN_ADDRESS_DAYS`` are not trusted and are pruned at the user's next login."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="login_addresses")
    ip = models.GenericIPAddressField(_("address"))
    last_login_at = models.DateTimeField(_("last successful login"))

    class Meta:
        verbose_name = _("login address")
        verbose_name_plural = _("login addresses")
        constraints = [models.UniqueConstraint(fields=["user", "ip"], name="login_address_unique")]

    def __str__(self) -> str:
        return f"{self.ip} ({self.user})"
