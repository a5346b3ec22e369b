"""Shares: studies granted to users, groups, locations, worklist share codes or email addresses.

A share never copies images: each recipient gets an Entry (origin "share") in a worklist, which
carries the share's terms so that ``studies.access`` answers from entries alone. The arrows run
one way: sharing refers to studies' Entry rows, studies knows nothing of shares.
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Group, Location, Organization, User
from studies.models import AccessLevel, Entry, LabelScope, Study, Worklist


class Share(models.Model):
    """One Share action: what the sender chose in the dialog (or the API body)."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        related_name="shares",
        help_text=_("The organization that owns the shared studies; its policy applies."),
        verbose_name=_("organization"),
    )
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="shares_sent",
        verbose_name=_("sender"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    studies = models.ManyToManyField(Study, related_name="+", verbose_name=_("studies"))
    level = models.CharField(_("access"), max_length=12, choices=AccessLevel.choices)
    # Registered and audited, never shown to the recipient.
    reason = models.TextField(_("reason for sharing"))
    patient_agreed = models.BooleanField(_("patient agreed"))
    valid_until = models.DateField(_("valid until"), null=True, blank=True)
    language = models.CharField(_("language"), max_length=5)
    label = models.CharField(_("label"), max_length=100, blank=True)
    # Who among the recipients sees the label; copied to each entry (also those made later,
    # when an email recipient registers).
    label_scope = models.CharField(
        _("label shown"), max_length=5, choices=LabelScope.choices, default=LabelScope.GROUP
    )
    urgent = models.BooleanField(_("urgent"), default=False)
    anonymize = models.BooleanField(_("anonymize"), default=False)
    allow_further_sharing = models.BooleanField(_("allow further sharing"), default=False)
    message = models.TextField(_("message"), blank=True)
    two_factor = models.BooleanField(_("SMS two-factor"), default=False)
    send_mail = models.BooleanField(_("send mail"), default=False)
    removed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("removed at"))
    removed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("removed by"),
    )

    class Meta:
        verbose_name = _("share")
        verbose_name_plural = _("shares")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(patient_agreed=True), name="share_agreed")
        ]

    def __str__(self) -> str:
        return f"Share {self.pk}"


class RecipientKind(models.TextChoices):
    USER = "user", _("User")
    GROUP = "group", _("Group")
    LOCATION = "location", _("Location")
    SHARE_CODE = "share_code", _("Worklist share code")
    EMAIL = "email", _("Email address")


class ShareRecipient(models.Model):
    """One recipient of a share, the worklist it resolved to, and the entries made there. An
    email recipient without an account stays pending (no worklist, no entries) until they
    register."""

    share = models.ForeignKey(
        Share, on_delete=models.CASCADE, related_name="recipients", verbose_name=_("share")
    )
    kind = models.CharField(max_length=10, choices=RecipientKind.choices, verbose_name=_("kind"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
    )
    group = models.ForeignKey(
        Group,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("group"),
    )
    location = models.ForeignKey(
        Location,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("location"),
    )
    worklist = models.ForeignKey(
        Worklist,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("worklist"),
    )
    email = models.EmailField(blank=True, verbose_name=_("email"))
    entries = models.ManyToManyField(Entry, blank=True, related_name="+", verbose_name=_("entries"))
    # An email recipient without an account: the invitation's token, stored as its digest
    # (portal.digests.secret_digest), and when registering with the address activated it.
    invitation_digest = models.CharField(
        max_length=64, blank=True, db_index=True, verbose_name=_("invitation digest")
    )
    activated_at = models.DateTimeField(null=True, blank=True, verbose_name=_("activated at"))
    # SMS two-factor ("bucket"): wrong codes in a row, codes sent, and the lock after the
    # organization's limit; only an administrator of the sending organization lifts it.
    code_failures = models.PositiveSmallIntegerField(default=0, verbose_name=_("code failures"))
    codes_sent = models.PositiveSmallIntegerField(default=0, verbose_name=_("codes sent"))
    blocked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("blocked at"))

    class Meta:
        verbose_name = _("share recipient")
        verbose_name_plural = _("share recipients")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.share}"

    @property
    def pending(self) -> bool:
        return self.worklist_id is None


class ShareSmsCode(models.Model):
    """A six-digit SMS code that opens a share asking for two-factor, for one recipient user;
    stored as a keyed digest, single use, valid ten minutes. A resend replaces the previous
    code (``replaced_at``) and never resets the recipient's failure count."""

    recipient = models.ForeignKey(ShareRecipient, on_delete=models.CASCADE, related_name="codes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    code_hash = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    replaced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("share SMS code")
        verbose_name_plural = _("share SMS codes")
        indexes = [
            models.Index(fields=["recipient", "user", "-created_at"], name="sharecode_recent")
        ]

    def __str__(self) -> str:
        return f"SMS code {self.pk} of share recipient {self.recipient_id}"


class FavoriteKind(models.TextChoices):
    USER = "user", _("User")
    GROUP = "group", _("Group")
    LOCATION = "location", _("Location")


class Favorite(models.Model):
    """A recipient the owner starred in the Share dialog (added once the share is done)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="share_favorites"
    )
    kind = models.CharField(max_length=10, choices=FavoriteKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    group = models.ForeignKey(
        Group, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    location = models.ForeignKey(
        Location, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("favorite")
        verbose_name_plural = _("favorites")
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(
                        kind="user",
                        user__isnull=False,
                        group__isnull=True,
                        location__isnull=True,
                    )
                    | models.Q(
                        kind="group",
                        user__isnull=True,
                        group__isnull=False,
                        location__isnull=True,
                    )
                    | models.Q(
                        kind="location",
                        user__isnull=True,
                        group__isnull=True,
                        location__isnull=False,
                    )
                ),
                name="favorite_one_target",
            ),
            models.UniqueConstraint(
                fields=["owner", "user"], condition=models.Q(kind="user"), name="favorite_user"
            ),
            models.UniqueConstraint(
                fields=["owner", "group"], condition=models.Q(kind="group"), name="favorite_group"
            ),
            models.UniqueConstraint(
                fields=["owner", "location"],
                condition=models.Q(kind="location"),
                name="favorite_location",
            ),
        ]

    def __str__(self) -> str:
        return f"Favorite {self.get_kind_display()} of {self.owner_id}"

    @property
    def target(self) -> User | Group | Location | None:
        return self.user or self.group or self.location

    @property
    def target_id(self) -> int:
        """The starred user's, group's or location's id (``favorite_one_target``: exactly one)."""
        target_id = self.user_id or self.group_id or self.location_id
        if target_id is None:
            raise ValueError(f"Favorite {self.pk} names no user, group or location.")
        return target_id


class SenderDefaults(models.Model):
    """The two-factor and send-mail choices of a user's last share with a user, offered again
    in their next Share dialog (PACSonWEB's tip)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="share_defaults",
    )
    two_factor = models.BooleanField(default=False)
    send_mail = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("sender defaults")
        verbose_name_plural = _("sender defaults")

    def __str__(self) -> str:
        return f"Share defaults of {self.user_id}"
