from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization
from studies.models import Folder, Study, Worklist


class TargetKind(models.TextChoices):
    STUDY = "study", _("Study")
    WORKLIST = "worklist", _("Worklist")
    FOLDER = "folder", _("Folder")


class LinkState(models.TextChoices):
    ACTIVE = "active", _("Active")
    DELETED = "deleted", _("Deleted")
    REVOKED = "revoked", _("Revoked")


class GuestLink(models.Model):
    """A secure, temporary link to a study, a worklist or a folder (Send Link / New Guest Link).

    Whether it still opens is derived from its state, expiry, uses and failure counters at each
    request (see guestlinks.services), never from a flag a job has to maintain.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    target_kind = models.CharField(max_length=10, choices=TargetKind.choices)
    study = models.ForeignKey(
        Study, on_delete=models.CASCADE, null=True, blank=True, related_name="guest_links"
    )
    worklist = models.ForeignKey(
        Worklist, on_delete=models.CASCADE, null=True, blank=True, related_name="guest_links"
    )
    folder = models.ForeignKey(
        Folder, on_delete=models.CASCADE, null=True, blank=True, related_name="guest_links"
    )
    include_priors = models.BooleanField(default=False)
    # The token is derived from the salt with SECRET_KEY (guestlinks.tokens); only its keyed
    # digest is stored, for lookup.
    token_salt = models.CharField(max_length=64)
    token_digest = models.CharField(max_length=64, unique=True)

    # Options of the Send Link dialog
    email = models.EmailField(blank=True)
    mobile = models.CharField(max_length=20, blank=True)
    language = models.CharField(max_length=5, default="en")
    message = models.TextField(blank=True)
    max_uses = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    login_required = models.BooleanField(default=False)
    password_hash = models.CharField(max_length=200, blank=True)
    password_is_birth_date = models.BooleanField(default=False)
    max_password_attempts = models.PositiveIntegerField(null=True, blank=True)
    require_email_confirmation = models.BooleanField(default=False)
    sms_code_required = models.BooleanField(default=False)

    # Counters and state, changed only by conditional UPDATEs in guestlinks.services
    uses = models.PositiveIntegerField(default=0)
    opens = models.PositiveIntegerField(default=0, help_text=_("Times the link page was shown."))
    password_failures = models.PositiveIntegerField(default=0)
    code_failures = models.PositiveIntegerField(default=0)
    codes_sent = models.PositiveIntegerField(default=0)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=LinkState.choices, default=LinkState.ACTIVE)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    end_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(target_kind="study", study__isnull=False)
                    | models.Q(target_kind="worklist", worklist__isnull=False)
                    | models.Q(target_kind="folder", folder__isnull=False)
                ),
                name="guestlink_has_target",
            )
        ]
        indexes = [models.Index(fields=["study", "-created_at"], name="guestlink_study_recent")]

    def __str__(self) -> str:
        # Never the token, never patient data: this reaches logs and admin titles.
        return f"Guest link {self.pk}"


class ConfirmationToken(models.Model):
    """The first email of a two-step link: proof that the recipient reads that mailbox."""

    link = models.ForeignKey(GuestLink, on_delete=models.CASCADE, related_name="confirmations")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Confirmation {self.pk} of guest link {self.link_id}"


class SmsCode(models.Model):
    """A six-digit one-time code sent by SMS; stored hashed, single use, valid ten minutes.
    A resend replaces the previous code (``replaced_at``)."""

    link = models.ForeignKey(GuestLink, on_delete=models.CASCADE, related_name="sms_codes")
    code_hash = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    replaced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["link", "-created_at"], name="smscode_link_recent")]

    def __str__(self) -> str:
        return f"SMS code {self.pk} of guest link {self.link_id}"
