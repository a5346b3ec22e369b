"""Shares: studies granted to users, groups, locations, worklist share codes or email addresses.

A share never copies images: each recipient gets an Entry (origin "share") in a worklist, which
carries the share's terms so that ``studies.access`` answers from entries alone. The arrows run
one way: sharing refers to studies' Entry rows, studies knows nothing of shares.
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Group, Location, Organization
from studies.models import AccessLevel, Entry, Study, Worklist


class Share(models.Model):
    """One Share action: what the sender chose in the dialog (or the API body)."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        related_name="shares",
        help_text=_("The organization that owns the shared studies; its policy applies."),
    )
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="shares_sent"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    studies = models.ManyToManyField(Study, related_name="+")
    level = models.CharField(_("access"), max_length=12, choices=AccessLevel.choices)
    # Registered and audited, never shown to the recipient.
    reason = models.TextField(_("reason for sharing"))
    patient_agreed = models.BooleanField(_("patient agreed"))
    valid_until = models.DateField(_("valid until"), null=True, blank=True)
    language = models.CharField(_("language"), max_length=5)
    label = models.CharField(_("label"), max_length=100, blank=True)
    urgent = models.BooleanField(_("urgent"), default=False)
    anonymize = models.BooleanField(_("anonymize"), default=False)
    allow_further_sharing = models.BooleanField(_("allow further sharing"), default=False)
    message = models.TextField(_("message"), blank=True)
    two_factor = models.BooleanField(_("SMS two-factor"), default=False)
    send_mail = models.BooleanField(_("send mail"), default=False)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
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

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="recipients")
    kind = models.CharField(max_length=10, choices=RecipientKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    group = models.ForeignKey(
        Group, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    location = models.ForeignKey(
        Location, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    worklist = models.ForeignKey(
        Worklist, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    email = models.EmailField(blank=True)
    entries = models.ManyToManyField(Entry, blank=True, related_name="+")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.share}"

    @property
    def pending(self) -> bool:
        return self.worklist_id is None
